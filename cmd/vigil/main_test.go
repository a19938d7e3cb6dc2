package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for the vigil binary: run with
// VIGIL_TEST_MAIN=1 it behaves exactly as `vigil` with the same arguments.
func TestMain(m *testing.M) {
	if os.Getenv("VIGIL_TEST_MAIN") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("log:\n  level: debug\n"), 0o644)
	os.WriteFile(bad, []byte("log:\n  level: debug\n  fromat: json\n"), 0o644)

	var out, errb bytes.Buffer
	if code := Main([]string{"config", "check", good}, &out, &errb); code != 0 {
		t.Fatalf("good file: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), good+": OK") {
		t.Errorf("stdout = %q", out.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"config", "check", good, bad}, &out, &errb); code != 1 {
		t.Fatalf("bad file: exit %d, want 1", code)
	}
	if want := bad + `:3:3: log.fromat: unknown field (did you mean "format"?)`; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr = %q, want %q", errb.String(), want)
	}
	if code := Main([]string{"config", "check", filepath.Join(dir, "missing.yaml")}, &out, &errb); code != 1 {
		t.Errorf("missing file: exit %d, want 1", code)
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "run") {
		t.Errorf("--help: exit %d, out %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"run", "--help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "--web.listen-address") || !strings.Contains(out.String(), "--config") {
		t.Errorf("run --help: exit %d, out %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"version"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "vigil") {
		t.Errorf("version: exit %d, out %q", code, out.String())
	}
	out.Reset()
	if code := Main([]string{"config", "default"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "listen_address") {
		t.Errorf("config default: exit %d", code)
	}
	errb.Reset()
	if code := Main([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "frobnicate") {
		t.Errorf("unknown command: exit %d, stderr %q", code, errb.String())
	}
}

// lockedBuffer is a bytes.Buffer safe for one writer and many readers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startVigil runs `vigil args...` as a child process (this test binary
// standing in for vigil) and waits until its log says it is ready. It
// returns the process, the agent's base URL and its log.
func startVigil(t *testing.T, args ...string) (*exec.Cmd, string, *lockedBuffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	// Its temporary TSDB directory goes with the test: Kill leaves it.
	cmd.Env = append(os.Environ(), "VIGIL_TEST_MAIN=1", "TMPDIR="+t.TempDir())
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	// The JSON log's "vigil is ready" record names the bound address.
	addr := make(chan string, 1)
	logBuf := &lockedBuffer{}
	go func() {
		sc := bufio.NewScanner(io.TeeReader(stderr, logBuf))
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "vigil is ready" {
				addr <- rec["address"].(string)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	select {
	case a := <-addr:
		return cmd, "http://" + a, logBuf
	case <-time.After(60 * time.Second):
		t.Fatalf("agent did not become ready; log:\n%s", logBuf.String())
	}
	return nil, "", nil
}

// TestRunReloadsOnSIGHUP runs the agent as a real process and reloads it
// with a signal, as an operator would.
func TestRunReloadsOnSIGHUP(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(cfg, []byte("log:\n  level: info\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, url, logBuf := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")

	reloadOK := func() string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "vigil_config_last_reload_successful "); ok {
				return v
			}
		}
		return ""
	}
	waitFor := func(want string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for reloadOK() != want {
			if time.Now().After(deadline) {
				t.Fatalf("vigil_config_last_reload_successful never became %s; log:\n%s", want, logBuf.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("1")

	os.WriteFile(cfg, []byte("log:\n  level: info\n  bogus: 1\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("0")
	// Still serving with the old configuration.
	if resp, err := http.Get(url + "/-/ready"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("agent not ready after a bad reload: %v", err)
	}

	os.WriteFile(cfg, []byte("log:\n  level: debug\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor("1")

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exited with %v after SIGTERM; log:\n%s", err, logBuf.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop on SIGTERM")
	}
	if !strings.Contains(logBuf.String(), "configuration reload failed") || !strings.Contains(logBuf.String(), "bogus") {
		t.Errorf("the log does not explain the failed reload:\n%s", logBuf.String())
	}
}

// vigil run sets the Go runtime's soft memory limit from
// global.memory_limit (served as go_gc_gomemlimit_bytes), and a reload
// changes it.
func TestRunSetsTheMemoryLimit(t *testing.T) {
	if os.Getenv("GOMEMLIMIT") != "" {
		t.Skip("GOMEMLIMIT is set in the environment, and wins")
	}
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	if err := os.WriteFile(cfg, []byte("global:\n  memory_limit: 64MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, url, logBuf := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")
	limit := func() string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "go_gc_gomemlimit_bytes "); ok {
				return v
			}
		}
		return ""
	}
	if got := limit(); got != "6.7108864e+07" {
		t.Fatalf("go_gc_gomemlimit_bytes %q with memory_limit: 64MiB; log:\n%s", got, logBuf.String())
	}
	os.WriteFile(cfg, []byte("global:\n  memory_limit: \"off\"\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(30 * time.Second)
	for limit() != "9.223372036854776e+18" {
		if time.Now().After(deadline) {
			t.Fatalf("go_gc_gomemlimit_bytes %q after a reload with memory_limit: off; log:\n%s", limit(), logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
