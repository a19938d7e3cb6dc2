//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf/ringbuf"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestDisabledProgramsAreReportedNotLoaded(t *testing.T) {
	cfg := NewConfig()
	cfg.Programs.HTTP = false
	cfg.Programs.OOM = false
	env := startCollector(t, cfg)
	for _, p := range programs {
		want := 1.0
		if p.group == "http" || p.group == "oom" {
			want = 0
		}
		if v := env.value(t, "vigil_ebpf_program_loaded", map[string]string{"program": p.name}); v != want {
			t.Errorf("vigil_ebpf_program_loaded{program=%q} = %v, want %v", p.name, v, want)
		}
	}
}

// TestNoBTF pretends the kernel has no BTF (a fake: this kernel has it) and
// checks that Start succeeds with every program reported as not loaded.
func TestNoBTF(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	var logs strings.Builder
	c, err := newCollector(NewConfig(), collectors.Settings{
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Events: event.NewBus(),
		Paths: collectors.Paths{ProcFS: "/proc"},
	})
	if err != nil {
		t.Fatal(err)
	}
	col := c.(*collector)
	col.probe = func(cfg *Config, log *slog.Logger) *capabilities {
		caps := discover(cfg, log)
		caps.features["btf"] = errors.New("kernel BTF unavailable (pretended by the test)")
		return caps
	}
	if err := col.Start(context.Background()); err != nil {
		t.Fatalf("Start without BTF: %v", err)
	}
	defer col.Shutdown(context.Background())
	reg := prometheus.NewRegistry()
	reg.MustRegister(updateAdapter{col})
	env := &testEnv{c: col, reg: reg}
	for _, p := range programs {
		if v := env.value(t, "vigil_ebpf_program_loaded", map[string]string{"program": p.name}); v != 0 {
			t.Errorf("vigil_ebpf_program_loaded{program=%q} = %v, want 0", p.name, v)
		}
	}
	if !strings.Contains(logs.String(), "kernel BTF unavailable (pretended by the test)") {
		t.Errorf("log does not say why nothing loaded:\n%s", logs.String())
	}
}

// TestHTTPHookFallsBack pretends the kernel lacks sock/sock_recv_length
// (Linux before 6.4): under http_hook auto the syscall path is attached in
// full and the socket path not at all (both would count each request
// twice); under http_hook socket HTTP stays half-seen, and says so.
func TestHTTPHookFallsBack(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	for _, c := range []struct {
		hook, want, log string
	}{
		{"auto", "syscalls", "using the syscall tracepoints"},
		{"socket", "", "socket-layer path incomplete"},
	} {
		t.Run(c.hook, func(t *testing.T) {
			var logs strings.Builder
			cfg := NewConfig()
			cfg.HTTPHook = c.hook
			col, err := newCollector(cfg, collectors.Settings{
				Logger: slog.New(slog.NewTextHandler(&logs, nil)), Events: event.NewBus(),
				Paths: collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
			})
			if err != nil {
				t.Fatal(err)
			}
			cl := col.(*collector)
			cl.probe = func(cfg *Config, log *slog.Logger) *capabilities {
				caps := discover(cfg, log)
				caps.absent = map[string]bool{"sock_recv_length": true}
				return caps
			}
			if err := cl.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer cl.Shutdown(context.Background())
			reg := prometheus.NewRegistry()
			reg.MustRegister(updateAdapter{cl})
			env := &testEnv{c: cl, reg: reg}
			for _, p := range programs {
				if p.httpHook == "" {
					continue
				}
				want := 0.0
				if p.httpHook == c.want || (c.hook == "socket" && p.name == "http_sock_send") {
					want = 1
				}
				if v := env.value(t, "vigil_ebpf_program_loaded", map[string]string{"program": p.name}); v != want {
					t.Errorf("vigil_ebpf_program_loaded{program=%q} = %v, want %v", p.name, v, want)
				}
			}
			if !strings.Contains(logs.String(), c.log) {
				t.Errorf("log does not say %q:\n%s", c.log, logs.String())
			}
		})
	}
}

