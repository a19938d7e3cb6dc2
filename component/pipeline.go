package component

import (
	"context"
	"errors"
	"sync"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Pipeline carries the spans and log records that collectors produce to
// whichever exporters are running. With no exporter, data is dropped at
// once: collectors never wait on a backend.
type Pipeline struct {
	mu     sync.RWMutex
	nextID int
	traces map[int]consumer.Traces
	logs   map[int]consumer.Logs
}

// NewPipeline returns a pipeline with no consumers.
func NewPipeline() *Pipeline {
	return &Pipeline{traces: map[int]consumer.Traces{}, logs: map[int]consumer.Logs{}}
}

// AddTraces makes c receive every span; the returned function removes it.
func (p *Pipeline) AddTraces(c consumer.Traces) (remove func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.nextID
	p.nextID++
	p.traces[id] = c
	return func() { p.mu.Lock(); delete(p.traces, id); p.mu.Unlock() }
}

// AddLogs makes c receive every log record; the returned function removes
// it.
func (p *Pipeline) AddLogs(c consumer.Logs) (remove func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := p.nextID
	p.nextID++
	p.logs[id] = c
	return func() { p.mu.Lock(); delete(p.logs, id); p.mu.Unlock() }
}

// Wanter is implemented by a consumer that can tell whether it would do
// anything with data given now: a collector asks before it builds spans,
// so that with no trace exporter configured (the default) no span is made
// only to be dropped.
type Wanter interface {
	Wanted() bool
}

// Wanted reports whether c would take data now: true unless c implements
// [Wanter] and says no.
func Wanted(c any) bool {
	w, ok := c.(Wanter)
	return !ok || w.Wanted()
}

// Traces returns the consumer collectors send spans to. It implements
// [Wanter]: it wants spans while a consumer that wants them is added.
func (p *Pipeline) Traces() consumer.Traces {
	c, _ := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		return fanOut(p.traces, td,
			func(td ptrace.Traces) ptrace.Traces { cp := ptrace.NewTraces(); td.CopyTo(cp); return cp },
			func(c consumer.Traces, td ptrace.Traces) error { return c.ConsumeTraces(ctx, td) })
	})
	return pipelineTraces{c, p}
}

// pipelineTraces is the pipeline's traces consumer with its [Wanter].
type pipelineTraces struct {
	consumer.Traces
	p *Pipeline
}

func (t pipelineTraces) Wanted() bool {
	t.p.mu.RLock()
	defer t.p.mu.RUnlock()
	for _, c := range t.p.traces {
		if Wanted(c) {
			return true
		}
	}
	return false
}

// Logs returns the consumer collectors send log records to.
func (p *Pipeline) Logs() consumer.Logs {
	c, _ := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		return fanOut(p.logs, ld,
			func(ld plog.Logs) plog.Logs { cp := plog.NewLogs(); ld.CopyTo(cp); return cp },
			func(c consumer.Logs, ld plog.Logs) error { return c.ConsumeLogs(ctx, ld) })
	})
	return c
}

// fanOut hands d to every consumer, each its own copy when there are
// several (a consumer may change what it is given), and joins their errors.
func fanOut[C, D any](consumers map[int]C, d D, copyOf func(D) D, consume func(C, D) error) error {
	var errs []error
	for _, c := range consumers {
		if len(consumers) > 1 {
			errs = append(errs, consume(c, copyOf(d)))
		} else {
			errs = append(errs, consume(c, d))
		}
	}
	return errors.Join(errs...)
}
