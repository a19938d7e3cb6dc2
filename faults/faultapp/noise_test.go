package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestInBurst(t *testing.T) {
	base := time.Unix(1_800_000_000, 0) // a whole minute
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {2400 * time.Millisecond, true}, {2500 * time.Millisecond, false}, {59 * time.Second, false}, {60 * time.Second, true}, {61 * time.Second, true}} {
		if got := inBurst(base.Add(c.at), time.Minute, 2500*time.Millisecond); got != c.want {
			t.Errorf("inBurst(+%s) = %v, want %v", c.at, got, c.want)
		}
	}
	if inBurst(base, 0, time.Second) {
		t.Error("a zero period must never burst")
	}
}

// TestNoiseModes runs the built fault app in the healthy-but-noisy modes and
// checks what a client and the kubelet would see.
func TestNoiseModes(t *testing.T) {
	bin := buildApp(t)

	t.Run("slowburst", func(t *testing.T) {
		const delay = 400 * time.Millisecond
		a := startKindApp(t, bin, "FAULTS_BURST_EVERY=2s", "FAULTS_BURST_FOR=1s", "FAULTS_BURST_DELAY="+delay.String())
		a.mode("slowburst")
		var slow, fast int
		for end := time.Now().Add(4500 * time.Millisecond); time.Now().Before(end); {
			start := time.Now()
			if code, msg := a.get(t.Context()); code != 200 {
				t.Fatalf("slowburst answered %d %q; want 200, late or not", code, msg)
			}
			if time.Since(start) >= delay {
				slow++
			} else {
				fast++
			}
		}
		// Two bursts of a second each came in 4.5 s: some answers waited
		// the burst's delay, and the rest were not held.
		if slow == 0 || fast == 0 {
			t.Errorf("slowburst: %d answers took %s or more, %d less; want both", slow, delay, fast)
		}
	})

	exitCode := func(t *testing.T, a *kindApp, within time.Duration) int {
		t.Helper()
		select {
		case <-a.exited:
			var ee *exec.ExitError
			if errors.As(a.err, &ee) {
				return ee.ExitCode()
			}
			if a.err != nil {
				t.Fatal(a.err)
			}
			return 0
		case <-time.After(within):
			t.Fatalf("the fault app did not exit within %s", within)
			return -1
		}
	}

	t.Run("restart", func(t *testing.T) {
		// Started in mode restart, as the suite's bystander is: it serves,
		// then exits 0 on its own.
		a := startKindApp(t, bin, "FAULTS_MODE=restart", "FAULTS_RESTART_EVERY=1s")
		if code := exitCode(t, a, 10*time.Second); code != 0 {
			t.Errorf("mode restart exited with code %d, want a clean 0", code)
		}
	})

	t.Run("sigterm", func(t *testing.T) {
		// A request in flight when SIGTERM comes is still answered, then the
		// app exits 0 and new connections are refused.
		a := startKindApp(t, bin, "FAULTS_SERVICE=2s")
		got := make(chan int, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			code, _ := a.get(ctx)
			got <- code
		}()
		time.Sleep(500 * time.Millisecond) // the request is being served (2 s)
		if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := <-got; code != 200 {
			t.Errorf("the request in flight at SIGTERM got %d, want 200", code)
		}
		if code := exitCode(t, a, 10*time.Second); code != 0 {
			t.Errorf("SIGTERM: exit code %d, want 0", code)
		}
		if code, msg := a.get(t.Context()); code != -1 || !strings.Contains(msg, "refused") {
			t.Errorf("after exit: got %d %q, want connection refused", code, msg)
		}
	})
}
