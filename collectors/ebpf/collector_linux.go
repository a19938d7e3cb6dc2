//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// collector is the eBPF collector. Start discovers what the kernel offers
// and loads what it can; it never fails the agent for a missing feature or
// privilege: programs that are not loaded export
// vigil_ebpf_program_loaded{program} 0.
type collector struct {
	cfg *Config
	set collectors.Settings
	log *slog.Logger
	m   *metrics

	mu      sync.Mutex
	objs    *objects
	stats   interface{ Close() error } // BPF stats enabled while non-nil
	readers []*ringbuf.Reader
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	// probe discovers the kernel's capabilities; tests replace it to
	// pretend a feature is missing.
	probe func(*Config, *slog.Logger) *capabilities

	clock    clock
	cgroups  resolver
	shed     shedState // the overhead governor's level (overhead_linux.go)
	handlers *handlers
	spans    *spanQueue
	tls      *tlsManager // nil without the TLS programs
}

func newCollector(cfg *Config, set collectors.Settings) (collectors.Collector, error) {
	log := set.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &collector{cfg: cfg, set: set, log: log, m: newMetrics(cfg),
		probe: func(cfg *Config, log *slog.Logger) *capabilities { return discoverIn(cfg, set.Paths.SysFS, log) }}, nil
}

// clock turns the kernel's monotonic timestamps (bpf_ktime_get_ns) into
// wall-clock time.
type clock struct{ offset int64 }

func newClock() clock {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return clock{offset: time.Now().UnixNano() - ts.Nano()}
}

// monotonicNS is the kernel's monotonic clock now, the clock of
// bpf_ktime_get_ns.
func monotonicNS() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func (c clock) time(ktimeNS uint64) time.Time { return time.Unix(0, int64(ktimeNS)+c.offset) }

// Start implements collectors.Lifecycle.
func (c *collector) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range programs {
		c.m.programLoaded.WithLabelValues(p.name).Set(0)
	}
	c.clock = newClock()
	procFS := c.set.Paths.ProcFS
	if procFS == "" {
		procFS = "/proc"
	}
	hierarchy := int32(-1)
	root, memory, err := cgroupMount(procFS, c.cfg.CgroupHierarchy)
	if err != nil {
		c.log.Warn("cannot attribute eBPF events to workloads", "reason", err)
	} else {
		if memory {
			c.cgroups = newCgroupResolver(root, c.set.Enricher)
		} else {
			r := workload.NewResolver(procFS, c.set.Paths.SysFS, c.set.Enricher)
			if err := r.HandleLookup(); err != nil {
				c.log.Info("cgroups not opened by handle; cgroups not seen at creation are found by walking the hierarchy, at most once a second",
					"reason", err)
			}
			c.cgroups = newUnifiedResolver(r, c.set.Enricher)
		}
		if hierarchy, err = cgroupHierarchyID(procFS, memory); err != nil {
			hierarchy = -1
			c.log.Warn("cannot follow cgroup creation; cgroups removed before they are first seen stay unattributed", "reason", err)
		}
		c.log.Info("attributing eBPF events to workloads by cgroup", "hierarchy", root, "hierarchy_id", hierarchy)
	}
	raiseMemlock(c.log)
	caps := c.probe(c.cfg, c.log)
	for n, err := range caps.features {
		v := 1.0
		if err != nil {
			v = 0
		}
		c.m.featureAvailable.WithLabelValues(n).Set(v)
	}
	c.m.featureAvailable.WithLabelValues("tp_btf").Set(0)
	objs, err := load(loadOptions{cfg: c.cfg, cgroupMemory: memory, cgroupHierarchy: hierarchy}, caps, c.log)
	if err != nil {
		// Not an agent failure: the other collectors keep running.
		c.log.Error("eBPF collector runs without programs", "reason", err)
		return nil
	}
	c.objs = objs
	tpBTF := 0.0
	for _, p := range programs {
		if objs.progs[p.name] != nil {
			c.m.programLoaded.WithLabelValues(p.name).Set(1)
			if p.btfTP {
				tpBTF = 1
			}
		}
	}
	c.m.featureAvailable.WithLabelValues("tp_btf").Set(tpBTF)
	c.log.Info("eBPF programs loaded", "loaded", len(objs.progs), "of", len(programs))
	if c.cfg.BPFStats {
		st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
		if err != nil {
			c.log.Warn("cannot enable BPF run-time statistics", "reason", err)
		} else {
			c.stats = st
		}
	}

	c.spans = newSpanQueue(c.set.Traces, c.m.spansDropped, c.set.NodeName, c.log)
	c.handlers = newHandlers(c.cfg, c.m, c.cgroups, c.clock, c.set.Events, c.spans, c.log)
	c.handlers.shed = &c.shed
	c.startTLS(procFS)
	c.handlers.attachedNS = monotonicNS()
	c.setHTTPControl(c.shed.get())
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.spans.run(runCtx, c.cfg.PollInterval)
	}()
	rings := []struct {
		name   string
		handle func([]byte)
		idle   func()
	}{{"events", c.handlers.handleEvent, func() { c.handlers.flushTallies(c.handlers.tcpTallies, time.Now()) }}, {"http_events", c.handlers.handleHTTP, func() { c.handlers.sweepHTTP(time.Now()); c.handlers.closeH2(monotonicNS()) }}}
	for _, r := range rings {
		rd, err := ringbuf.NewReader(objs.maps[r.name])
		if err != nil {
			c.log.Error("cannot read eBPF ring buffer", "ring", r.name, "err", err)
			continue
		}
		c.readers = append(c.readers, rd)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.read(rd, r.name, r.handle, r.idle)
		}()
	}
	return nil
}

