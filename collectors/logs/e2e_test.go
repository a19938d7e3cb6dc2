package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// e2eBatchSize is loki.batch_size in the end-to-end test: small, so that
// the batch in flight at the SIGKILL is a small part of what is
// unacknowledged, and the duplicate bound means something.
const e2eBatchSize = 4096

// TestE2EVictoriaLogsRotationKillOutage runs the real vigil binary with only
// the logs collector against a real Loki-protocol store (VictoriaLogs from
// the test harness) and checks the pipeline's promise end to end: lines
// written to files, rotated by rename and by copytruncate, the agent killed
// with SIGKILL mid-stream and restarted, and the store down for a while;
// afterwards every line is in the store at least once, and the only
// duplicates are lines of the one batch that was unacknowledged when the
// agent died. The agent's own vigil_logs_* metrics must agree with the
// counts.
func TestE2EVictoriaLogsRotationKillOutage(t *testing.T) {
	vl := testenv.StartVictoriaLogs(t)
	bin := buildVigil(t)

	dir := t.TempDir()
	logDir := filepath.Join(dir, "logs")
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		t.Fatal(err)
	}
	run := "e2e-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	port := testenv.FreePort(t)
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	cfgPath := filepath.Join(dir, "vigil.yaml")
	cfg := fmt.Sprintf(`global:
  node_name: e2e-node
log:
  level: info
  format: json
collectors:
  host: {enabled: false}
  cgroup: {enabled: false}
  ebpf: {enabled: false}
  logs:
    enabled: true
    inputs:
      - paths: [%q]
        format: plain
        labels: {job: %q}
    pod_logs: {enabled: false}
    poll_interval: 50ms
    scan_interval: 1s
    commit_interval: 100ms
    positions_file: %q
    loki:
      url: %q
      batch_size: %d
      batch_wait: 200ms
      min_backoff: 100ms
      max_backoff: 1s
      timeout: 30s # longer than the store is paused: no second request for a batch in flight
      buffer:
        dir: %q
        segment_bytes: 65536
`, filepath.Join(logDir, "*.log"), run, filepath.Join(stateDir, "positions.json"), vl.LokiPushURL(),
		e2eBatchSize, filepath.Join(stateDir, "buffer"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	agent := testenv.StartProcess(t, testenv.Command{
		Name:  "vigil",
		Path:  bin,
		Args:  []string{"run", "--config", cfgPath, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port)},
		Ready: testenv.HTTPReady(fmt.Sprintf("http://127.0.0.1:%d/-/ready", port)),
	})
	scrape := func(t *testing.T) agentMetrics {
		t.Helper()
		m, err := scrapeMetrics(t.Context(), metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	w := &lineWriter{run: run}
	app := w.open(t, filepath.Join(logDir, "app.log"))
	cp := w.open(t, filepath.Join(logDir, "copy.log"))

	// Phase 1: plain appends to two files.
	w.write(t, app, "initial", 400)
	w.write(t, cp, "initial", 400)
	// The files are new: they are found at the next scan. A file renamed
	// away before the agent ever saw it is not searched for, so wait.
	waitRead(t, metricsURL, "before the rename", w.count())

	// Phase 2: rotation by rename (logrotate "create"): the file is renamed,
	// its writer goes on writing to the old file for a while, then reopens
	// the path, which creates a new file. Nothing may be lost.
	w.write(t, app, "pre-rename", 200)
	appRotated := filepath.Join(logDir, "app.log.1") // not matched by the glob
	if err := os.Rename(app.path, appRotated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // let the tailer see the path missing
	w.write(t, app, "after-rename-old-fd", 100)
	app.reopen(t)
	w.write(t, app, "after-rename-new-file", 200)

	// Phase 3: rotation by copytruncate. Lines written between the tailer's
	// last read and the truncation are lost by design, so the copy and the
	// truncation happen with no writer active and after the agent has read
	// the file. The writer then goes on with O_APPEND, as a real one does;
	// the new content is smaller than the old, so the truncation is seen.
	waitRead(t, metricsURL, "before copytruncate", w.count())
	copyFile(t, cp.path, filepath.Join(logDir, "copy.log.1"))
	if err := os.Truncate(cp.path, 0); err != nil {
		t.Fatal(err)
	}
	w.write(t, cp, "after-copytruncate", 200)

	// Before the kill: the first agent process read and shipped every line,
	// once, and saw each rotation once.
	w0 := w.count()
	testenv.Eventually(t, 2*time.Minute, 50*time.Millisecond, "first agent read and shipped every line", func(ctx context.Context) error {
		m, err := scrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		read, sent := m.value("vigil_logs_lines_read_total"), m.value("vigil_logs_sent_lines_total")
		if read != float64(w0) || sent != float64(w0) {
			return fmt.Errorf("lines read %v, sent %v, written %d", read, sent, w0)
		}
		return nil
	})
	m1 := scrape(t)
	t.Logf("first agent before the kill: lines read %v, sent %v in %v batches, rotations rename=%v truncate=%v",
		m1.value("vigil_logs_lines_read_total"), m1.value("vigil_logs_sent_lines_total"), m1.value("vigil_logs_sent_batches_total"),
		m1.value("vigil_logs_rotations_total", "kind", "rename"), m1.value("vigil_logs_rotations_total", "kind", "truncate"))
	for _, kind := range []string{"rename", "truncate"} {
		if got := m1.value("vigil_logs_rotations_total", "kind", kind); got != 1 {
			t.Errorf("vigil_logs_rotations_total{kind=%q} = %v, want 1", kind, got)
		}
	}
	m1.expectNoErrors(t)

	// Phase 4: SIGKILL mid-stream, with a batch in flight. A writer appends
	// steadily to app.log. Once the agent is reading and shipping those
	// lines, the store is paused (SIGSTOP) until a push request sits unread
	// in its socket; then the agent is killed and the store resumed. The
	// store takes that request although nobody is left to acknowledge it:
	// the "accepted but not acknowledged" case that makes a batch arrive
	// twice. The writer goes on for a while with no agent running.
	appSizeAtKillPhase := fileSize(t, app.path)
	killed := make(chan struct{})
	writerDone, stopWriter := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(stopWriter); <-writerDone }) // if the test fails before the writer ends
	var killWriterErr atomic.Value
	go func() {
		defer close(writerDone)
		after := -1
		for i := 0; i < 20000 && after != 0; i++ {
			if err := w.writeErr(app, "kill", 10); err != nil {
				killWriterErr.Store(err)
				return
			}
			select {
			case <-stopWriter:
				return
			case <-killed:
				if after < 0 {
					after = 30 // 300 more lines with the agent down
				}
				after--
			default:
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	testenv.Eventually(t, 2*time.Minute, 20*time.Millisecond, "agent reading and shipping the kill-phase lines", func(ctx context.Context) error {
		m, err := scrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		read, sent := m.value("vigil_logs_lines_read_total"), m.value("vigil_logs_sent_lines_total")
		if read < float64(w0+200) || sent <= float64(w0) {
			return fmt.Errorf("lines read %v, sent %v; want read >= %d, sent > %d", read, sent, w0+200, w0)
		}
		return nil
	})
	vlPid, vlPort := vl.Pid(), portOf(t, vl.URL)
	t.Cleanup(func() { _ = syscall.Kill(vlPid, syscall.SIGCONT) }) // if the test fails while it is paused
	queued := pauseWithRequestQueued(t, vlPid, vlPort)
	pid := agent.Pid()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(killed)
	testenv.Eventually(t, time.Minute, 20*time.Millisecond, "killed agent exits", func(context.Context) error {
		if done, _ := agent.Exited(); !done {
			return fmt.Errorf("pid %d still running", pid)
		}
		return nil
	})
	if err := syscall.Kill(vlPid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	<-writerDone
	if err, _ := killWriterErr.Load().(error); err != nil {
		t.Fatal(err)
	}
	st := inspectState(t, stateDir)
	t.Logf("at the kill: %d lines unacknowledged in the buffer (%d records after ack %d); the batch in flight had at most %d lines",
		len(st.unacked), st.records, st.acked, len(st.firstBatch))
	// Which unacknowledged lines did the store take anyway? Once the
	// resumed store has read its socket, wait until the answer is stable.
	testenv.Eventually(t, time.Minute, 20*time.Millisecond, "resumed store read its socket", func(context.Context) error {
		if n := unreadBytes(t, vlPort); n != 0 {
			return fmt.Errorf("%d unread bytes on 127.0.0.1:%d", n, vlPort)
		}
		return nil
	})
	var acceptedUnacked map[string]int
	stable := 0
	testenv.Eventually(t, time.Minute, 500*time.Millisecond, "store contents stable after resuming", func(ctx context.Context) error {
		if err := vl.Flush(ctx); err != nil {
			return err
		}
		got, err := storeCounts(ctx, vl, run)
		if err != nil {
			return err
		}
		a := map[string]int{}
		for _, l := range st.unacked {
			if got[l] > 0 {
				a[l] = got[l]
			}
		}
		if len(a) != len(acceptedUnacked) {
			acceptedUnacked, stable = a, 0
			return fmt.Errorf("%d unacknowledged lines in the store, still changing", len(a))
		}
		if stable++; stable < 3 {
			return fmt.Errorf("%d unacknowledged lines in the store, checking again", len(a))
		}
		return nil
	})
	t.Logf("the store took %d of the unacknowledged lines before the restart (request of %d bytes)", len(acceptedUnacked), queued)
	if len(acceptedUnacked) == 0 {
		t.Errorf("the store took none of the unacknowledged lines from the request it held when the agent died; the duplicate case is not exercised")
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}

	// Phase 5: the store is down for a while, lines are written meanwhile;
	// the agent buffers them and retries.
	if err := vl.Stop(); err != nil {
		t.Fatal(err)
	}
	outageStart := time.Now()
	for i := 0; i < 120; i++ {
		w.write(t, app, "outage", 5)
		w.write(t, cp, "outage", 5)
		time.Sleep(100 * time.Millisecond)
	}
	testenv.Eventually(t, time.Minute, 100*time.Millisecond, "agent sees the outage", func(ctx context.Context) error {
		m, err := scrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		if f := m.value("vigil_logs_send_failures_total", "reason", "network"); f == 0 {
			return fmt.Errorf("no failed push yet")
		}
		return nil
	})
	t.Logf("store down for %s", time.Since(outageStart).Round(time.Second))
	if err := vl.Start(); err != nil {
		t.Fatal(err)
	}

	// Phase 6: a last few lines, then wait until the agent has shipped what
	// it read plus what the killed agent left unacknowledged.
	w.write(t, app, "final", 200)
	w.write(t, cp, "final", 200)
	wantRead2 := linesAfter(t, app.path, st.pos[app.path], st.inode(app.path)) + linesAfter(t, cp.path, st.pos[cp.path], st.inode(cp.path))
	testenv.Eventually(t, 2*time.Minute, 100*time.Millisecond, "second agent drained its buffer", func(ctx context.Context) error {
		m, err := scrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		// Drained: everything read, and everything read or left
		// unacknowledged by the killed agent shipped.
		read, sent := m.value("vigil_logs_lines_read_total"), m.value("vigil_logs_sent_lines_total")
		if read < float64(wantRead2) || sent != read+float64(len(st.unacked)) {
			return fmt.Errorf("lines read %v (want %d), sent %v (want read + %d unacknowledged)", read, wantRead2, sent, len(st.unacked))
		}
		return nil
	})
	m2 := scrape(t)
	// A SIGKILL makes the agent re-read nothing: it reads exactly the lines
	// after the positions the killed agent left.
	if got := m2.value("vigil_logs_lines_read_total"); got != float64(wantRead2) {
		t.Errorf("second agent read %v lines, want %d (the lines after the killed agent's positions)", got, wantRead2)
	}
	t.Logf("second agent: lines read %v, sent %v in %v batches, network failures %v, retries %v",
		m2.value("vigil_logs_lines_read_total"), m2.value("vigil_logs_sent_lines_total"), m2.value("vigil_logs_sent_batches_total"),
		m2.value("vigil_logs_send_failures_total", "reason", "network"), m2.value("vigil_logs_send_retries_total"))
	m2.expectNoErrors(t)
	if got := m2.value("vigil_logs_send_retries_total"); got == 0 {
		t.Errorf("vigil_logs_send_retries_total = 0 after a store outage")
	}
	for _, kind := range []string{"rename", "truncate"} {
		if got := m2.value("vigil_logs_rotations_total", "kind", kind); got != 0 {
			t.Errorf("second agent: vigil_logs_rotations_total{kind=%q} = %v, want 0 (no rotation after the restart)", kind, got)
		}
	}
	// Lines read by the killed agent (from its positions at death) plus
	// those read by the second one are every line written: a SIGKILL makes
	// the agent re-read nothing.
	read1 := w0 + linesBetween(t, app.path, appSizeAtKillPhase, st.pos[app.path].Offset)
	if read1+wantRead2 != w.count() {
		t.Errorf("lines read by the killed agent (%d) and by the second (%d) = %d, written %d", read1, wantRead2, read1+wantRead2, w.count())
	}

	// Count in the store.
	var counts map[string]int
	testenv.Eventually(t, 2*time.Minute, 500*time.Millisecond, "every line in VictoriaLogs", func(ctx context.Context) error {
		if err := vl.Flush(ctx); err != nil {
			return err
		}
		var err error
		if counts, err = storeCounts(ctx, vl, run); err != nil {
			return err
		}
		if missing := w.missing(counts); len(missing) > 0 {
			return fmt.Errorf("%d of %d lines missing, e.g. %q", len(missing), w.count(), missing[:min(3, len(missing))])
		}
		return nil
	})
	// The restarted agent re-sends every unacknowledged line, so the lines
	// the store took before the restart must be there exactly twice; no
	// other line may be there twice unless it belongs to the one batch that
	// can have been in flight (the maximal first batch after the
	// acknowledgement mark: at most batch_size bytes plus one record).
	inBatch := map[string]bool{}
	for _, l := range st.firstBatch {
		inBatch[l] = true
	}
	written := w.set()
	total, dups := 0, 0
	for l, n := range counts {
		total += n
		switch {
		case !written[l]:
			t.Errorf("line in the store that was never written: %q (%d times)", l, n)
		case n == 2 && inBatch[l]:
			dups++
		case n > 1:
			t.Errorf("line %q is in the store %d times; only lines of the batch in flight at the SIGKILL may be there twice", l, n)
		}
	}
	for l := range acceptedUnacked {
		if counts[l] != 2 {
			t.Errorf("line %q, taken by the store before the restart and re-sent, is there %d times, want 2", l, counts[l])
		}
	}
	t.Logf("store: %d entries, %d distinct lines, %d lines written, %d duplicates (batch in flight at the kill: at most %d lines, batch_size %d bytes)",
		total, len(counts), w.count(), dups, len(st.firstBatch), e2eBatchSize)
	if dups > len(st.firstBatch) {
		t.Errorf("%d duplicates, more than the %d lines of one batch", dups, len(st.firstBatch))
	}
}

// pauseWithRequestQueued stops the store (SIGSTOP) at a moment when a push
// request sits complete and unread in its socket, and returns its size. If
// the store was stopped while it was already handling a request, no new one
// can arrive (the agent sends one at a time and waits up to loki.timeout):
// it is resumed, which answers that request normally, and paused again.
func pauseWithRequestQueued(t *testing.T, pid, port int) int64 {
	t.Helper()
	for attempt := 1; attempt <= 100; attempt++ {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		var queued int64
		var since time.Time
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			n := unreadBytes(t, port)
			if n == 0 || n != queued {
				queued, since = n, time.Now()
				continue
			}
			// Complete once its bytes stop growing: the agent then waits
			// for the answer.
			if time.Since(since) >= 500*time.Millisecond {
				return n
			}
		}
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		t.Logf("store paused with no request queued (attempt %d); resumed, pausing again", attempt)
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatal("could not pause the store with a push request queued")
	return 0
}

// storeCounts counts the entries of each line of this run in VictoriaLogs.
func storeCounts(ctx context.Context, vl *testenv.VictoriaLogs, run string) (map[string]int, error) {
	rows, err := vl.Query(ctx, fmt.Sprintf(`{job=%q} | fields _msg`, run))
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, r := range rows {
		msg, _ := r["_msg"].(string)
		counts[msg]++
	}
	return counts, nil
}

func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	p, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("%s: %v", rawURL, err)
	}
	return p
}

// unreadBytes sums the receive queues of the established TCP connections
// whose local end is 127.0.0.1:port, from /proc/net/tcp: bytes a client
// sent that the server has not read yet.
func unreadBytes(t *testing.T, port int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	var n int64
	for _, line := range bytes.Split(data, []byte{'\n'})[1:] {
		f := bytes.Fields(line)
		// sl local_address rem_address st tx_queue:rx_queue ...
		if len(f) < 5 || string(f[1]) != local || string(f[3]) != "01" {
			continue
		}
		_, rx, ok := bytes.Cut(f[4], []byte{':'})
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(string(rx), 16, 64)
		if err == nil {
			n += v
		}
	}
	return n
}

// waitRead waits until the agent has read want lines since it started.
func waitRead(t *testing.T, metricsURL, when string, want int) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, 50*time.Millisecond, "agent read every line "+when, func(ctx context.Context) error {
		m, err := scrapeMetrics(ctx, metricsURL)
		if err != nil {
			return err
		}
		if got := m.value("vigil_logs_lines_read_total"); got != float64(want) {
			return fmt.Errorf("lines read %v, written %d", got, want)
		}
		return nil
	})
}

// buildVigil builds the agent binary with the go command running this test.
func buildVigil(t *testing.T) string {
	t.Helper()
	// go test puts its own GOROOT/bin first in the test's PATH.
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to build vigil with: %v", err)
	}
	out := filepath.Join(t.TempDir(), "vigil")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/vigil-agent/vigil/cmd/vigil")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build vigil: %v\n%s", err, b)
	}
	return out
}

