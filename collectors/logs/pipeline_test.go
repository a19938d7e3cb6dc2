package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang/snappy"
	"github.com/grafana/loki/pkg/push"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeLoki is a FAKE Loki push endpoint for unit tests: Loki is AGPL and
// may not run here. It decodes requests with the same push types and snappy
// as a real Loki would; the end-to-end test uses VictoriaLogs instead.
type fakeLoki struct {
	srv     *httptest.Server
	mu      sync.Mutex
	got     []pushed
	tenants map[string]int
	status  atomic.Int32 // 0: accept; otherwise answer with this status
	reqs    atomic.Int64
	// stall, when set, makes the next request wait this long (ns) after
	// it was read and before its lines are stored: a store that completes
	// a request late. stalled holds that request's lines.
	stall   atomic.Int64
	stalled []string
}

type pushed struct {
	labels string
	line   string
	meta   map[string]string
	ts     time.Time
}

func newFakeLoki(t testing.TB) *fakeLoki {
	f := &fakeLoki{tenants: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.reqs.Add(1)
		if s := f.status.Load(); s != 0 {
			http.Error(w, "unavailable", int(s))
			return
		}
		if r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "bad content type", http.StatusBadRequest)
			return
		}
		body, _ := io.ReadAll(r.Body)
		raw, err := snappy.Decode(nil, body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req push.PushRequest
		if err := req.Unmarshal(raw); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if d := f.stall.Swap(0); d != 0 {
			time.Sleep(time.Duration(d))
			f.mu.Lock()
			for _, s := range req.Streams {
				for _, e := range s.Entries {
					f.stalled = append(f.stalled, e.Line)
				}
			}
			f.mu.Unlock()
		}
		f.mu.Lock()
		f.tenants[r.Header.Get("X-Scope-OrgID")]++
		for _, s := range req.Streams {
			for _, e := range s.Entries {
				m := map[string]string{}
				for _, kv := range e.StructuredMetadata {
					m[kv.Name] = kv.Value
				}
				f.got = append(f.got, pushed{labels: s.Labels, line: e.Line, meta: m, ts: e.Timestamp})
			}
		}
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLoki) lines() []pushed {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]pushed(nil), f.got...)
}

func testConfig(t testing.TB, dir string, lokiURL string) *Config {
	cfg := NewConfig()
	cfg.PodLogs.Enabled = false
	cfg.Inputs = []InputConfig{{Paths: []string{filepath.Join(dir, "*.log")}, Format: FormatAuto, Labels: map[string]string{"job": "test"}}}
	cfg.PollInterval = 10 * time.Millisecond
	cfg.ScanInterval = 50 * time.Millisecond
	cfg.CommitInterval = 20 * time.Millisecond
	cfg.PositionsFile = filepath.Join(dir, "state", "positions.json")
	cfg.Loki.URL = lokiURL
	cfg.Loki.TenantID = "team-a"
	cfg.Loki.BatchWait = 50 * time.Millisecond
	cfg.Loki.MinBackoff = 10 * time.Millisecond
	cfg.Loki.MaxBackoff = 100 * time.Millisecond
	cfg.Loki.Buffer.Dir = filepath.Join(dir, "state", "buffer")
	cfg.Loki.Buffer.SegmentBytes = 64 << 10
	cfg.Loki.Buffer.MaxBytes = 64 << 20
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

type nopEnricher struct{}

func (nopEnricher) Enrich(*workload.Identity) {}

func settings() collectors.Settings {
	return collectors.Settings{NodeName: "node-1", Events: event.NewBus(), Enricher: nopEnricher{}}
}

func startCollector(t *testing.T, cfg *Config) *Collector {
	t.Helper()
	c, err := New(cfg, settings())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopCollector(t, c) })
	return c
}

func stopCollector(t *testing.T, c *Collector) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}

func appendLines(t *testing.T, path string, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s %06d", prefix, i))
	}
	return out
}

// countLines asserts every want line arrived exactly once and nothing else.
func countLines(t *testing.T, got []pushed, want []string) {
	t.Helper()
	n := map[string]int{}
	for _, p := range got {
		n[p.line]++
	}
	for _, w := range want {
		if n[w] != 1 {
			t.Errorf("line %q arrived %d times, want once", w, n[w])
		}
		delete(n, w)
	}
	for l, c := range n {
		t.Errorf("unexpected line %q (%d times)", l, c)
	}
}