// read consumes one ring buffer until it is closed. Producers submit most
// events without waking the reader, so it also polls on a short deadline.
// The deadline is only renewed once it has passed (the reader then drains
// what was submitted without a wake-up first): setting it for every record
// cost more than handling the record. idle runs, on the reader's
// goroutine, each time the deadline passes.
func (c *collector) read(rd *ringbuf.Reader, ring string, handle func([]byte), idle func()) {
	events := c.m.eventsRead.WithLabelValues(ring)
	var rec ringbuf.Record
	quiet := 0 // empty polls in a row
	rd.SetDeadline(time.Now().Add(c.pollInterval()))
	for {
		err := rd.ReadInto(&rec)
		switch {
		case err == nil:
			events.Inc()
			handle(rec.RawSample)
			if quiet > 0 {
				// Back to the short poll from the first record on.
				quiet = 0
				rd.SetDeadline(time.Now().Add(c.pollInterval()))
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			idle()
			quiet++
			rd.SetDeadline(time.Now().Add(quietPoll(c.pollInterval(), quiet)))
		case errors.Is(err, ringbuf.ErrClosed):
			return
		default:
			c.log.Warn("eBPF ring buffer read failed", "ring", ring, "err", err)
			time.Sleep(c.cfg.PollInterval)
		}
	}
}

// quietPollAfter empty polls in a row (one second at the default poll
// interval) the reader starts to poll less often, doubling the wait up to
// quietPollMax: an idle node then wakes the agent a few times a second
// instead of ten per ring. The first record read returns it to the poll
// interval. Urgent records (OOM kills, failed processes) and a ring
// filling to wakeup_fill wake the reader at once whatever the wait, so
// what the longer wait delays is the first ordinary record after a quiet
// second, by at most quietPollMax.
const (
	quietPollAfter = 10
	quietPollMax   = time.Second
)

// quietPoll is the reader's wait after quiet empty polls in a row at poll
// interval every.
func quietPoll(every time.Duration, quiet int) time.Duration {
	if quiet < quietPollAfter || every >= quietPollMax {
		return every
	}
	d := every
	for i := quietPollAfter; i <= quiet && d < quietPollMax; i++ {
		d *= 2
	}
	return min(d, quietPollMax)
}

// Shutdown implements collectors.Lifecycle; it is safe without Start.
func (c *collector) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs != nil {
		// Detach first so nothing new is produced, then stop the readers.
		for _, l := range c.objs.links {
			_ = l.Close()
		}
		c.objs.links = nil
	}
	if c.tls != nil {
		c.tls.close()
		c.tls = nil
	}
	for _, rd := range c.readers {
		_ = rd.Close()
	}
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	c.readers = nil
	if c.stats != nil {
		_ = c.stats.Close()
		c.stats = nil
	}
	if c.objs != nil {
		c.objs.close()
		c.objs = nil
	}
	for _, p := range programs {
		c.m.programLoaded.WithLabelValues(p.name).Set(0)
	}
	return nil
}

// Update implements collectors.Collector.
func (c *collector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	for _, col := range c.m.collectors() {
		col.Collect(ch)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.objs == nil {
		return nil
	}
	if c.tls != nil {
		c.tls.collect(ch)
		if err := collectTLSCounts(c.objs.maps["tls_counts"], ch); err != nil {
			return fmt.Errorf("read eBPF TLS counters: %w", err)
		}
	}
	lost, err := c.lostCounts()
	if err != nil {
		return fmt.Errorf("read eBPF loss counters: %w", err)
	}
	for i, n := range lost {
		ch <- prometheus.MustNewConstMetric(c.m.eventsLost, prometheus.CounterValue, float64(n), lossNames[i])
	}
	if c.stats != nil {
		for name, p := range c.objs.progs {
			st, err := p.Stats()
			if err != nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.m.programRunTime, prometheus.CounterValue, st.Runtime.Seconds(), name)
			ch <- prometheus.MustNewConstMetric(c.m.programRunCount, prometheus.CounterValue, float64(st.RunCount), name)
		}
	}
	return nil
}

// lostCounts sums the kernel's per-CPU loss counters.
func (c *collector) lostCounts() ([]uint64, error) {
	m := c.objs.maps["lost"]
	out := make([]uint64, len(lossNames))
	for i := range lossNames {
		var per []uint64
		if err := m.Lookup(uint32(i), &per); err != nil {
			return nil, err
		}
		for _, v := range per {
			out[i] += v
		}
	}
	return out, nil
}
