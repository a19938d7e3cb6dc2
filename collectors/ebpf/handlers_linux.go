//go:build linux

package ebpf

import (
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// handlers turn decoded kernel events into metrics, fast-path events and
// spans. handleEvent and handleHTTP are each called from one reader
// goroutine; metrics are safe for concurrent use.
type handlers struct {
	cfg     *Config
	m       *metrics
	cgroups resolver
	clock   clock
	bus     *event.Bus
	spans   *spanQueue
	log     *slog.Logger

	// Used by the events reader only.
	tcpCache      map[tcpKey]*tcpSeries
	tcpCacheReset time.Time
	tcpEvents     uint32
	tcpTallies    *tallies

	// Used by the HTTP reader only.
	http *httpState
	// h2Closes hands TCP closes from the events reader to the HTTP
	// reader, which closes the HTTP/2 decoders of those connections.
	h2Closes h2Closes
	// shed is the overhead governor's level (nil: none).
	shed *shedState
	// attachedNS is when the last program was attached (the kernel's
	// monotonic clock, as the records' timestamps): a Redis or PostgreSQL
	// request sent before it may have had its reply go by unseen.
	attachedNS uint64
	// tlsExec and tlsExit tell the TLS discovery of processes (nil
	// without it; tls_linux.go).
	tlsExec, tlsExit func(pid uint32)
}

func newHandlers(cfg *Config, m *metrics, cg resolver, clk clock, bus *event.Bus, spans *spanQueue, log *slog.Logger) *handlers {
	if cg == nil {
		cg = noResolver{}
	}
	cg = countingResolver{cg, m.unresolved}
	return &handlers{cfg: cfg, m: m, cgroups: cg, clock: clk, bus: bus, spans: spans, log: log,
		tcpCache: map[tcpKey]*tcpSeries{}, tcpTallies: newTallies(), http: newHTTPState(cfg)}
}

// handleEvent handles one sample of the events ring buffer.
func (h *handlers) handleEvent(b []byte) {
	ev, err := decodeEvent(b)
	if err != nil {
		h.m.decodeErrors.WithLabelValues("events").Inc()
		h.log.Debug("dropped undecodable eBPF event", "err", err)
		return
	}
	if h.tcpEvents++; h.tcpEvents%32 == 0 {
		h.flushTallies(h.tcpTallies, time.Now())
	}
	switch e := ev.(type) {
	case *tcpEvent:
		h.handleTCP(e)
	case *procEvent:
		h.handleProc(e)
	case *cgroupEvent:
		h.handleCgroup(e)
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

// tcpKey names the series a TCP event updates.
type tcpKey struct {
	cgroup  uint64
	dest    netip.AddrPort
	inbound bool
}

// tcpSeries are the metric handles of one tcpKey, resolved once: label
// hashing and workload lookup dominate the per-event cost otherwise.
type tcpSeries struct {
	attempts, accepts, retrans, resetsSent, resetsRecv prometheus.Counter
	connect, lifetime                                  prometheus.Observer
	active                                             prometheus.Gauge
	wl                                                 workload.Identity
	dest                                               string
}

// maxCachedSeries bounds the handle caches; they are also emptied every
// seriesCacheTTL so that late workload enrichment shows up.
const (
	maxCachedSeries = 16384
	seriesCacheTTL  = time.Minute
)

func (h *handlers) tcpSeriesFor(e *tcpEvent) *tcpSeries {
	local := addrPort(e.Family, e.Saddr, e.Sport)
	remote := addrPort(e.Family, e.Daddr, e.Dport)
	k := tcpKey{cgroup: e.CgroupId, dest: remote, inbound: e.Inbound != 0}
	if k.inbound {
		k.dest = local
	}
	if time.Since(h.tcpCacheReset) > seriesCacheTTL || len(h.tcpCache) >= maxCachedSeries {
		clear(h.tcpCache)
		h.tcpCacheReset = time.Now()
	}
	if s, ok := h.tcpCache[k]; ok {
		return s
	}
	m := h.m
	wl := h.cgroups.Identity(e.CgroupId)
	dir := "outbound"
	if k.inbound {
		dir = "inbound"
	}
	lv := m.tcpCap.labels(wl, k.dest.String())
	withDir := append(append([]string{}, lv...), dir)
	s := &tcpSeries{
		attempts:   m.tcpAttempts.WithLabelValues(lv...),
		connect:    m.tcpConnect.WithLabelValues(lv...),
		accepts:    m.tcpAccepts.WithLabelValues(lv...),
		active:     m.tcpActive.WithLabelValues(withDir...),
		lifetime:   m.tcpLifetime.WithLabelValues(withDir...),
		retrans:    m.tcpRetrans.WithLabelValues(withDir...),
		resetsSent: m.tcpResets.WithLabelValues(append(append([]string{}, withDir...), "sent")...),
		resetsRecv: m.tcpResets.WithLabelValues(append(append([]string{}, withDir...), "received")...),
		wl:         wl,
		dest:       lv[len(lv)-1],
	}
	if named(wl) {
		h.tcpCache[k] = s
	}
	return s
}

func (h *handlers) handleTCP(e *tcpEvent) {
	if e.Kind == tcpListen {
		return // only remembered in the kernel, to attribute accepted connections
	}
	s := h.tcpSeriesFor(e)
	secs := float64(e.DurationNs) / 1e9
	switch e.Kind {
	case tcpConnect:
		s.attempts.Inc()
		s.connect.Observe(secs)
		s.active.Inc()
		if o := h.connectTally(e, s); o != nil {
			o.Total++
		}
	case tcpConnectFail:
		s.attempts.Inc()
		if o := h.connectTally(e, s); o != nil {
			o.Total++
			o.Errors++
		}
		lv := append(s.wl.Labels(), s.dest, tcpFailureReason(e.Err))
		if s.dest == overflowValue {
			clear(lv[:len(lv)-2])
		}
		h.m.tcpFailures.WithLabelValues(lv...).Inc()
	case tcpAccept:
		s.accepts.Inc()
		s.active.Inc()
	case tcpClose:
		s.active.Dec()
		s.lifetime.Observe(secs)
		h.h2Closes.post(h2Sock{e.CgroupId, addrPort(e.Family, e.Saddr, e.Sport), addrPort(e.Family, e.Daddr, e.Dport)}, e.TsNs)
	case tcpRetransmit:
		s.retrans.Inc()
	case tcpResetSent:
		s.resetsSent.Inc()
	case tcpResetReceived:
		s.resetsRecv.Inc()
	}
}

// connectTally is the outcome tally of an outbound connect's workload and
// destination.
func (h *handlers) connectTally(e *tcpEvent, s *tcpSeries) *event.Outcome {
	k := tallyKey{cgroup: e.CgroupId, dest: addrPort(e.Family, e.Daddr, e.Dport), signal: event.Connect}
	return h.tally(h.tcpTallies, k, s.wl)
}

var pageSize = uint64(os.Getpagesize())

func (h *handlers) handleProc(e *procEvent) {
	wl := h.cgroups.Identity(e.CgroupId)
	m := h.m
	switch e.Kind {
	case procExec:
		m.procExecs.WithLabelValues(m.procCap.workloadLabels(wl)...).Inc()
		if h.tlsExec != nil {
			h.tlsExec(e.Pid)
		}
	case procExit:
		if h.tlsExit != nil {
			h.tlsExit(e.Pid)
		}
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