func counter(t *testing.T, c prometheus.Collector, labels ...string) float64 {
	t.Helper()
	if v, ok := c.(*prometheus.CounterVec); ok {
		return testutil.ToFloat64(v.WithLabelValues(labels...))
	}
	return testutil.ToFloat64(c)
}

func TestShipsLinesWithLabelsMetadataAndTenant(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	c := startCollector(t, testConfig(t, dir, loki.srv.URL))
	path := filepath.Join(dir, "app.log")
	want := numbered("hello", 0, 1000)
	before := time.Now()
	appendLines(t, path, want...)
	testenv.EventuallyTrue(t, time.Minute, "1000 lines in Loki", func() bool { return len(loki.lines()) >= 1000 })
	after := time.Now()
	got := loki.lines()
	countLines(t, got, want)
	// Plain lines are stamped when read, in file order, strictly
	// increasing (Loki keeps their order).
	for i, p := range got {
		if p.ts.Before(before) || p.ts.After(after) {
			t.Fatalf("line %q stamped %v, outside [%v, %v]", p.line, p.ts, before, after)
		}
		if i > 0 && !p.ts.After(got[i-1].ts) {
			t.Fatalf("line %q stamped %v, not after the line before it (%v)", p.line, p.ts, got[i-1].ts)
		}
	}
	if got[0].labels != `{job="test", node="node-1"}` {
		t.Errorf("labels = %s", got[0].labels)
	}
	if got[0].meta["filename"] != path {
		t.Errorf("structured metadata = %v, want filename", got[0].meta)
	}
	loki.mu.Lock()
	if loki.tenants["team-a"] == 0 || len(loki.tenants) != 1 {
		t.Errorf("tenants seen: %v", loki.tenants)
	}
	loki.mu.Unlock()
	testenv.EventuallyTrue(t, time.Minute, "vigil_logs_sent_lines_total 1000", func() bool { return counter(t, c.m.sentLines) == 1000 })
}

func TestRestartResumesFromPositions(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	cfg := testConfig(t, dir, loki.srv.URL)
	path := filepath.Join(dir, "app.log")
	c := startCollector(t, cfg)
	appendLines(t, path, numbered("a", 0, 500)...)
	testenv.EventuallyTrue(t, time.Minute, "first 500 lines", func() bool { return len(loki.lines()) >= 500 })
	stopCollector(t, c)
	appendLines(t, path, numbered("a", 500, 1000)...) // written while stopped
	startCollector(t, cfg)
	appendLines(t, path, numbered("a", 1000, 1500)...)
	testenv.EventuallyTrue(t, time.Minute, "1500 lines", func() bool { return len(loki.lines()) >= 1500 })
	time.Sleep(200 * time.Millisecond) // let any duplicate arrive before counting
	countLines(t, loki.lines(), numbered("a", 0, 1500))
}

func TestRotationRenameAndCopytruncate(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	c := startCollector(t, testConfig(t, dir, loki.srv.URL))
	path := filepath.Join(dir, "app.log")
	appendLines(t, path, numbered("r", 0, 100)...)
	testenv.EventuallyTrue(t, time.Minute, "100 lines", func() bool { return len(loki.lines()) >= 100 })

	// Rename rotation: the writer renames the file, writes a little more
	// to the old inode (it has not reopened yet), then creates a new one.
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, filepath.Join(dir, "app.log.1")); err != nil {
		t.Fatal(err)
	}
	for _, l := range numbered("r", 100, 150) {
		fmt.Fprintln(old, l)
	}
	old.Close()
	appendLines(t, path, numbered("r", 150, 250)...)
	testenv.EventuallyTrue(t, time.Minute, "250 lines", func() bool { return len(loki.lines()) >= 250 })

	// copytruncate: copy, truncate in place, keep writing.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, time.Minute, "truncation noticed", func() bool { return counter(t, c.m.rotations, "truncate") >= 1 })
	appendLines(t, path, numbered("r", 250, 300)...)
	testenv.EventuallyTrue(t, time.Minute, "300 lines", func() bool { return len(loki.lines()) >= 300 })
	time.Sleep(200 * time.Millisecond)
	countLines(t, loki.lines(), numbered("r", 0, 300))
	if v := counter(t, c.m.rotations, "rename"); v < 1 {
		t.Errorf("rename rotations = %v", v)
	}
}

