//go:build linux

package ebpf

import (
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// handlers turn decoded kernel events into metrics, fast-path events and
// spans. handleEvent and handleHTTP are each called from one reader
// goroutine; metrics are safe for concurrent use.
type handlers struct {
	cfg     *Config
	m       *metrics
	cgroups *cgroupResolver
	clock   clock
	bus     *event.Bus
	spans   *spanQueue
	log     *slog.Logger

	mu      sync.Mutex
	pending map[connKey]*pendingRequest
}

func newHandlers(cfg *Config, m *metrics, cg *cgroupResolver, clk clock, bus *event.Bus, spans *spanQueue, log *slog.Logger) *handlers {
	return &handlers{cfg: cfg, m: m, cgroups: cg, clock: clk, bus: bus, spans: spans, log: log,
		pending: map[connKey]*pendingRequest{}}
}

// handleEvent handles one sample of the events ring buffer.
func (h *handlers) handleEvent(b []byte) {
	ev, err := decodeEvent(b)
	if err != nil {
		h.m.decodeErrors.WithLabelValues("events").Inc()
		h.log.Debug("dropped undecodable eBPF event", "err", err)
		return
	}
	switch e := ev.(type) {
	case *tcpEvent:
		h.handleTCP(e)
	case *procEvent:
		h.handleProc(e)
	}
}

func tcpFailureReason(errno uint32) string {
	switch errno {
	case 111: // ECONNREFUSED
		return "refused"
	case 110: // ETIMEDOUT
		return "timeout"
	case 113, 101: // EHOSTUNREACH, ENETUNREACH
		return "unreachable"
	case 0: // closed by the process before the handshake finished
		return "aborted"
	}
	return "error"
}

func (h *handlers) handleTCP(e *tcpEvent) {
	wl := h.cgroups.Identity(e.CgroupId)
	local := addrPort(e.Family, e.Saddr, e.Sport).String()
	remote := addrPort(e.Family, e.Daddr, e.Dport).String()
	dest, dir := remote, "outbound"
	if e.Inbound != 0 {
		dest, dir = local, "inbound"
	}
	secs := float64(e.DurationNs) / 1e9
	m := h.m
	switch e.Kind {
	case tcpConnect:
		m.tcpAttempts.WithLabelValues(m.tcpCap.labels(wl, dest)...).Inc()
		m.tcpConnect.WithLabelValues(m.tcpCap.labels(wl, dest)...).Observe(secs)
		m.tcpActive.WithLabelValues(m.tcpCap.labels(wl, dest, dir)...).Inc()
	case tcpConnectFail:
		m.tcpAttempts.WithLabelValues(m.tcpCap.labels(wl, dest)...).Inc()
		m.tcpFailures.WithLabelValues(m.tcpCap.labels(wl, dest, tcpFailureReason(e.Err))...).Inc()
	case tcpAccept:
		m.tcpAccepts.WithLabelValues(m.tcpCap.labels(wl, dest)...).Inc()
		m.tcpActive.WithLabelValues(m.tcpCap.labels(wl, dest, dir)...).Inc()
	case tcpClose:
		m.tcpActive.WithLabelValues(m.tcpCap.labels(wl, dest, dir)...).Dec()
		m.tcpLifetime.WithLabelValues(m.tcpCap.labels(wl, dest, dir)...).Observe(secs)
	case tcpRetransmit:
		m.tcpRetrans.WithLabelValues(m.tcpCap.labels(wl, dest, dir)...).Inc()
	case tcpResetSent:
		m.tcpResets.WithLabelValues(m.tcpCap.labels(wl, dest, dir, "sent")...).Inc()
	case tcpResetReceived:
		m.tcpResets.WithLabelValues(m.tcpCap.labels(wl, dest, dir, "received")...).Inc()
	case tcpListen:
		// Only remembered in the kernel, to attribute accepted connections.
	}
}

var pageSize = uint64(os.Getpagesize())

func (h *handlers) handleProc(e *procEvent) {
	wl := h.cgroups.Identity(e.CgroupId)
	m := h.m
	switch e.Kind {
	case procExec:
		m.procExecs.WithLabelValues(m.procCap.workloadLabels(wl)...).Inc()
	case procExit:
		sig := int(e.ExitCode & 0x7f)
		code := int(e.ExitCode>>8) & 0xff
		outcome := "success"
		switch {
		case sig != 0:
			outcome = "signal"
			code = 0
		case code != 0:
			outcome = "error"
		}
		m.procExits.WithLabelValues(m.procCap.workloadLabels(wl, outcome)...).Inc()
		if outcome == "success" {
			return
		}
		h.publish(event.Event{Kind: event.ProcessExit, Time: h.clock.time(e.TsNs), Workload: wl,
			PID: e.Pid, Comm: commString(e.Comm), ExitCode: code, Signal: sig,
			Attrs: map[string]string{"ppid": strconv.FormatUint(uint64(e.Ppid), 10)}})
	case procOOM:
		m.oomKills.WithLabelValues(m.procCap.workloadLabels(wl)...).Inc()
		h.publish(event.Event{Kind: event.OOMKill, Time: h.clock.time(e.TsNs), Workload: wl,
			PID: e.Pid, Comm: commString(e.Comm), Signal: 9,
			Attrs: map[string]string{"total_vm_bytes": strconv.FormatUint(e.Value*pageSize, 10)}})
	}
}

func (h *handlers) publish(ev event.Event) {
	h.m.fastPath.WithLabelValues(string(ev.Kind)).Inc()
	h.bus.Publish(ev)
}

// connKey names one socket of one process.
type connKey struct{ pid, fd uint32 }

// pendingRequest is a request waiting for its response.
type pendingRequest struct {
	server   bool
	start    time.Time
	msg      httpMessage
	wl       workload.Identity
	pid      uint32
	comm     string
	local    netip.AddrPort
	remote   netip.AddrPort
	captured int
}

// handleHTTP handles one sample of the HTTP ring buffer. A request read is
// the start of a server request, a request written the start of a client
// request; the status line in the other direction on the same process and
// descriptor completes it.
func (h *handlers) handleHTTP(b []byte) {
	var e httpEvent
	if err := decodeHTTPEvent(b, &e); err != nil {
		h.m.decodeErrors.WithLabelValues("http_events").Inc()
		h.log.Debug("dropped undecodable eBPF HTTP event", "err", err)
		return
	}
	msg, err := parseHTTP(e.payload())
	if err != nil {
		return // looked like HTTP to the kernel's quick check only
	}
	key := connKey{e.Pid, e.Fd}
	at := h.clock.time(e.TsNs)
	if msg.Request {
		p := &pendingRequest{server: e.Dir == httpRead, start: at, msg: msg, pid: e.Pid, comm: commString(e.Comm),
			local: addrPort(e.Family, e.Saddr, e.Sport), remote: addrPort(e.Family, e.Daddr, e.Dport)}
		p.wl = h.cgroups.Identity(e.CgroupId)
		h.mu.Lock()
		if len(h.pending) >= h.cfg.MaxPendingRequests {
			h.m.httpUnmatched.Add(float64(len(h.pending)))
			clear(h.pending)
		}
		h.pending[key] = p
		h.mu.Unlock()
		return
	}
	h.mu.Lock()
	p := h.pending[key]
	if p != nil && p.server == (e.Dir == httpWrite) {
		delete(h.pending, key)
	} else {
		p = nil
	}
	h.mu.Unlock()
	if p == nil {
		return
	}
	h.completeHTTP(p, msg.Status, at)
}

func (h *handlers) completeHTTP(p *pendingRequest, status int, end time.Time) {
	path, route := routeOf(p.msg.Target)
	route = h.m.routeCap.value(route)
	kind := "client"
	if p.server {
		kind = "server"
	}
	d := end.Sub(p.start)
	if d < 0 {
		d = 0
	}
	lv := h.m.httpCap.labels(p.wl, route, kind, p.msg.Method, statusClass(status))
	h.m.httpRequests.WithLabelValues(lv...).Inc()
	h.m.httpDuration.WithLabelValues(lv...).Observe(d.Seconds())
	h.spans.add(httpSpan{req: p, path: path, route: route, status: status, end: end})
}
