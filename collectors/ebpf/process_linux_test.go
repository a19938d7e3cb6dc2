//go:build linux

package ebpf

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// waitEvent returns the first fast-path event on the bus that matches.
func (e *testEnv) waitEvent(t *testing.T, what string, match func(event.Event) bool) event.Event {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case ev := <-e.sub.C():
			if match(ev) {
				return ev
			}
		case <-timeout:
			t.Fatalf("no fast-path event: %s", what)
		}
	}
}

func TestProcessExitAndSignal(t *testing.T) {
	env := startCollector(t, nil)
	const unit = "vigil-ebpf-test-proc.service"
	cg := testCgroup(t, unit)

	exit3 := inCgroup(cg, "sh", "-c", "exit 3")
	if err := exit3.Run(); err == nil || exit3.ProcessState.ExitCode() != 3 {
		t.Fatalf("sh -c 'exit 3': %v", err)
	}
	ev := env.waitEvent(t, "sh exiting with 3", func(e event.Event) bool {
		return e.Kind == event.ProcessExit && e.PID == uint32(exit3.Process.Pid)
	})
	if ev.ExitCode != 3 || ev.Signal != 0 || ev.Comm != "sh" || ev.Workload.SystemdUnit != unit {
		t.Errorf("exit event = %+v, want code 3, no signal, comm sh, unit %s", ev, unit)
	}
	if ev.Time.IsZero() || time.Since(ev.Time) > time.Minute || time.Until(ev.Time) > time.Second {
		t.Errorf("exit event time %v is not now", ev.Time)
	}

	sleep := inCgroup(cg, "sleep", "600")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the shell has exec'd sleep, then kill it.
	testenv.EventuallyTrue(t, 30*time.Second, "sleep running", func() bool {
		b, _ := os.ReadFile(filepath.Join("/proc", itoa(sleep.Process.Pid), "comm"))
		return string(b) == "sleep\n"
	})
	if err := sleep.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = sleep.Wait()
	ev = env.waitEvent(t, "sleep killed by SIGKILL", func(e event.Event) bool {
		return e.Kind == event.ProcessExit && e.PID == uint32(sleep.Process.Pid)
	})
	if ev.Signal != 9 || ev.ExitCode != 0 || ev.Comm != "sleep" || ev.Workload.SystemdUnit != unit {
		t.Errorf("kill event = %+v, want signal 9, comm sleep, unit %s", ev, unit)
	}

	wl := map[string]string{"unit": unit}
	for _, c := range []struct {
		metric string
		labels map[string]string
		min    float64
	}{
		{"vigil_process_execs_total", wl, 2}, // sh -c 'exit 3'; sh exec'ing sleep
		{"vigil_process_exits_total", map[string]string{"unit": unit, "outcome": "error"}, 1},
		{"vigil_process_exits_total", map[string]string{"unit": unit, "outcome": "signal"}, 1},
		{"vigil_ebpf_fast_path_events_total", map[string]string{"kind": "process_exit"}, 2},
	} {
		testenv.EventuallyTrue(t, 30*time.Second, c.metric, func() bool { return env.value(t, c.metric, c.labels) >= c.min })
	}
}

func TestOOMKill(t *testing.T) {
	env := startCollector(t, nil)
	const unit = "vigil-ebpf-test-oom.service"
	cg := testCgroup(t, unit)
	if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte("33554432"), 0o644); err != nil {
		t.Fatal(err)
	}
	tail := inCgroup(cg, "tail", "/dev/zero")
	err := tail.Run()
	if err == nil {
		t.Fatal("tail /dev/zero in a 32 MiB cgroup exited normally")
	}
	ev := env.waitEvent(t, "OOM kill of tail", func(e event.Event) bool {
		return e.Kind == event.OOMKill && e.PID == uint32(tail.Process.Pid)
	})
	if ev.Comm != "tail" || ev.Workload.SystemdUnit != unit || ev.Attrs["total_vm_bytes"] == "" {
		t.Errorf("OOM event = %+v, want comm tail, unit %s, total_vm_bytes", ev, unit)
	}
	exit := env.waitEvent(t, "tail's exit by SIGKILL", func(e event.Event) bool {
		return e.Kind == event.ProcessExit && e.PID == uint32(tail.Process.Pid)
	})
	if exit.Signal != 9 {
		t.Errorf("tail exit = %+v, want signal 9", exit)
	}
	for _, c := range []struct {
		metric string
		labels map[string]string
	}{
		{"vigil_oom_kills_total", map[string]string{"unit": unit}},
		{"vigil_ebpf_fast_path_events_total", map[string]string{"kind": "oom_kill"}},
	} {
		testenv.EventuallyTrue(t, 30*time.Second, c.metric, func() bool { return env.value(t, c.metric, c.labels) >= 1 })
	}
}

// TestUnifiedHierarchy attributes by cgroup2 IDs (what a pure v2 node
// uses), resolved through the cgroup collector's resolver.
func TestUnifiedHierarchy(t *testing.T) {
	cfg := NewConfig()
	cfg.CgroupHierarchy = "unified"
	env := startCollector(t, cfg)
	root, _, err := cgroupMount("/proc", "unified")
	if err != nil {
		t.Fatal(err)
	}
	const unit = "vigil-ebpf-test-v2.service"
	dir := filepath.Join(root, unit)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.EventuallyTrue(t, 30*time.Second, "cgroup2 test directory removed", func() bool {
			err := os.Remove(dir)
			return err == nil || os.IsNotExist(err)
		})
	})
	cmd := inCgroup(dir, "sh", "-c", "exit 4")
	if err := cmd.Run(); err == nil {
		t.Fatal("sh -c 'exit 4' succeeded")
	}
	ev := env.waitEvent(t, "sh exiting with 4", func(e event.Event) bool {
		return e.Kind == event.ProcessExit && e.PID == uint32(cmd.Process.Pid)
	})
	if ev.ExitCode != 4 || ev.Workload.SystemdUnit != unit || ev.Workload.CgroupPath != "/"+unit {
		t.Errorf("exit event = %+v, want code 4 in %s", ev, unit)
	}
}