func TestLongLineAndBinaryGarbage(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	cfg := testConfig(t, dir, loki.srv.URL)
	c := startCollector(t, cfg)
	path := filepath.Join(dir, "app.log")
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	garbage := string([]byte{0xff, 0xfe, 0x00, 'o', 'k', 0xc3})
	appendLines(t, path, "before", big, garbage, "after")
	testenv.EventuallyTrue(t, time.Minute, "4 lines", func() bool { return len(loki.lines()) >= 4 })
	got := loki.lines()
	if got[0].line != "before" || got[3].line != "after" {
		t.Fatalf("neighbours of the long line damaged: %q, %q", got[0].line, got[3].line)
	}
	if len(got[1].line) != cfg.MaxLineBytes || !strings.HasPrefix(big, got[1].line) {
		t.Errorf("long line: %d bytes, want the first %d", len(got[1].line), cfg.MaxLineBytes)
	}
	if got[2].line != "\uFFFD\x00ok\uFFFD" {
		t.Errorf("garbage line = %q, want invalid bytes replaced", got[2].line)
	}
	if v := counter(t, c.m.truncated); v != 1 {
		t.Errorf("vigil_logs_truncated_lines_total = %v, want 1", v)
	}
}

func TestOutageBuffersThenDelivers(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	c := startCollector(t, testConfig(t, dir, loki.srv.URL))
	path := filepath.Join(dir, "app.log")
	loki.status.Store(http.StatusServiceUnavailable)
	appendLines(t, path, numbered("o", 0, 2000)...)
	testenv.EventuallyTrue(t, time.Minute, "retries during the outage", func() bool { return counter(t, c.m.retries) >= 3 })
	testenv.EventuallyTrue(t, time.Minute, "lines in the disk buffer", func() bool { return testutil.ToFloat64(c.m.bufferBytes) > 0 })
	if n := len(loki.lines()); n != 0 {
		t.Fatalf("%d lines accepted during the outage", n)
	}
	loki.status.Store(0)
	testenv.EventuallyTrue(t, time.Minute, "2000 lines after the outage", func() bool { return len(loki.lines()) >= 2000 })
	time.Sleep(200 * time.Millisecond)
	countLines(t, loki.lines(), numbered("o", 0, 2000))
	if v := counter(t, c.m.sendFailures, "5xx"); v < 1 {
		t.Errorf("vigil_logs_send_failures_total{reason=5xx} = %v", v)
	}
}

// TestStalledStoreGetsTheBatchAgain: a push that the store answers only
// after loki.timeout is sent again; when the store keeps the late request
// too, the lines of that one batch are there twice and no other line is
// (docs/logs.md, Durability). The attempt is counted as a network failure.
func TestStalledStoreGetsTheBatchAgain(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	cfg := testConfig(t, dir, loki.srv.URL)
	cfg.Loki.Timeout = time.Second
	c := startCollector(t, cfg)
	path := filepath.Join(dir, "app.log")
	loki.stall.Store(int64(3 * time.Second))
	first, second := numbered("s", 0, 100), numbered("t", 0, 100)
	appendLines(t, path, strings.Join(first, "\n"))
	testenv.EventuallyTrue(t, time.Minute, "the stalled request stored", func() bool {
		loki.mu.Lock()
		defer loki.mu.Unlock()
		return len(loki.stalled) > 0 && len(loki.got) >= len(first)+len(loki.stalled)
	})
	appendLines(t, path, strings.Join(second, "\n"))
	testenv.EventuallyTrue(t, time.Minute, "the next lines", func() bool {
		loki.mu.Lock()
		defer loki.mu.Unlock()
		return len(loki.got) >= len(first)+len(second)+len(loki.stalled)
	})
	time.Sleep(200 * time.Millisecond)

	n := map[string]int{}
	for _, p := range loki.lines() {
		n[p.line]++
	}
	loki.mu.Lock()
	twice := map[string]bool{}
	for _, l := range loki.stalled {
		twice[l] = true
	}
	loki.mu.Unlock()
	for _, l := range append(first, second...) {
		want := 1
		if twice[l] {
			want = 2
		}
		if n[l] != want {
			t.Errorf("line %q arrived %d times, want %d", l, n[l], want)
		}
		delete(n, l)
	}
	for l, c := range n {
		t.Errorf("unexpected line %q (%d times)", l, c)
	}
	if v := counter(t, c.m.sendFailures, "network"); v < 1 {
		t.Errorf("vigil_logs_send_failures_total{reason=network} = %v, want >= 1", v)
	}
}

