package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tests in this file reproduce kinds of failure in real cgroups with real
// limits (see real_linux_test.go) and check the signals Vigil's default
// alerts use for them: a working set held at the memory limit without an
// OOM kill, a CPU quota that throttles a busy process, and a process that
// has run out of file descriptors.

// faultHelperEnv makes the test binary a fault process (see TestMain).
const faultHelperEnv = "VIGIL_CGROUP_FAULT_HELPER"

// faultHelper runs one fault in this process, forever:
//
//	memsit:<anonMiB>:<fileMiB>:<dir>  hold anonMiB of touched anonymous memory,
//	                                  then read a fileMiB file in a loop (page
//	                                  cache churning at the limit)
//	fdleak:<limit>                    lower the soft RLIMIT_NOFILE to limit and
//	                                  open /dev/null until EMFILE
func faultHelper(spec string) int {
	f := strings.Split(spec, ":")
	switch f[0] {
	case "memsit":
		anon, _ := strconv.Atoi(f[1])
		file, _ := strconv.Atoi(f[2])
		hold := make([]byte, anon<<20)
		for i := 0; i < len(hold); i += 4096 {
			hold[i] = 1
		}
		p := filepath.Join(f[3], "churn")
		buf := make([]byte, 1<<20)
		w, err := os.Create(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for range file {
			if _, err := w.Write(buf); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		w.Close()
		for {
			r, err := os.Open(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
			r.Close()
			hold[time.Now().UnixNano()%int64(len(hold))]++ // keep it live
		}
	case "fdleak":
		limit, _ := strconv.ParseUint(f[1], 10, 64)
		var rl unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return 1
		}
		rl.Cur = limit
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for {
			if _, err := unix.Open("/dev/null", unix.O_RDONLY, 0); err != nil {
				if err != unix.EMFILE {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
				break
			}
		}
		fmt.Println("EMFILE")
		for {
			time.Sleep(time.Hour)
		}
	}
	fmt.Fprintln(os.Stderr, "unknown fault", spec)
	return 2
}

// startFault runs the test binary as a fault helper in the cgroup rel.
func (r *realCgroups) startFault(rel, spec string) {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	r.start(rel, fmt.Sprintf("env %s=%s %s", faultHelperEnv, spec, exe))
}

// TestRealMemoryAtLimit holds a working set of about 120 MiB in a
// container limited to 128 MiB while page cache churns: the kernel
// reclaims at the limit again and again, nothing is OOM killed, and tasks
// stall on memory. This is VigilWorkloadMemoryAtLimit's input: working set
// over 90 % of the limit while tasks stall on memory (PSI, on cgroup2 and
// hybrid nodes) or limit hits rise.
func TestRealMemoryAtLimit(t *testing.T) {
	r := newRealCgroups(t)
	tag := randHex(8)
	uid := randHex(8) + "-" + randHex(4) + "-" + randHex(4) + "-" + randHex(4) + "-" + randHex(12)
	id := randHex(64)
	pod := "/vigil-test-" + tag + "/kubepods/burstable/pod" + uid
	ctr := pod + "/" + id
	if r.l.kind == LayoutV2 {
		pod = "/vigil-test-" + tag + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
		ctr = pod + "/cri-containerd-" + id + ".scope"
	}
	r.mkdir(ctr)
	const limit = 128 << 20
	r.limit(ctr, limit)
	// 113 MiB held plus the Go runtime and the mapped test binary.
	r.startFault(ctr, fmt.Sprintf("memsit:113:48:%s", t.TempDir()))

	c := newStarted(t, NewConfig(), "/sys", nil, nil)
	poll(t, "working set at the limit", func() string {
		s := scrape(t, c)
		ws, _ := find(s, "vigil_cgroup_memory_working_set_bytes", ctr)
		u, _ := find(s, "vigil_cgroup_memory_usage_bytes", ctr)
		if ws.value/limit <= 0.90 || u.value < limit-(1<<20) {
			o, _ := find(s, "vigil_cgroup_oom_kills_total", ctr)
			return fmt.Sprintf("working set %v, usage %v of %v, OOM kills %v", ws.value, u.value, limit, o.value)
		}
		return ""
	})
	s0 := scrape(t, c)
	time.Sleep(5 * time.Second)
	s := scrape(t, c)
	hits0, _ := find(s0, "vigil_cgroup_memory_limit_hits_total", ctr)
	hits, hitsOK := find(s, "vigil_cgroup_memory_limit_hits_total", ctr)
	wait0, _ := find(s0, "vigil_cgroup_memory_pressure_waiting_seconds_total", ctr)
	wait, waitOK := find(s, "vigil_cgroup_memory_pressure_waiting_seconds_total", ctr)
	ws, _ := find(s, "vigil_cgroup_memory_working_set_bytes", ctr)
	lim, _ := find(s, "vigil_cgroup_memory_limit_bytes", ctr)
	oom, _ := find(s, "vigil_cgroup_oom_kills_total", ctr)
	if lim.value != limit || ws.value/lim.value <= 0.90 {
		t.Errorf("working set %v of limit %v (%.3f), want above 0.90", ws.value, lim.value, ws.value/lim.value)
	}
	if oom.value != 0 {
		t.Errorf("OOM kills %v: the process was to sit at the limit, not die", oom.value)
	}
	if !hitsOK {
		t.Error("vigil_cgroup_memory_limit_hits_total not reported")
	}
	stall := (wait.value - wait0.value) / 5
	switch {
	case r.l.v2 != "" && (!waitOK || stall < 0.02):
		t.Errorf("memory stall (PSI some) %.4f s/s (reported %v), want above the alert's 0.02 while reclaiming at the limit", stall, waitOK)
	case r.l.v2 == "" && hits.value <= hits0.value:
		t.Errorf("pure v1 (no PSI): limit hits %v then %v, want rising", hits0.value, hits.value)
	}
	t.Logf("layout %s: working set %.1f MiB of %.0f MiB (%.3f), OOM kills %v, memory stall (some) %.4f s/s, limit hits %v then %v",
		r.l.kind, ws.value/(1<<20), lim.value/(1<<20), ws.value/lim.value, oom.value, stall, hits0.value, hits.value)
}

// TestRealCPUThrottledPressure runs a busy loop under a 10 % CPU quota:
// throttled periods are most of all periods (VigilWorkloadCPUThrottled's
// ratio), and its tasks wait for CPU (PSI cpu some).
func TestRealCPUThrottledPressure(t *testing.T) {
	r := newRealCgroups(t)
	tag := randHex(8)
	unit := "vigil-test-" + tag + ".service"
	svc := "/vigil-test-" + tag + "/system.slice/" + unit
	r.mkdir(svc)
	r.limit(svc, 64<<20)
	r.start(svc, "sh -c 'while :; do :; done'")
	c := newStarted(t, NewConfig(), "/sys", nil, nil)
	s0 := scrape(t, c)
	p0, _ := find(s0, "vigil_cgroup_cpu_periods_total", svc)
	th0, _ := find(s0, "vigil_cgroup_cpu_throttled_periods_total", svc)
	cpu0, _ := find(s0, "vigil_cgroup_cpu_pressure_waiting_seconds_total", svc)
	time.Sleep(3 * time.Second)
	s := scrape(t, c)
	p, _ := find(s, "vigil_cgroup_cpu_periods_total", svc)
	th, _ := find(s, "vigil_cgroup_cpu_throttled_periods_total", svc)
	cpu, cpuOK := find(s, "vigil_cgroup_cpu_pressure_waiting_seconds_total", svc)
	ratio := (th.value - th0.value) / (p.value - p0.value)
	if p.value-p0.value < 10 || ratio < 0.5 {
		t.Errorf("throttled %v of %v periods in 3s (%.2f), want most", th.value-th0.value, p.value-p0.value, ratio)
	}
	if r.l.v2 != "" && (!cpuOK || cpu.value <= cpu0.value) {
		t.Errorf("CPU pressure (PSI some) %v then %v (reported %v), want rising while throttled", cpu0.value, cpu.value, cpuOK)
	}
	t.Logf("layout %s: throttled %v of %v periods (%.2f) in 3s; CPU waiting (some) +%.3fs", r.l.kind, th.value-th0.value, p.value-p0.value, ratio, cpu.value-cpu0.value)
}

// TestRealFDExhaustion runs a process that lowered its open-files limit to
// 256 and opened files until EMFILE, and a quiet process beside it: the
// collector reports the exhausted one (open = limit), and with a budget of
// one process per scrape, counts the one it left out.
func TestRealFDExhaustion(t *testing.T) {
	r := newRealCgroups(t)
	tag := randHex(8)
	unit := "vigil-test-" + tag + ".service"
	svc := "/vigil-test-" + tag + "/system.slice/" + unit
	r.mkdir(svc)
	r.limit(svc, 64<<20)
	r.start(svc, "sleep 1000")
	r.startFault(svc, "fdleak:256")

	c := newStarted(t, NewConfig(), "/sys", nil, nil)
	poll(t, "descriptors exhausted", func() string {
		s := scrape(t, c)
		open, ok := find(s, "vigil_cgroup_process_open_fds", svc)
		max, _ := find(s, "vigil_cgroup_process_max_fds", svc)
		if !ok || open.value != 256 || max.value != 256 {
			return fmt.Sprintf("open %v of %v (reported %v)", open.value, max.value, ok)
		}
		if open.labels["unit"] != unit {
			return fmt.Sprintf("labels %v", open.labels)
		}
		return ""
	})

	cfg := NewConfig()
	cfg.MaxFDProcesses = 1
	small := newStarted(t, cfg, "/sys", nil, nil)
	s := scrape(t, small)
	var skipped float64
	for _, x := range s {
		if x.name == "vigil_cgroup_fd_processes_skipped_total" && x.labels["reason"] == "budget" {
			skipped = x.value
		}
	}
	if skipped < 1 {
		t.Errorf("budget 1 with two processes in the test cgroup alone: skipped %v, want at least 1", skipped)
	}

	cfg = NewConfig()
	cfg.MaxFDProcesses = 0
	off := newStarted(t, cfg, "/sys", nil, nil)
	if _, ok := find(scrape(t, off), "vigil_cgroup_process_open_fds", svc); ok {
		t.Error("max_fd_processes 0 still counts descriptors")
	}
}