// lineWriter writes numbered, unique lines and remembers them.
type lineWriter struct {
	run   string
	mu    sync.Mutex
	lines []string
}

type logFile struct {
	path string
	f    *os.File
}

func (w *lineWriter) open(t *testing.T, path string) *logFile {
	t.Helper()
	lf := &logFile{path: path}
	lf.reopen(t)
	return lf
}

// reopen closes the file and opens its path again (creating it), as a
// writer does after logrotate renamed its file.
func (lf *logFile) reopen(t *testing.T) {
	t.Helper()
	if lf.f != nil {
		lf.f.Close()
	}
	f, err := os.OpenFile(lf.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	lf.f = f
	t.Cleanup(func() { f.Close() })
}

func (w *lineWriter) write(t *testing.T, lf *logFile, phase string, n int) {
	t.Helper()
	if err := w.writeErr(lf, phase, n); err != nil {
		t.Fatal(err)
	}
}

// writeErr appends n lines with one write(2).
func (w *lineWriter) writeErr(lf *logFile, phase string, n int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b bytes.Buffer
	for range n {
		l := fmt.Sprintf("%s seq=%07d phase=%s file=%s", w.run, len(w.lines), phase, filepath.Base(lf.path))
		w.lines = append(w.lines, l)
		b.WriteString(l)
		b.WriteByte('\n')
	}
	_, err := lf.f.Write(b.Bytes())
	return err
}

func (w *lineWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lines)
}

