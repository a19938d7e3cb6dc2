// Package exporters sends Vigil's metrics, log records and spans to
// backends through the OpenTelemetry Collector's own exporter components:
// OTLP over gRPC (otlpexporter) and HTTP (otlphttpexporter), and Prometheus
// remote write (contrib's prometheusremotewriteexporter). Several targets
// run at once, each with its own bounded queue per signal, optionally
// persisted with the collector's filestorage extension, that drops the
// oldest data first and counts what it drops.
//
// Metrics are gathered from the agent's registry every interval and
// converted to OTLP with OpenTelemetry resource attributes (host.name,
// host.id, os.type, k8s.node.name, and per workload k8s.namespace.name,
// k8s.pod.name, k8s.pod.uid, k8s.container.name, container.id, the owner,
// service.name); remote write receives the same samples with their
// Prometheus label names.
package exporters

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Settings are what the exporters get from the agent.
type Settings struct {
	Logger *slog.Logger
	// NodeName is this node's name (k8s.node.name in Kubernetes).
	NodeName string
	// Registerer takes the exporters' self-metrics.
	Registerer prometheus.Registerer
	// Gatherer is read every interval for the metrics to export.
	Gatherer prometheus.Gatherer
}

// Exporters is the running export pipeline. Traces and Logs return the
// consumers that collectors' spans and log records go to; metrics are
// gathered on a timer.
type Exporters struct {
	set     Settings
	logger  *slog.Logger
	metrics *selfMetrics
	start   time.Time

	life    sync.Mutex // serialises Start, ApplyConfig, Shutdown; guards cfg, started
	cfg     *Config
	started bool
	mu      sync.RWMutex // guards run and hold
	run     *runSet
	hold    *hold // non-nil while ApplyConfig swaps the targets
}

// runSet is one configuration's targets, running.
type runSet struct {
	conv    Converter
	pipes   []*pipe // sorted by target, then signal
	exts    []storage.Extension
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	gatherC chan struct{}
}

// pipe is one target's path for one signal: queue → sender → collector
// exporter.
type pipe struct {
	target, signal string
	form           Form
	q              *queue
	comp           component.Component
	send           sendFunc
	retry          RetryConfig
	started        bool
	sent, failed   prometheus.Counter
	dropped        prometheus.Counter
}

// New builds the exporters for cfg; nothing runs until Start.
func New(cfg *Config, set Settings) (*Exporters, error) {
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m, err := newSelfMetrics(set.Registerer)
	if err != nil {
		return nil, err
	}
	x := &Exporters{set: set, logger: set.Logger, metrics: m, start: time.Now(), cfg: cfg}
	m.queues = x.queueStats
	return x, nil
}

// Start opens the queues, starts the collector exporters and the senders,
// and starts gathering metrics. A target that cannot start is logged and
// left out; the others run.
func (x *Exporters) Start(ctx context.Context) error {
	x.life.Lock()
	defer x.life.Unlock()
	if x.started {
		return nil
	}
	run, err := x.startRun(ctx, x.cfg)
	x.mu.Lock()
	x.run = run
	x.mu.Unlock()
	x.started = true
	return err
}

// ApplyConfig replaces the targets with those of a new, valid configuration
// without losing data. While the targets are swapped, spans and log
// records are held in memory (at most holdLimit items and holdBytes a
// signal; beyond it they are dropped and counted) and handed to the new
// targets once they run. Requests still queued in memory for an old target
// move to the new target of the same name and signal; persistent queues
// stay on disk and are taken over by the new target of the same name. What
// has no new target to go to is dropped and counted in
// vigil_exporter_dropped_total.
func (x *Exporters) ApplyConfig(ctx context.Context, c *Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	x.life.Lock()
	defer x.life.Unlock()
	x.cfg = c
	if !x.started {
		return nil
	}
	x.mu.Lock()
	old := x.run
	x.run = nil
	h := &hold{old: old}
	x.hold = h
	x.mu.Unlock()

	var moved []movedEntries
	if old != nil {
		old.cancel()
		old.wg.Wait()
		for _, p := range old.pipes {
			if es := p.q.takeInMemory(); len(es) > 0 {
				moved = append(moved, movedEntries{from: p, entries: es})
			}
		}
		x.stopRun(ctx, old)
	}
	run, err := x.startRun(ctx, c)
	for _, m := range moved {
		to := run.pipe(m.from.target, m.from.signal)
		for _, e := range m.entries {
			if to == nil {
				m.from.dropped.Add(float64(e.items))
				continue
			}
			if perr := to.q.Push(ctx, e.data, e.items); perr != nil {
				x.logger.Warn("a queued request could not move to the reloaded exporter", "exporter", to.target, "signal", to.signal, "err", perr)
			}
		}
	}
	x.mu.Lock()
	x.run = run
	x.hold = nil
	x.mu.Unlock()
	h.replay(ctx, x)
	return err
}