// TestUnprivileged runs the collector as user nobody in a child process:
// loading fails for lack of privileges, and Start must still succeed.
func TestUnprivileged(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	// The test binary's own directory is private to root: run a copy.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "vigil-ebpf-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "ebpf.test")
	if err := os.WriteFile(copyPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(copyPath, "-test.run=^$", "-")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), helperEnv+"=unprivileged")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged collector: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), fmt.Sprintf("loaded=0 of=%d", len(programs))) ||
		!strings.Contains(string(out), "permission denied") {
		t.Errorf("unprivileged collector output:\n%s", out)
	}
}

// unprivilegedCollector is the helper for TestUnprivileged.
func unprivilegedCollector() error {
	c, err := newCollector(NewConfig(), collectors.Settings{
		Logger: slog.New(slog.NewTextHandler(os.Stdout, nil)), Events: event.NewBus(),
		Paths: collectors.Paths{ProcFS: "/proc"},
	})
	if err != nil {
		return err
	}
	if err := c.(collectors.Lifecycle).Start(context.Background()); err != nil {
		return fmt.Errorf("Start: %w", err)
	}
	defer c.(collectors.Lifecycle).Shutdown(context.Background())
	reg := prometheus.NewRegistry()
	reg.MustRegister(updateAdapter{c})
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	loaded := 0
	for _, mf := range mfs {
		if mf.GetName() == "vigil_ebpf_program_loaded" {
			for _, m := range mf.GetMetric() {
				loaded += int(m.GetGauge().GetValue())
			}
		}
	}
	fmt.Printf("loaded=%d of=%d\n", loaded, len(programs))
	return nil
}

// TestEventsLostAreCounted overflows a one-page ring buffer that is read
// only every 5s, and checks the loss is exported per program.
func TestEventsLostAreCounted(t *testing.T) {
	cfg := NewConfig()
	cfg.RingBufferBytes = 4096
	cfg.PollInterval = 5 * time.Second
	cfg.WakeupFill = 1
	cfg.Programs = ProgramsConfig{TCP: true}
	env := startCollector(t, cfg)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	for range 200 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	testenv.EventuallyTrue(t, 30*time.Second, "events lost in tcp_state", func() bool {
		return env.value(t, "vigil_ebpf_events_lost_total", map[string]string{"program": "tcp_state"}) > 0
	})
}

// TestBPFStats exports the kernel's per-program run time and count.
func TestBPFStats(t *testing.T) {
	cfg := NewConfig()
	cfg.BPFStats = true
	env := startCollector(t, cfg)
	c, err := net.Dial("tcp4", "127.0.0.1:1") // refused: still a state change
	if err == nil {
		c.Close()
	}
	testenv.EventuallyTrue(t, 30*time.Second, "tcp_state runs counted", func() bool {
		return env.value(t, "vigil_ebpf_program_runs_total", map[string]string{"program": "tcp_state"}) > 0 &&
			env.value(t, "vigil_ebpf_program_run_seconds_total", map[string]string{"program": "tcp_state"}) > 0
	})
}

// TestHooksOnly checks the bench's control: the same hooks as a real load
// are attached, with programs that do nothing (the traffic that makes the
// real programs send HTTP events makes them send none).
func TestHooksOnly(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	log := slog.New(slog.DiscardHandler)
	cfg := NewConfig()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	// events loads the programs, makes ten requests, and returns the
	// programs loaded and the HTTP events that arrived.
	events := func(hooksOnly bool) ([]string, int) {
		o, err := load(loadOptions{cfg: cfg, cgroupHierarchy: -1, hooksOnly: hooksOnly}, discover(cfg, log), log)
		if err != nil {
			t.Fatal(err)
		}
		defer o.close()
		rd, err := ringbuf.NewReader(o.maps["http_events"])
		if err != nil {
			t.Fatal(err)
		}
		defer rd.Close()
		for range 10 {
			resp, err := http.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		n := 0
		for {
			rd.SetDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := rd.Read(); err != nil {
				break
			}
			n++
		}
		return slices.Sorted(maps.Keys(o.progs)), n
	}
	want, n := events(false)
	if n < 40 {
		t.Fatalf("the real programs sent %d HTTP events for 10 requests, want at least 40", n)
	}
	got, n := events(true)
	if !slices.Equal(got, want) {
		t.Errorf("hooks-only programs %v, want the real load's %v", got, want)
	}
	if n != 0 {
		t.Errorf("the hooks-only programs sent %d HTTP events", n)
	}
}