func (w *lineWriter) missing(counts map[string]int) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, l := range w.lines {
		if counts[l] == 0 {
			out = append(out, l)
		}
	}
	return out
}

func (w *lineWriter) set() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := make(map[string]bool, len(w.lines))
	for _, l := range w.lines {
		s[l] = true
	}
	return s
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// linesBetween counts the newlines of path in [from, to).
func linesBetween(t *testing.T, path string, from, to int64) int {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if from < 0 || from > to || to > int64(len(data)) {
		t.Fatalf("%s: range [%d, %d) outside the file (%d bytes)", path, from, to, len(data))
	}
	return bytes.Count(data[from:to], []byte{'\n'})
}

// linesAfter counts the lines of path after the read position p, which
// must name the file's current inode.
func linesAfter(t *testing.T, path string, p filePos, inode uint64) int {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, ino := statIDs(fi); ino != inode || p.Inode != inode {
		t.Fatalf("%s: saved position names inode %d, file is inode %d", path, p.Inode, ino)
	}
	return linesBetween(t, path, p.Offset, fi.Size())
}

// killState is what a killed agent left on disk, read from a copy the way
// the agent's own start-up reads it.
type killState struct {
	pos        map[string]filePos // read positions, brought up to date with the buffer
	acked      uint64
	records    int
	unacked    []string // lines of the records after the acknowledgement mark
	firstBatch []string // the longest batch the shipper can have had in flight
}

