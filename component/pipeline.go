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

// Traces returns the consumer collectors send spans to.
func (p *Pipeline) Traces() consumer.Traces {
	c, _ := consumer.NewTraces(func(ctx context.Context, td ptrace.Traces) error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		var errs []error
		for _, c := range p.traces {
			if len(p.traces) > 1 {
				cp := ptrace.NewTraces()
				td.CopyTo(cp)
				errs = append(errs, c.ConsumeTraces(ctx, cp))
			} else {
				errs = append(errs, c.ConsumeTraces(ctx, td))
			}
		}
		return errors.Join(errs...)
	})
	return c
}

// Logs returns the consumer collectors send log records to.
func (p *Pipeline) Logs() consumer.Logs {
	c, _ := consumer.NewLogs(func(ctx context.Context, ld plog.Logs) error {
		p.mu.RLock()
		defer p.mu.RUnlock()
		var errs []error
		for _, c := range p.logs {
			if len(p.logs) > 1 {
				cp := plog.NewLogs()
				ld.CopyTo(cp)
				errs = append(errs, c.ConsumeLogs(ctx, cp))
			} else {
				errs = append(errs, c.ConsumeLogs(ctx, ld))
			}
		}
		return errors.Join(errs...)
	})
	return c
}