// holdLimit and holdBytes bound, per signal, the spans or log records
// (and their encoded size) held while a reload swaps the targets.
const (
	holdLimit = 1 << 16
	holdBytes = 64 << 20
)

// hold keeps the spans and log records that arrive while a reload swaps
// the targets.
type hold struct {
	old         *runSet // its pipes count what does not fit
	mu          sync.Mutex
	traces      []ptrace.Traces
	logs        []plog.Logs
	spans, recs int
	bytes       [2]int // traces, logs
}

// movedEntries are an old target's in-memory requests on their way to the
// new target of the same name and signal.
type movedEntries struct {
	from    *pipe
	entries []queueEntry
}

func (h *hold) addTraces(td ptrace.Traces) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m ptrace.ProtoMarshaler
	n, size := td.SpanCount(), m.TracesSize(td)
	if h.spans+n > holdLimit || h.bytes[0]+size > holdBytes {
		h.old.countDropped(SignalTraces, int64(n))
		return
	}
	h.spans += n
	h.bytes[0] += size
	h.traces = append(h.traces, td)
}

func (h *hold) addLogs(ld plog.Logs) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var m plog.ProtoMarshaler
	n, size := ld.LogRecordCount(), m.LogsSize(ld)
	if h.recs+n > holdLimit || h.bytes[1]+size > holdBytes {
		h.old.countDropped(SignalLogs, int64(n))
		return
	}
	h.recs += n
	h.bytes[1] += size
	h.logs = append(h.logs, ld)
}

// replay hands what was held to the running targets.
func (h *hold) replay(ctx context.Context, x *Exporters) {
	h.mu.Lock()
	traces, logs := h.traces, h.logs
	h.traces, h.logs = nil, nil
	h.mu.Unlock()
	for _, td := range traces {
		_ = x.consumeTraces(ctx, td)
	}
	for _, ld := range logs {
		_ = x.consumeLogs(ctx, ld)
	}
}

// countDropped counts items of sig as dropped for every target of the set
// that takes sig.
func (run *runSet) countDropped(sig string, items int64) {
	if run == nil {
		return
	}
	for _, p := range run.pipes {
		if p.signal == sig {
			p.dropped.Add(float64(items))
		}
	}
}

// pipe returns the set's pipe for target and signal, or nil.
func (run *runSet) pipe(target, sig string) *pipe {
	for _, p := range run.pipes {
		if p.target == target && p.signal == sig {
			return p
		}
	}
	return nil
}

// Shutdown stops gathering, drains in-memory queues while ctx allows (at
// most 5s), stops the senders and the collector exporters, and closes the
// queues. It is safe to call without Start.
func (x *Exporters) Shutdown(ctx context.Context) error {
	x.life.Lock()
	defer x.life.Unlock()
	x.stop(ctx)
	x.started = false
	return nil
}

// stop drains and stops the running set. Producers keep queueing into it
// while it drains, so they never wait.
func (x *Exporters) stop(ctx context.Context) {
	x.mu.RLock()
	run := x.run
	x.mu.RUnlock()
	if run == nil {
		return
	}
	drain(ctx, run)
	x.mu.Lock()
	x.run = nil
	x.mu.Unlock()
	x.stopRun(ctx, run)
}

