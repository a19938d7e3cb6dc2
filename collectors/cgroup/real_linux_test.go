package cgroup

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/collectors/workload"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// Tests in this file create real cgroups on this machine, run processes in
// them and read them back through the collector. They need root. The
// cgroups live under a test-specific parent (/vigil-test-<random>) in every
// hierarchy, named like real layouts below it, and are removed at the end.

func randHex(n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rand.IntN(16)]
	}
	return string(b)
}

// realCgroups creates cgroups at the same relative path in each of the
// hierarchies it was given and removes them at cleanup.
type realCgroups struct {
	t       testing.TB
	l       layout
	roots   []string // hierarchies written to: v1 controllers (and the cgroup2 mount on hybrid), or the v2 root
	created []string // relative paths, in creation order
	procs   []*exec.Cmd
}

func newRealCgroups(t testing.TB) *realCgroups {
	testenv.RequireRoot(t, "creating cgroups")
	l, err := detectLayout("/sys")
	if err != nil {
		t.Fatalf("this machine has no cgroups: %v", err)
	}
	r := &realCgroups{t: t, l: l}
	if l.kind == LayoutV2 {
		r.roots = []string{l.v2}
	} else {
		if l.cpu == "" || l.cpuacct == "" || l.memory == "" {
			t.Fatalf("v1 layout without the cpu, cpuacct and memory controllers: %+v", l)
		}
		r.roots = uniq(l.cpu, l.cpuacct, l.memory, l.v2)
	}
	t.Cleanup(r.cleanup)
	return r
}

