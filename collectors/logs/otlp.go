package logs

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
)

var severity = [...]plog.SeverityNumber{
	levelUnknown: plog.SeverityNumberUnspecified,
	levelTrace:   plog.SeverityNumberTrace,
	levelDebug:   plog.SeverityNumberDebug,
	levelInfo:    plog.SeverityNumberInfo,
	levelWarn:    plog.SeverityNumberWarn,
	levelError:   plog.SeverityNumberError,
	levelFatal:   plog.SeverityNumberFatal,
}

// forwarder hands records to the agent's log pipeline as plog.Logs (one
// plog.Logs per chunk of a file). A goroutine delivers them, so the tailer
// never waits on an exporter; when its queue is full the chunk is dropped
// and counted (vigil_logs_dropped_lines_total{reason="pipeline_full"}).
type forwarder struct {
	next consumer.Logs
	m    *selfMetrics
	ch   chan plog.Logs
	done chan struct{}

	cur  plog.Logs
	recs plog.LogRecordSlice
	n    int
}

func newForwarder(next consumer.Logs, m *selfMetrics) *forwarder {
	return &forwarder{next: next, m: m, ch: make(chan plog.Logs, 64), done: make(chan struct{})}
}

func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	for ld := range f.ch {
		_ = f.next.ConsumeLogs(ctx, ld)
	}
}

// add appends one record of file t.
func (f *forwarder) add(t *tailFile, node string, ts int64, stream uint8, level int, content []byte) {
	if f.n == 0 {
		f.cur = plog.NewLogs()
		rl := f.cur.ResourceLogs().AppendEmpty()
		attrs := rl.Resource().Attributes()
		if node != "" {
			attrs.PutStr("k8s.node.name", node)
		}
		t.id.PutAttributes(attrs) // k8s.*, container.id, the owner, service.name
		for _, l := range t.src.labels {
			attrs.PutStr(l.k, l.v)
		}
		sl := rl.ScopeLogs().AppendEmpty()
		sl.Scope().SetName("github.com/vigil-agent/vigil/collectors/logs")
		f.recs = sl.LogRecords()
	}
	r := f.recs.AppendEmpty()
	r.SetTimestamp(pcommon.Timestamp(ts))
	r.SetObservedTimestamp(pcommon.NewTimestampFromTime(time.Now()))
	r.Body().SetStr(string(content))
	if level != levelUnknown {
		r.SetSeverityNumber(severity[level])
		r.SetSeverityText(levelNames[level])
	}
	r.Attributes().PutStr("log.file.path", t.path)
	if stream != streamNone {
		r.Attributes().PutStr("log.iostream", streamNames[stream])
	}
	f.n++
}

// flush queues the chunk built so far.
func (f *forwarder) flush() {
	if f.n == 0 {
		return
	}
	select {
	case f.ch <- f.cur:
	default:
		f.m.dropped.WithLabelValues("pipeline_full").Add(float64(f.n))
	}
	f.n = 0
}

// close stops the delivery goroutine after it has delivered what is queued.
func (f *forwarder) close() {
	close(f.ch)
	<-f.done
}