func (s *killState) inode(path string) uint64 { return s.pos[path].Inode }

// inspectState copies the positions file and buffer of a stopped agent and
// reads the copy: the read positions (replaying the buffer as a start does)
// and the unacknowledged records. A batch is a run of records from the
// acknowledgement mark on, closed by the first record that takes it to
// batch_size bytes (or earlier, by batch_wait); so a SIGKILL can re-send at
// most that maximal first batch.
func inspectState(t *testing.T, stateDir string) *killState {
	t.Helper()
	snap := t.TempDir()
	if err := os.CopyFS(snap, os.DirFS(stateDir)); err != nil {
		t.Fatal(err)
	}
	pos, err := loadPositions(filepath.Join(snap, "positions.json"))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	buf, replay, err := openBuffer(filepath.Join(snap, "buffer"), 1<<30, 65536, false, pos.Seq, logger)
	if err != nil {
		t.Fatal(err)
	}
	defer buf.close()
	for _, r := range replay {
		pos.Files[r.path] = r.pos
	}
	st := &killState{pos: pos.Files, acked: buf.acked}
	cur := buf.newCursor()
	defer cur.close()
	batchBytes, batchOpen := 0, true
	for {
		r, ok, err := cur.next()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		st.records++
		if err := r.eachEntry(func(_ int64, _ uint8, line []byte) {
			st.unacked = append(st.unacked, string(line))
			if batchOpen {
				st.firstBatch = append(st.firstBatch, string(line))
				batchBytes += len(line)
			}
		}); err != nil {
			t.Fatal(err)
		}
		if batchBytes >= e2eBatchSize {
			batchOpen = false
		}
	}
	return st
}

