// Package logs is Vigil's log pipeline: it tails log files (plain files by
// glob and Kubernetes pod logs in CRI or Docker format), reassembles partial
// and multiline records, counts log-derived metrics per workload, and ships
// every record to Loki through a bounded on-disk buffer, so that a restart
// or a Loki outage loses no line.
//
// Data path, one goroutine each:
//
//	tailer:  files → lines → records → disk buffer (+ read positions)
//	shipper: disk buffer → batches → Loki push API (protobuf + snappy)
//
// A read position is saved only after the lines before it are in the disk
// buffer, and a buffer record is shipped only after the position that
// follows it is saved; a batch is removed from the buffer only after Loki
// accepted it. So a crash (even SIGKILL) loses nothing and re-sends only
// the batch that was in flight (as does a push that timed out but was
// stored).
package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/component"
)

func init() { component.RegisterCollector("logs", true, NewConfig, New) }

// Collector is the log pipeline. Its Update reports the log-derived metrics
// and the pipeline's own vigil_logs_* metrics.
type Collector struct {
	cfg    *Config
	set    collectors.Settings
	logger *slog.Logger
	m      *selfMetrics
	d      *derived

	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex // guards started/stopped
	start  bool
	stop   bool

	// Owned by the tailer goroutine (or by Start before it runs).
	t *tailer
}

// New builds the collector from a validated configuration.
func New(cfg *Config, set collectors.Settings) (*Collector, error) {
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Collector{cfg: cfg, set: set, logger: set.Logger, m: newSelfMetrics(), d: newDerived(cfg)}
	c.m.bufferMax.Set(float64(cfg.Loki.Buffer.MaxBytes))
	return c, nil
}

// Start loads the read positions, opens the disk buffer (bringing the
// positions up to date with it), and starts the tailer and the shipper.
func (c *Collector) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.start {
		return errors.New("logs collector already started")
	}
	pos, err := loadPositions(c.cfg.PositionsFile)
	if err != nil {
		return err
	}
	t := newTailer(c, pos)
	var ship *shipper
	if c.cfg.Loki.URL != "" {
		b := c.cfg.Loki.Buffer
		buf, replay, err := openBuffer(b.Dir, b.MaxBytes, b.SegmentBytes, b.Fsync, pos.Seq, c.logger)
		if err != nil {
			return fmt.Errorf("opening log buffer %s: %w", b.Dir, err)
		}
		for _, r := range replay {
			pos.Files[r.path] = r.pos
			pos.Seq = r.seq
		}
		if len(replay) > 0 {
			c.logger.Info("brought read positions up to date with the log buffer", "records", len(replay))
		}
		buf.commit(buf.lastSeq())
		ship, err = newShipper(c.cfg.Loki, buf, c.m, c.logger)
		if err != nil {
			buf.close()
			return err
		}
		t.buf = buf
	}
	if c.cfg.ForwardToPipeline && c.set.Logs != nil {
		t.fwd = newForwarder(c.set.Logs, c.m)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.t = t
	c.start = true
	t.scan(true)
	nfiles := len(t.files)
	if ship != nil {
		c.wg.Go(func() { ship.run(runCtx) })
	}
	if t.fwd != nil {
		c.wg.Go(func() { t.fwd.run(runCtx) })
	}
	c.wg.Go(func() { t.run(runCtx) })
	c.logger.Info("log pipeline started", "inputs", len(c.cfg.Inputs), "pod_logs", c.cfg.PodLogs.Enabled,
		"files", nfiles, "loki", c.cfg.Loki.URL != "", "positions_file", c.cfg.PositionsFile)
	return nil
}

// Shutdown stops the tailer and shipper, saves the read positions and
// closes the files and the buffer. Unshipped records stay in the buffer.
func (c *Collector) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.start || c.stop {
		return nil
	}
	c.stop = true
	c.cancel()
	done := make(chan struct{})
	go func() {
		// The tailer and shipper return promptly once cancelled; the
		// forwarder's queue is closed after the tailer has stopped.
		c.wg.Wait()
		close(done)
	}()
	t := c.t
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("logs collector did not stop in time: %w", ctx.Err())
	}
	err = t.close()
	return err
}

// Update sends the log-derived metrics and the pipeline's own metrics.
func (c *Collector) Update(_ context.Context, ch chan<- prometheus.Metric) error {
	c.d.collect(ch)
	c.m.collect(ch)
	return nil
}

// lokiLabels renders a sorted Loki stream selector.
func lokiLabels(l []kv) string {
	sort.Slice(l, func(i, j int) bool { return l[i].k < l[j].k })
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range l {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(p.v))
	}
	b.WriteByte('}')
	return b.String()
}

func mapKVs(m map[string]string) []kv {
	out := make([]kv, 0, len(m))
	for k, v := range m {
		out = append(out, kv{k, v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k < out[j].k })
	return out
}

func nodeName(set collectors.Settings) string {
	if set.NodeName != "" {
		return set.NodeName
	}
	h, _ := os.Hostname()
	return h
}

var _ collectors.Lifecycle = (*Collector)(nil)

// now is replaced in tests that need a fixed clock.
var now = time.Now