func TestRejectedBatchIsDroppedAndCounted(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	c := startCollector(t, testConfig(t, dir, loki.srv.URL))
	loki.status.Store(http.StatusBadRequest)
	appendLines(t, filepath.Join(dir, "app.log"), "refused")
	testenv.EventuallyTrue(t, time.Minute, "the rejected line counted", func() bool { return counter(t, c.m.dropped, "rejected") == 1 })
	loki.status.Store(0)
	appendLines(t, filepath.Join(dir, "app.log"), "accepted")
	testenv.EventuallyTrue(t, time.Minute, "the next line", func() bool { return len(loki.lines()) == 1 })
	countLines(t, loki.lines(), []string{"accepted"})
}

func TestBufferFullDropsAndCounts(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	cfg := testConfig(t, dir, loki.srv.URL)
	cfg.Loki.Buffer.MaxBytes = 256 << 10
	c := startCollector(t, cfg)
	loki.status.Store(http.StatusServiceUnavailable)
	line := strings.Repeat("x", 1000)
	var want []string
	for i := range 1000 { // ~1 MB, four times the bound
		want = append(want, fmt.Sprintf("%06d %s", i, line))
	}
	appendLines(t, filepath.Join(dir, "app.log"), want...)
	testenv.EventuallyTrue(t, time.Minute, "all lines read", func() bool { return counter(t, c.m.linesRead) == 1000 })
	testenv.EventuallyTrue(t, time.Minute, "drops counted", func() bool { return counter(t, c.m.dropped, "buffer_full") > 0 })
	if b := testutil.ToFloat64(c.m.bufferBytes); b > float64(cfg.Loki.Buffer.MaxBytes) {
		t.Errorf("buffer holds %v bytes, bound %d", b, cfg.Loki.Buffer.MaxBytes)
	}
	loki.status.Store(0)
	dropped := counter(t, c.m.dropped, "buffer_full")
	testenv.EventuallyTrue(t, time.Minute, "buffered lines delivered", func() bool { return float64(len(loki.lines()))+dropped >= 1000 })
	time.Sleep(200 * time.Millisecond)
	got := loki.lines()
	if float64(len(got))+dropped != 1000 {
		t.Errorf("delivered %d + dropped %v != 1000 written", len(got), dropped)
	}
	seen := map[string]bool{}
	for _, p := range got {
		if seen[p.line] {
			t.Errorf("duplicate %q", p.line[:6])
		}
		seen[p.line] = true
	}
}