// agentMetrics is one scrape of the agent's /metrics.
type agentMetrics map[string]*dto.MetricFamily

// scrapeMetrics fetches and parses url (no keep-alive: nothing outlives the
// test).
func scrapeMetrics(ctx context.Context, url string) (agentMetrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return mfs, nil
}

// value sums the series of name whose labels include the given name/value
// pairs.
func (m agentMetrics) value(name string, labels ...string) float64 {
	mf := m[name]
	if mf == nil {
		return 0
	}
	var sum float64
	for _, s := range mf.GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range s.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case s.Counter != nil:
			sum += s.GetCounter().GetValue()
		case s.Gauge != nil:
			sum += s.GetGauge().GetValue()
		case s.Untyped != nil:
			sum += s.GetUntyped().GetValue()
		}
	}
	return sum
}

// expectNoErrors checks the counters that must stay zero in a healthy run,
// and that the metrics are there at all.
func (m agentMetrics) expectNoErrors(t *testing.T) {
	t.Helper()
	for _, name := range []string{"vigil_logs_lines_read_total", "vigil_logs_dropped_lines_total", "vigil_logs_read_errors_total",
		"vigil_logs_buffer_errors_total", "vigil_logs_positions_errors_total", "vigil_logs_parse_errors_total"} {
		if _, ok := m[name]; !ok && name != "vigil_logs_parse_errors_total" {
			t.Errorf("%s missing from /metrics", name)
		}
	}
	for _, name := range []string{"vigil_logs_dropped_lines_total", "vigil_logs_read_errors_total",
		"vigil_logs_buffer_errors_total", "vigil_logs_positions_errors_total", "vigil_logs_parse_errors_total", "vigil_logs_truncated_lines_total"} {
		if v := m.value(name); v != 0 {
			t.Errorf("%s = %v, want 0", name, v)
		}
	}
	if v := m.value("vigil_collector_success", "collector", "logs"); v != 1 {
		t.Errorf(`vigil_collector_success{collector="logs"} = %v, want 1`, v)
	}
}