func uniq(s ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range s {
		if v != "" && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// mkdir creates rel (and its missing parents) in every hierarchy. On pure
// v2 the cpu and memory controllers are enabled for each new parent's
// children on the way down.
func (r *realCgroups) mkdir(rel string) {
	r.t.Helper()
	parts := strings.Split(strings.Trim(rel, "/"), "/")
	cur := ""
	for i, p := range parts {
		cur += "/" + p
		made := false
		for _, root := range r.roots {
			err := os.Mkdir(root+cur, 0o755)
			if err == nil {
				made = true
			} else if !errors.Is(err, os.ErrExist) {
				r.t.Fatal(err)
			}
		}
		if made {
			r.created = append(r.created, cur)
		}
		if r.l.kind == LayoutV2 && i < len(parts)-1 {
			r.write(r.l.v2, cur, "cgroup.subtree_control", "+cpu +memory")
		}
	}
}

func (r *realCgroups) write(root, rel, file, val string) {
	r.t.Helper()
	if err := os.WriteFile(filepath.Join(root+rel, file), []byte(val), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// limit sets a CPU quota of 10% of one CPU and a memory limit without swap.
func (r *realCgroups) limit(rel string, memBytes int64) {
	r.t.Helper()
	m := strconv.FormatInt(memBytes, 10)
	if r.l.kind == LayoutV2 {
		r.write(r.l.v2, rel, "cpu.max", "10000 100000")
		r.write(r.l.v2, rel, "memory.max", m)
		if exists(r.l.v2 + rel + "/memory.swap.max") {
			r.write(r.l.v2, rel, "memory.swap.max", "0")
		}
		return
	}
	r.write(r.l.cpu, rel, "cpu.cfs_period_us", "100000")
	r.write(r.l.cpu, rel, "cpu.cfs_quota_us", "10000")
	r.write(r.l.memory, rel, "memory.limit_in_bytes", m)
	if exists(r.l.memory + rel + "/memory.memsw.limit_in_bytes") {
		r.write(r.l.memory, rel, "memory.memsw.limit_in_bytes", m)
	}
}

// start runs command in the cgroup rel: the shell moves itself into the
// cgroup in every hierarchy, then execs command, so everything command
// allocates is charged there.
func (r *realCgroups) start(rel, command string) *exec.Cmd {
	r.t.Helper()
	var script strings.Builder
	for _, root := range r.roots {
		fmt.Fprintf(&script, "echo $$ > %q && ", root+rel+"/cgroup.procs")
	}
	script.WriteString("exec " + command)
	cmd := exec.Command("sh", "-c", script.String())
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.procs = append(r.procs, cmd)
	// Wait until the shell has moved itself into the last hierarchy.
	pid := strconv.Itoa(cmd.Process.Pid)
	last := r.roots[len(r.roots)-1] + rel + "/cgroup.procs"
	poll(r.t, "process "+pid+" moved into "+rel, func() string {
		b, err := os.ReadFile(last)
		if err != nil {
			return err.Error()
		}
		for _, l := range strings.Fields(string(b)) {
			if l == pid {
				return ""
			}
		}
		if st, err := os.ReadFile("/proc/" + pid + "/stat"); err == nil && strings.Contains(string(st), ") Z ") {
			return "" // already exited (an OOM victim can die before this looks)
		}
		return "not in " + last
	})
	return cmd
}

func (r *realCgroups) cleanup() {
	for _, p := range r.procs {
		if p.ProcessState == nil {
			_ = p.Process.Kill()
			_ = p.Wait()
		}
	}
	for i := len(r.created) - 1; i >= 0; i-- {
		for _, root := range r.roots {
			d := root + r.created[i]
			var err error
			for range 100 { // a killed task can take a moment to leave
				if err = unix.Rmdir(d); err != unix.EBUSY {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && err != unix.ENOENT {
				r.t.Errorf("removing test cgroup %s: %v", d, err)
			}
		}
	}
}

// poll calls f until it returns "" or the deadline passes, then fails with
// f's last message. The deadline is generous: the machine is shared.
func poll(t testing.TB, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	var msg string
	for time.Now().Before(deadline) {
		if msg = f(); msg == "" {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: %s", what, msg)
}

// TestRealCgroups puts processes in a Kubernetes-like pod with two
// containers and in a systemd-service-like cgroup, on this machine's real
// hierarchy, and checks what an SRE would: identity labels, CPU usage
// growing, throttling under a quota, memory within its limit, and an OOM
// kill counted for the container whose process exceeded its limit.
func TestRealCgroups(t *testing.T) {
	r := newRealCgroups(t)
	tag := randHex(8)
	uid := randHex(8) + "-" + randHex(4) + "-" + randHex(4) + "-" + randHex(4) + "-" + randHex(12)
	busyID, oomID := randHex(64), randHex(64)
	parent := "/vigil-test-" + tag
	pod := parent + "/kubepods/burstable/pod" + uid
	busy, oom := pod+"/"+busyID, pod+"/"+oomID
	unit := "vigil-test-" + tag + ".service"
	svc := parent + "/system.slice/" + unit
	if r.l.kind == LayoutV2 {
		pod = parent + "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + strings.ReplaceAll(uid, "-", "_") + ".slice"
		busy, oom = pod+"/cri-containerd-"+busyID+".scope", pod+"/cri-containerd-"+oomID+".scope"
	}
	for _, d := range []string{busy, oom, svc} {
		r.mkdir(d)
	}
	const memLimit = 64 << 20
	r.limit(busy, memLimit)
	r.limit(oom, 32<<20)
	r.limit(svc, memLimit)
	busyCmd := r.start(busy, "sh -c 'while :; do :; done'")
	r.start(svc, "sh -c 'while :; do :; done'")

	enricher := staticEnricher{
		pods:       map[string][2]string{uid: {"vigil-test", "busy-" + tag}},
		containers: map[string]string{busyID: "spin", oomID: "hog"},
	}
	c := newStarted(t, NewConfig(), "/sys", enricher, nil)

	// Identity labels of the container, the pod and the service.
	s := scrape(t, c)
	want := map[string]map[string]string{
		busy: {"namespace": "vigil-test", "pod": "busy-" + tag, "container": "spin", "container_id": busyID, "pod_uid": uid, "unit": ""},
		pod:  {"namespace": "vigil-test", "pod": "busy-" + tag, "container": "", "container_id": "", "pod_uid": uid, "unit": ""},
		svc:  {"namespace": "", "pod": "", "container": "", "container_id": "", "pod_uid": "", "unit": unit},
	}
	for cg, labels := range want {
		got, ok := find(s, "vigil_cgroup_memory_usage_bytes", cg)
		if !ok {
			t.Fatalf("cgroup %s not reported; reported: %v", cg, cgroupsOf(s, "vigil_cgroup_memory_usage_bytes"))
		}
		for k, v := range labels {
			if got.labels[k] != v {
				t.Errorf("%s: label %s = %q, want %q", cg, k, got.labels[k], v)
			}
		}
	}

	// CPU usage grows and the 10% quota throttles the busy loop.
	first, _ := find(s, "vigil_cgroup_cpu_usage_seconds_total", busy)
	poll(t, "busy container CPU and throttling", func() string {
		s := scrape(t, c)
		u, _ := find(s, "vigil_cgroup_cpu_usage_seconds_total", busy)
		th, _ := find(s, "vigil_cgroup_cpu_throttled_periods_total", busy)
		ts, _ := find(s, "vigil_cgroup_cpu_throttled_seconds_total", busy)
		p, _ := find(s, "vigil_cgroup_cpu_periods_total", busy)
		if u.value <= first.value || th.value == 0 || ts.value == 0 || p.value < th.value {
			return fmt.Sprintf("usage %v (first %v), periods %v, throttled periods %v, throttled seconds %v", u.value, first.value, p.value, th.value, ts.value)
		}
		return ""
	})
	poll(t, "service CPU", func() string {
		u, _ := find(scrape(t, c), "vigil_cgroup_cpu_usage_seconds_total", svc)
		th, _ := find(scrape(t, c), "vigil_cgroup_cpu_throttled_periods_total", svc)
		if u.value == 0 || th.value == 0 {
			return fmt.Sprintf("usage %v, throttled periods %v", u.value, th.value)
		}
		return ""
	})

	// Memory within the limit, and the limit itself.
	s = scrape(t, c)
	usage, _ := find(s, "vigil_cgroup_memory_usage_bytes", busy)
	ws, _ := find(s, "vigil_cgroup_memory_working_set_bytes", busy)
	limit, ok := find(s, "vigil_cgroup_memory_limit_bytes", busy)
	if !ok || limit.value != memLimit {
		t.Errorf("memory limit = %v (reported %v), want %d", limit.value, ok, memLimit)
	}
	if usage.value <= 0 || usage.value > memLimit || ws.value > usage.value {
		t.Errorf("memory usage %v, working set %v, limit %d", usage.value, ws.value, memLimit)
	}
	for _, name := range []string{"vigil_cgroup_memory_rss_bytes", "vigil_cgroup_memory_cache_bytes", "vigil_cgroup_cpu_user_seconds_total", "vigil_cgroup_cpu_system_seconds_total"} {
		if _, ok := find(s, name, busy); !ok {
			t.Errorf("%s missing for %s", name, busy)
		}
	}
	if o, _ := find(s, "vigil_cgroup_oom_kills_total", oom); o.value != 0 {
		t.Errorf("OOM kills before any OOM: %v", o.value)
	}

	// A process that exceeds 32 MiB is OOM-killed and counted.
	hog := r.start(oom, "tail /dev/zero")
	err := hog.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("tail /dev/zero in a 32 MiB cgroup: %v, want killed by SIGKILL", err)
	}
	poll(t, "OOM kill counted", func() string {
		o, ok := find(scrape(t, c), "vigil_cgroup_oom_kills_total", oom)
		if !ok || o.value < 1 {
			return fmt.Sprintf("oom kills %v (reported %v)", o.value, ok)
		}
		if o.labels["container_id"] != oomID || o.labels["container"] != "hog" {
			return fmt.Sprintf("labels %v", o.labels)
		}
		return ""
	})

	s = scrape(t, c)
	o, _ := find(s, "vigil_cgroup_oom_kills_total", oom)
	th, _ := find(s, "vigil_cgroup_cpu_throttled_periods_total", busy)
	u, _ := find(s, "vigil_cgroup_cpu_usage_seconds_total", busy)
	t.Logf("layout %s: busy container cpu %.3fs, throttled periods %v, memory %v of %d bytes (working set %v); OOM kills %v",
		r.l.kind, u.value, th.value, usage.value, memLimit, ws.value, o.value)

	// The PID resolver agrees with the collector about the identity.
	res := newResolver(c.set.Paths, enricher)
	id, err := res.PID(busyCmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if id.CgroupPath != busy || id.ContainerID != busyID || id.PodUID != uid || id.Container != "spin" {
		t.Errorf("PID %d resolved to %+v", busyCmd.Process.Pid, id)
	}
	if _, err := res.PID(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID of a missing process: %v", err)
	}
}

// TestRealCgroupID resolves a real cgroup2 directory's ID (its inode, what
// bpf_get_current_cgroup_id returns) to its path and identity, by file
// handle and by the fallback walk, and reads CPU usage through the v2
// reader from the real cgroup2 files. On a hybrid node that mount has no
// controllers, so only cpu.stat's usage is there, and memory is not
// reported for it.
func TestRealCgroupID(t *testing.T) {
	r := newRealCgroups(t)
	if r.l.v2 == "" {
		t.Skip("pure cgroup v1 node: there are no cgroup2 IDs to resolve")
	}
	tag := randHex(8)
	unit := "vigil-test-" + tag + ".service"
	svc := "/vigil-test-" + tag + "/system.slice/" + unit
	r.mkdir(svc)
	r.limit(svc, 64<<20)
	cmd := r.start(svc, "sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 1000'")

	var st unix.Stat_t
	if err := unix.Stat(r.l.v2+svc, &st); err != nil {
		t.Fatal(err)
	}
	res := newResolver(settingsFor("/sys").Paths, nil)
	id, err := res.CgroupID(st.Ino)
	if err != nil {
		t.Fatal(err)
	}
	if id.CgroupPath != svc || id.SystemdUnit != unit {
		t.Errorf("cgroup ID %d resolved to %+v, want %s", st.Ino, id, svc)
	}
	// Both ways of finding an ID (by handle, by walking) are tested in
	// collectors/workload (TestResolverFindsRealCgroupByHandleAndWalk).
	if _, err := res.CgroupID(1 << 62); !errors.Is(err, workload.ErrUnknownCgroupID) {
		t.Errorf("unknown ID: %v", err)
	}
	if id, err := res.PID(cmd.Process.Pid); err != nil || id.CgroupPath != svc || id.SystemdUnit != unit {
		t.Errorf("PID %d resolved to %+v, %v", cmd.Process.Pid, id, err)
	}

	if r.l.kind == LayoutHybrid {
		c := newStarted(t, NewConfig(), "/sys", nil, nil)
		c.layout = layout{kind: LayoutV2, v2: r.l.v2} // read the cgroup2 mount as if it were a pure v2 node
		poll(t, "CPU usage from the real cgroup2 cpu.stat", func() string {
			s := scrape(t, c)
			u, ok := find(s, "vigil_cgroup_cpu_usage_seconds_total", svc)
			if !ok || u.value == 0 || u.labels["unit"] != unit {
				return fmt.Sprintf("usage %v (reported %v), labels %v", u.value, ok, u.labels)
			}
			if _, ok := find(s, "vigil_cgroup_memory_usage_bytes", svc); ok {
				return "memory reported although the cgroup2 mount has no memory controller"
			}
			return ""
		})
	}

	// A removed cgroup's ID still resolves from the cache: events from its
	// last processes arrive after it is gone.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	r.cleanup()
	r.created = nil
	if id, err := res.CgroupID(st.Ino); err != nil || id.CgroupPath != svc {
		t.Errorf("removed cgroup: %+v, %v", id, err)
	}
}