func TestPodLogsCRIWithWorkloadMetrics(t *testing.T) {
	dir := t.TempDir()
	loki := newFakeLoki(t)
	cfg := testConfig(t, dir, loki.srv.URL)
	cfg.Inputs = nil
	cfg.PodLogs = PodLogsConfig{Enabled: true, Dir: filepath.Join(dir, "pods"), Format: FormatAuto,
		Multiline: MultilineConfig{Start: `^\S`, Timeout: 50 * time.Millisecond}}
	cfg.Patterns = []PatternConfig{
		{Name: "exception", Regex: `Exception`, Labels: map[string]string{"severity": "page"}},
		{Name: "timeout", Literal: "timed out"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	c := startCollector(t, cfg)
	cdir := filepath.Join(dir, "pods", "shop_cart-7d9f_0f1e2d3c-aaaa-bbbb-cccc-000000000001", "server")
	if err := os.MkdirAll(cdir, 0o755); err != nil {
		t.Fatal(err)
	}
	ts := "2024-01-02T03:04:05.000000001Z"
	appendLines(t, filepath.Join(cdir, "0.log"),
		ts+" stdout F level=info msg=started",
		ts+" stderr P java.lang.Illegal",
		ts+" stderr F StateException: boom",
		ts+" stderr F \tat shop.Cart.add(Cart.java:10)",
		ts+" stdout F level=error msg=\"db timed out\"",
	)
	testenv.EventuallyTrue(t, time.Minute, "3 records", func() bool { return len(loki.lines()) >= 3 })
	got := loki.lines()
	wantLabels := `{container="server", job="test", namespace="shop", node="node-1", pod="cart-7d9f"}`
	for _, p := range got {
		if p.labels != wantLabels && !strings.Contains(p.labels, `pod="cart-7d9f"`) {
			t.Errorf("labels %s", p.labels)
		}
		if p.meta["pod_uid"] != "0f1e2d3c-aaaa-bbbb-cccc-000000000001" {
			t.Errorf("structured metadata %v lacks pod_uid", p.meta)
		}
	}
	countLines(t, got, []string{
		"level=info msg=started",
		"java.lang.IllegalStateException: boom\n\tat shop.Cart.add(Cart.java:10)",
		`level=error msg="db timed out"`,
	})
	for _, p := range got {
		if strings.HasPrefix(p.line, "java") && p.meta["stream"] != "stderr" {
			t.Errorf("stream metadata = %q", p.meta["stream"])
		}
	}
	exp := `
# HELP vigil_log_matches_total Log records that matched a configured pattern, per workload.
# TYPE vigil_log_matches_total counter
vigil_log_matches_total{container="server",container_id="",namespace="shop",owner_kind="",owner_name="",pattern="exception",pod="cart-7d9f",pod_uid="0f1e2d3c-aaaa-bbbb-cccc-000000000001",severity="page",unit=""} 1
vigil_log_matches_total{container="server",container_id="",namespace="shop",owner_kind="",owner_name="",pattern="timeout",pod="cart-7d9f",pod_uid="0f1e2d3c-aaaa-bbbb-cccc-000000000001",severity="",unit=""} 1
`
	if err := testutil.CollectAndCompare(updateCollector{c}, strings.NewReader(exp), "vigil_log_matches_total"); err != nil {
		t.Error(err)
	}
	lvl := `
# HELP vigil_log_lines_total Log records per workload and level (unknown when no level could be read).
# TYPE vigil_log_lines_total counter
`
	for _, l := range levelNames {
		v := 0
		switch l {
		case "info", "error", "unknown":
			v = 1
		}
		lvl += fmt.Sprintf("vigil_log_lines_total{container=\"server\",container_id=\"\",level=%q,namespace=\"shop\",owner_kind=\"\",owner_name=\"\",pod=\"cart-7d9f\",pod_uid=\"0f1e2d3c-aaaa-bbbb-cccc-000000000001\",unit=\"\"} %d\n", l, v)
	}
	if err := testutil.CollectAndCompare(updateCollector{c}, strings.NewReader(lvl), "vigil_log_lines_total"); err != nil {
		t.Error(err)
	}
}

// updateCollector adapts Update to prometheus.Collector for testutil.
type updateCollector struct{ c *Collector }

func (u updateCollector) Describe(chan<- *prometheus.Desc) {}
func (u updateCollector) Collect(ch chan<- prometheus.Metric) {
	_ = u.c.Update(context.Background(), ch)
}

func TestNoBackendStillCountsPatterns(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "")
	cfg.Patterns = []PatternConfig{{Name: "boom", Literal: "boom"}}
	c := startCollector(t, cfg)
	appendLines(t, filepath.Join(dir, "app.log"), "boom", "fine", "boom again")
	testenv.EventuallyTrue(t, time.Minute, "lines read", func() bool { return counter(t, c.m.records) == 3 })
	if _, err := os.Stat(cfg.Loki.Buffer.Dir); err == nil {
		t.Error("a buffer folder was created without loki.url")
	}
	testenv.EventuallyTrue(t, time.Minute, "positions saved", func() bool {
		p, err := loadPositions(cfg.PositionsFile)
		return err == nil && p.Files[filepath.Join(dir, "app.log")].Offset == int64(len("boom\nfine\nboom again\n"))
	})
	var buf bytes.Buffer
	ch := make(chan prometheus.Metric, 100)
	_ = c.Update(context.Background(), ch)
	close(ch)
	found := false
	for m := range ch {
		if strings.Contains(m.Desc().String(), "vigil_log_matches_total") {
			found = true
			fmt.Fprintln(&buf, m.Desc())
		}
	}
	if !found {
		t.Error("no vigil_log_matches_total without a backend")
	}
}