func (x *Exporters) startRun(ctx context.Context, c *Config) (*runSet, error) {
	run := &runSet{conv: Converter{Node: DetectNode(x.set.NodeName, c.MachineIDFile, c.ResourceAttributes), Start: x.start}, gatherC: make(chan struct{}, 1)}
	x.metrics.setNode(run.conv.Node)
	names := make([]string, 0, len(c.Targets))
	for n := range c.Targets {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	exts := map[string]storage.Extension{}
	for _, full := range names {
		// The running target is the configured one with its defaults; the
		// configuration itself is not changed.
		withDefaults := *c.Targets[full]
		withDefaults.setDefaults(mustType(full))
		e := &withDefaults
		for _, sig := range e.Signals {
			p, err := x.startPipe(ctx, c, full, e, sig, exts)
			if err != nil {
				errs = append(errs, fmt.Errorf("targets.%s (%s): %w", full, sig, err))
				x.logger.Error("exporter failed to start; the other exporters keep running", "exporter", full, "signal", sig, "err", err)
				continue
			}
			run.pipes = append(run.pipes, p)
		}
	}
	for _, ext := range exts {
		run.exts = append(run.exts, ext)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	run.cancel = cancel
	for _, p := range run.pipes {
		run.wg.Add(1)
		go func() { defer run.wg.Done(); x.sendLoop(runCtx, p) }()
	}
	if run.hasSignal(SignalMetrics) {
		run.wg.Add(1)
		go func() { defer run.wg.Done(); x.gatherLoop(runCtx, run, c.Interval) }()
	}
	return run, errors.Join(errs...)
}

func mustType(full string) string { t, _ := SplitName(full); return t }

func (run *runSet) hasSignal(sig string) bool {
	for _, p := range run.pipes {
		if p.signal == sig {
			return true
		}
	}
	return false
}

func (x *Exporters) startPipe(ctx context.Context, c *Config, full string, e *ExporterConfig, sig string, exts map[string]storage.Extension) (*pipe, error) {
	p := &pipe{target: full, signal: sig, retry: e.Retry,
		sent:    x.metrics.sent.WithLabelValues(full, sig),
		failed:  x.metrics.failed.WithLabelValues(full, sig),
		dropped: x.metrics.dropped.WithLabelValues(full, sig),
	}
	if mustType(full) == TypePrometheusRemoteWrite {
		p.form = FormPrometheus
	}
	comp, send, err := buildExporter(ctx, c, full, e, sig, x.logger)
	if err != nil {
		return nil, err
	}
	p.comp, p.send = comp, send
	var client storage.Client
	if dir := e.Queue.Directory; dir != "" {
		ext, ok := exts[full]
		if !ok {
			ext, err = storageExtension(ctx, full, dir, x.logger)
			if err != nil {
				return nil, fmt.Errorf("queue.directory: %w", err)
			}
			exts[full] = ext
		}
		client, err = ext.GetClient(ctx, component.KindExporter, comp2ID(full), sig)
		if err != nil {
			return nil, fmt.Errorf("queue.directory: %w", err)
		}
	}
	dropped := p.dropped
	p.q, err = newQueue(ctx, e.Queue.MaxItems, int64(e.Queue.MaxBytes), client, func(n int64) { dropped.Add(float64(n)) })
	if err != nil {
		if client != nil {
			_ = client.Close(ctx)
		}
		return nil, err
	}
	if err := comp.Start(ctx, collectorHost{}); err != nil {
		_ = p.q.Close(ctx)
		return nil, err
	}
	p.started = true
	return p, nil
}

// comp2ID names a target's storage files.
func comp2ID(full string) component.ID {
	typ, _ := SplitName(full)
	return component.NewIDWithName(component.MustNewType(typ), componentName(full))
}

// drain waits, at most 5s or until ctx is done, for in-memory queues to
// empty into reachable backends.
func drain(ctx context.Context, run *runSet) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, p := range run.pipes {
		if p.q.client != nil {
			continue
		}
		for {
			if items, _ := p.q.Len(); items == 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (x *Exporters) stopRun(ctx context.Context, run *runSet) {
	run.cancel()
	run.wg.Wait()
	for _, p := range run.pipes {
		if p.started {
			if err := p.comp.Shutdown(ctx); err != nil {
				x.logger.Warn("exporter shutdown failed", "exporter", p.target, "signal", p.signal, "err", err)
			}
		}
		if err := p.q.Close(ctx); err != nil {
			x.logger.Warn("closing the queue failed", "exporter", p.target, "signal", p.signal, "err", err)
		}
	}
	for _, ext := range run.exts {
		if err := ext.Shutdown(ctx); err != nil {
			x.logger.Warn("closing the queue storage failed", "err", err)
		}
	}
}

// sendLoop sends the oldest queued request until it is accepted, waiting
// with exponential backoff between failed attempts; a request the backend
// rejects for good is dropped and counted.
func (x *Exporters) sendLoop(ctx context.Context, p *pipe) {
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     p.retry.InitialInterval,
		RandomizationFactor: 0.2,
		Multiplier:          1.6,
		MaxInterval:         p.retry.MaxInterval,
	}
	bo.Reset()
	for {
		e, data, ok := p.q.Next(ctx)
		if !ok {
			return
		}
		err := p.send(ctx, data)
		switch {
		case err == nil:
			p.q.Done(e.seq)
			p.sent.Add(float64(e.items))
			bo.Reset()
			continue
		case ctx.Err() != nil:
			p.q.Release(e.seq)
			return
		case consumererror.IsPermanent(err):
			p.failed.Inc()
			x.logger.Error("the backend rejected a request; dropping it", "exporter", p.target, "signal", p.signal, "items", e.items, "err", err)
			p.q.Done(e.seq)
			p.dropped.Add(float64(e.items))
			continue
		}
		p.failed.Inc()
		p.q.Release(e.seq)
		wait := bo.NextBackOff()
		x.logger.Warn("send failed; retrying", "exporter", p.target, "signal", p.signal, "items", e.items, "retry_in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// gatherLoop gathers the agent's metrics every interval (and on demand,
// through gatherC) and queues them for every metric target.
func (x *Exporters) gatherLoop(ctx context.Context, run *runSet, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-run.gatherC:
		}
		x.exportMetrics(ctx, run, time.Now())
	}
}

// exportMetrics gathers once and queues the result for every metric target.
func (x *Exporters) exportMetrics(ctx context.Context, run *runSet, now time.Time) {
	mfs, err := x.set.Gatherer.Gather()
	if err != nil {
		x.metrics.gatherErrors.Inc()
		x.logger.Warn("gathering metrics for export was incomplete", "err", err)
	}
	if len(mfs) == 0 {
		return
	}
	var encoded [2][]byte
	var items [2]int64
	var m pmetric.ProtoMarshaler
	for _, p := range run.pipes {
		if p.signal != SignalMetrics {
			continue
		}
		if encoded[p.form] == nil {
			md := run.conv.Convert(mfs, now, p.form)
			b, err := m.MarshalMetrics(md)
			if err != nil {
				x.logger.Error("encoding metrics failed", "err", err)
				return
			}
			encoded[p.form], items[p.form] = b, int64(md.DataPointCount())
		}
		if err := p.q.Push(ctx, encoded[p.form], items[p.form]); err != nil {
			x.logger.Warn("metrics not queued", "exporter", p.target, "err", err)
		}
	}
}

// GatherNow makes the running exporters gather and queue metrics at once,
// outside the interval (tests and the bench use it).
func (x *Exporters) GatherNow() {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.run == nil {
		return
	}
	select {
	case x.run.gatherC <- struct{}{}:
	default:
	}
}

// Traces returns the consumer that queues spans for every trace target. It
// never blocks on a backend; what does not fit is dropped and counted. It
// implements component.Wanter: it wants spans while a trace target runs or
// while targets are being swapped (spans are then held for the new ones).
func (x *Exporters) Traces() consumer.Traces {
	c, _ := consumer.NewTraces(x.consumeTraces, consumer.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	return exportedTraces{c, x}
}

// exportedTraces is the exporters' traces consumer with its Wanted.
type exportedTraces struct {
	consumer.Traces
	x *Exporters
}

func (t exportedTraces) Wanted() bool {
	t.x.mu.RLock()
	defer t.x.mu.RUnlock()
	if t.x.run == nil {
		return t.x.hold != nil
	}
	return t.x.run.hasSignal(SignalTraces)
}

func (x *Exporters) consumeTraces(ctx context.Context, td ptrace.Traces) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.run == nil && x.hold == nil {
		return nil
	}
	if td.IsReadOnly() {
		cp := ptrace.NewTraces()
		td.CopyTo(cp)
		td = cp
	}
	if x.run == nil {
		x.hold.addTraces(td)
		return nil
	}
	if !x.run.hasSignal(SignalTraces) {
		return nil
	}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		x.run.conv.Node.Apply(td.ResourceSpans().At(i).Resource().Attributes())
	}
	var m ptrace.ProtoMarshaler
	b, err := m.MarshalTraces(td)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	x.run.push(ctx, SignalTraces, b, int64(td.SpanCount()), x.logger)
	return nil
}

// Logs returns the consumer that queues log records for every log target.
// It never blocks on a backend; what does not fit is dropped and counted.
func (x *Exporters) Logs() consumer.Logs {
	c, _ := consumer.NewLogs(x.consumeLogs, consumer.WithCapabilities(consumer.Capabilities{MutatesData: true}))
	return c
}

func (x *Exporters) consumeLogs(ctx context.Context, ld plog.Logs) error {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.run == nil && x.hold == nil {
		return nil
	}
	if ld.IsReadOnly() {
		cp := plog.NewLogs()
		ld.CopyTo(cp)
		ld = cp
	}
	if x.run == nil {
		x.hold.addLogs(ld)
		return nil
	}
	if !x.run.hasSignal(SignalLogs) {
		return nil
	}
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		x.run.conv.Node.Apply(ld.ResourceLogs().At(i).Resource().Attributes())
	}
	var m plog.ProtoMarshaler
	b, err := m.MarshalLogs(ld)
	if err != nil {
		return consumererror.NewPermanent(err)
	}
	x.run.push(ctx, SignalLogs, b, int64(ld.LogRecordCount()), x.logger)
	return nil
}

func (run *runSet) push(ctx context.Context, sig string, b []byte, items int64, logger *slog.Logger) {
	for _, p := range run.pipes {
		if p.signal != sig {
			continue
		}
		if err := p.q.Push(ctx, b, items); err != nil {
			logger.Warn("not queued", "exporter", p.target, "signal", sig, "err", err)
		}
	}
}

// queueStats reports every running queue's length for the self-metrics.
func (x *Exporters) queueStats(yield func(target, signal string, items, bytes, maxItems, maxBytes int64)) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if x.run == nil {
		return
	}
	for _, p := range x.run.pipes {
		items, bytes := p.q.Len()
		yield(p.target, p.signal, items, bytes, p.q.maxItems, p.q.maxBytes)
	}
}
