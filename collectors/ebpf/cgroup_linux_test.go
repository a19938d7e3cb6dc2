//go:build linux

package ebpf

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// fakeKube is a fake of the Kubernetes metadata enricher (no kubelet runs
// the test's pods): it names the pods it is told about by UID.
type fakeKube map[string][2]string

func (f fakeKube) Enrich(id *workload.Identity) {
	if v, ok := f[id.PodUID]; ok {
		id.Namespace, id.Pod, id.Container = v[0], v[1], "app"
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// ownCgroup returns the test process's cgroup in the v1 memory hierarchy
// ("memory") or the unified one ("unified").
func ownCgroup(t *testing.T, hierarchy string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if hierarchy == "unified" && parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if hierarchy == "memory" && c == "memory" {
				return parts[2]
			}
		}
	}
	t.Fatalf("/proc/self/cgroup has no %s line:\n%s", hierarchy, b)
	return ""
}

// removeCgroup removes a cgroup directory, retrying while the kernel still
// counts the exited process in it (EBUSY).
func removeCgroup(t *testing.T, dir string) {
	t.Helper()
	testenv.EventuallyTrue(t, 30*time.Second, "rmdir "+dir, func() bool {
		err := os.Remove(dir)
		if err != nil && !errors.Is(err, syscall.EBUSY) && !os.IsNotExist(err) {
			t.Fatalf("rmdir %s: %v", dir, err)
		}
		return err == nil || os.IsNotExist(err)
	})
}

// TestCrashAtStartKeepsIdentity is the most common crash loop: a container
// whose process exits non-zero at once, and whose cgroup the runtime
// removes right after. The exit must still carry the pod and container.
// The collector's reader is held back (by holding its resolver's lock)
// until the cgroup is gone, as on a busy node where user space reads the
// exit after the runtime's cleanup: then only what the kernel reported
// at mkdir can name the workload, a walk of the hierarchy finds nothing.
func TestCrashAtStartKeepsIdentity(t *testing.T) {
	for _, hierarchy := range []string{"memory", "unified"} {
		t.Run(hierarchy, func(t *testing.T) { testCrashAtStart(t, hierarchy) })
	}
}

func testCrashAtStart(t *testing.T, hierarchy string) {
	uid := fmt.Sprintf("%s-%s-%s-%s-%s", randomHex(t, 4), randomHex(t, 2), randomHex(t, 2), randomHex(t, 2), randomHex(t, 6))
	cid := randomHex(t, 32)
	kube := fakeKube{uid: {"shop", "checkout-7d9f8-x2x4z"}}
	cfg := NewConfig()
	cfg.CgroupHierarchy = hierarchy
	// The reader is held back below: a ring large enough, and no TCP or
	// HTTP events (another test's connection flood), so that the events
	// of the crash are not lost meanwhile.
	cfg.Programs.TCP, cfg.Programs.TCPRetransmits, cfg.Programs.TCPResets, cfg.Programs.HTTP = false, false, false, false
	cfg.RingBufferBytes = 16 << 20
	env := startCollector(t, cfg, func(s *collectors.Settings) { s.Enricher = kube })
	root, memory, err := cgroupMount("/proc", hierarchy)
	if err != nil || memory != (hierarchy == "memory") {
		t.Fatalf("cgroup %s hierarchy: mount %q, memory %v, %v", hierarchy, root, memory, err)
	}
	kubepods := filepath.Join(root, ownCgroup(t, hierarchy), "kubepods")
	pod := filepath.Join(kubepods, "burstable", "pod"+uid)
	ctr := filepath.Join(pod, cid)
	t.Cleanup(func() {
		for _, d := range []string{ctr, pod, filepath.Dir(pod), kubepods} {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) && !errors.Is(err, syscall.ENOTEMPTY) &&
				!errors.Is(err, syscall.EBUSY) {
				t.Errorf("remove %s: %v", d, err)
			}
		}
	})

	var lock *sync.Mutex
	switch r := env.c.cgroups.(type) {
	case *cgroupResolver:
		lock = &r.mu
	case *unifiedResolver:
		lock = &r.mu
	default:
		t.Fatalf("resolver for the %s hierarchy is %T", hierarchy, env.c.cgroups)
	}
	lock.Lock()
	held := true
	defer func() {
		if held {
			lock.Unlock()
		}
	}()

	if err := os.MkdirAll(ctr, 0o755); err != nil {
		t.Fatal(err)
	}
	crash := inCgroup(ctr, "sh", "-c", "exit 7")
	if err := crash.Run(); err == nil || crash.ProcessState.ExitCode() != 7 {
		t.Fatalf("sh -c 'exit 7' in %s: %v", ctr, err)
	}
	removeCgroup(t, ctr)
	if _, err := os.Stat(ctr); !os.IsNotExist(err) {
		t.Fatalf("container cgroup %s still there: %v", ctr, err)
	}
	lock.Unlock()
	held = false

	ev := env.waitEvent(t, "exit 7 of the crashing container", func(e event.Event) bool {
		return e.Kind == event.ProcessExit && e.PID == uint32(crash.Process.Pid)
	})
	wl := ev.Workload
	if ev.ExitCode != 7 || wl.PodUID != uid || wl.ContainerID != cid || wl.Namespace != "shop" ||
		wl.Pod != "checkout-7d9f8-x2x4z" || wl.QoSClass != "burstable" {
		t.Errorf("exit event = %+v\nwant code 7, pod_uid %s, container_id %s, namespace shop, pod checkout-7d9f8-x2x4z", ev, uid, cid)
	}
	want := map[string]string{"namespace": "shop", "pod": "checkout-7d9f8-x2x4z", "container": "app",
		"pod_uid": uid, "container_id": cid, "outcome": "error"}
	testenv.EventuallyTrue(t, 30*time.Second, "vigil_process_exits_total of the crashing container", func() bool {
		return env.value(t, "vigil_process_exits_total", want) == 1
	})
}

// The cgroup events are decoded and recorded; a process event whose cgroup
// is known from them resolves without its directory (the IDs here name no
// directory), also after the rmdir; one that is not is counted unresolved.
func TestCgroupEventsResolveAndUnresolvedIsCounted(t *testing.T) {
	root := memoryHierarchy(t)
	h := newTestHandlers()
	h.cgroups = countingResolver{newCgroupResolver(root, nil), h.m.unresolved}
	const known, unknown = 1<<62 + 1, 1<<62 + 2
	uid, cid := "0b9c5f6e-8d4f-4a3b-9c1d-2e3f4a5b6c7d", strings.Repeat("ab", 32)
	mkdir := cgroupEvent{CgroupId: known, Hierarchy: 4, Kind: cgroupMkdir}
	for i, c := range []byte("/kubepods/burstable/pod" + uid + "/" + cid) {
		mkdir.Path[i] = int8(c)
		mkdir.PathLen++
	}
	exit := func(id uint64) []byte {
		return encode(t, procEvent{TsNs: 1, CgroupId: id, Pid: 42, Kind: procExit, ExitCode: 1 << 8})
	}
	h.handleEvent(encode(t, mkdir))
	h.handleEvent(exit(known))
	h.handleEvent(encode(t, cgroupEvent{CgroupId: known, Hierarchy: 4, Kind: cgroupRmdir}))
	h.handleEvent(exit(known))
	h.handleEvent(exit(unknown))
	h.handleEvent(exit(0))
	if got := testutil.ToFloat64(h.m.procExits.WithLabelValues(append(workload.Identity{ContainerID: cid, PodUID: uid}.Labels(), "error")...)); got != 2 {
		t.Errorf("exits of the known container = %v, want 2", got)
	}
	if got := testutil.ToFloat64(h.m.unresolved); got != 2 {
		t.Errorf("vigil_ebpf_unresolved_cgroups_total = %v, want 2 (unknown ID and ID 0)", got)
	}
	if got := testutil.ToFloat64(h.m.decodeErrors.WithLabelValues("events")); got != 0 {
		t.Errorf("decode errors = %v", got)
	}
	h.handleEvent(encode(t, cgroupEvent{CgroupId: known, Kind: 9}))
	if got := testutil.ToFloat64(h.m.decodeErrors.WithLabelValues("events")); got != 1 {
		t.Errorf("decode errors after a cgroup event of unknown kind = %v, want 1", got)
	}
}

// TestKnownCgroups: bounded, least recently used evicted first, a removed
// cgroup kept for the grace period and then expired.
func TestKnownCgroups(t *testing.T) {
	var forgotten []uint64
	forget := func(id uint64) { forgotten = append(forgotten, id) }
	k := newKnownCgroups(3, 10*time.Second)
	t0 := time.Unix(1000, 0)
	k.add(1, "/a", t0, forget)
	k.add(2, "/b", t0, forget)
	k.add(3, "/c", t0, forget)
	if _, ok := k.lookup(1); !ok { // 1 is now the most recently used
		t.Fatal("1 not known")
	}
	k.add(4, "/d", t0, forget) // evicts 2
	if _, ok := k.lookup(2); ok || k.len() != 3 {
		t.Errorf("2 still known or size %d, want 3", k.len())
	}
	k.remove(3, t0.Add(time.Second), forget)
	k.remove(99, t0.Add(time.Second), forget) // unknown: ignored
	if p, ok := k.lookup(3); !ok || p != "/c" {
		t.Errorf("removed cgroup 3 within grace = %q, %v; want /c", p, ok)
	}
	k.lookup(1)                                   // order: 1, 3, 4
	k.add(5, "/e", t0.Add(5*time.Second), forget) // 3 still within grace: evicts 4 (least recently used)
	if _, ok := k.lookup(3); !ok {
		t.Error("3 expired before its grace period")
	}
	k.add(6, "/f", t0.Add(12*time.Second), forget) // 3 expired, makes room
	for id, want := range map[uint64]bool{1: true, 3: false, 4: false, 5: true, 6: true} {
		if _, ok := k.lookup(id); ok != want {
			t.Errorf("known(%d) = %v, want %v", id, ok, want)
		}
	}
	if fmt.Sprint(forgotten) != "[2 4 3]" {
		t.Errorf("forgotten = %v, want [2 4 3]", forgotten)
	}
	if k.removed.Len() != 0 || len(k.rmElems) != 0 {
		t.Errorf("removal queue not emptied: %d, %d", k.removed.Len(), len(k.rmElems))
	}
}

func TestCgroupHierarchyID(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "cgroups"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t1\t2\t1\nmemory\t4\t124\t1\n")
	if id, err := cgroupHierarchyID(dir, true); err != nil || id != 4 {
		t.Errorf("memory hierarchy = %d, %v; want 4", id, err)
	}
	if id, err := cgroupHierarchyID(dir, false); err != nil || id != 0 {
		t.Errorf("unified hierarchy = %d, %v; want 0", id, err)
	}
	write("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t1\n")
	if _, err := cgroupHierarchyID(dir, true); err == nil || !strings.Contains(err.Error(), "cgroups:2: memory hierarchy") {
		t.Errorf("memory bound to the unified hierarchy: err = %v, want file:line", err)
	}
	write("cpu\t1\t2\t1\n")
	if _, err := cgroupHierarchyID(dir, true); err == nil || !strings.Contains(err.Error(), "no memory controller") {
		t.Errorf("no memory line: err = %v", err)
	}
	// On this machine: the ID the kernel shows in /proc/self/cgroup.
	if _, memory, err := cgroupMount("/proc", "memory"); err == nil && memory {
		id, err := cgroupHierarchyID("/proc", true)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile("/proc/self/cgroup")
		if !strings.Contains("\n"+string(b), fmt.Sprintf("\n%d:memory:", id)) {
			t.Errorf("memory hierarchy %d, /proc/self/cgroup:\n%s", id, b)
		}
	}
}

// The loss counters are indexed like enum vigil_prog; the map must have one
// slot per name.
func TestLossNamesMatchObject(t *testing.T) {
	spec, err := loadVigil()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps["lost"].MaxEntries; int(n) != len(lossNames) {
		t.Errorf("lost map has %d slots, lossNames %d names", n, len(lossNames))
	}
}

// A new cgroup's first request, read before its mkdir event (the two come
// on different rings), has no workload; the HTTP reader asks about the
// cgroup again 100 ms later, not a second later, so the next request,
// 150 ms on, is attributed. A cgroup that stays unknown is then asked
// about once a second.
func TestNewCgroupResolvedSoonAfterAMiss(t *testing.T) {
	root := memoryHierarchy(t)
	h := newTestHandlers()
	h.cgroups = countingResolver{newCgroupResolver(root, nil), h.m.unresolved}
	const id, never = 1<<62 + 7, 1<<62 + 8
	request := func(cg uint64, fd uint32, ts uint64) {
		r := sampleHTTP(httpRead, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
		r.Fd, r.TsNs, r.CgroupId = fd, ts, cg
		w := sampleHTTP(httpWrite, "HTTP/1.1 200 OK\r\n")
		w.Fd, w.TsNs = fd, ts+1000
		h.handleHTTP(encode(t, r))
		h.handleHTTP(encode(t, w))
	}
	const path = "/system.slice/vigil-new-cgroup.service"
	mkdir := cgroupEvent{CgroupId: id, Hierarchy: 4, Kind: cgroupMkdir}
	for i, c := range []byte(path) {
		mkdir.Path[i] = int8(c)
		mkdir.PathLen++
	}
	requests := func(wl workload.Identity) float64 {
		return testutil.ToFloat64(h.m.httpRequests.WithLabelValues(append(wl.Labels(), "/x", "server", "GET", "2xx")...))
	}

	request(id, 1, 1e9) // read before the mkdir
	h.handleEvent(encode(t, mkdir))
	request(id, 2, 1e9+150e6)
	if got := requests(workload.FromCgroupPath(path)); got != 1 {
		t.Errorf("requests attributed to %s = %v, want 1 (the one after the mkdir)", path, got)
	}
	if got := requests(workload.Identity{}); got != 1 {
		t.Errorf("unattributed requests = %v, want 1 (the one before the mkdir)", got)
	}

	// An ID that never resolves: asked at its first request, 100 ms
	// later, then not again within the second after that.
	for i, ts := range []uint64{3e9, 3e9 + 150e6, 3e9 + 300e6, 3e9 + 900e6} {
		request(never, uint32(10+i), ts)
	}
	if got := testutil.ToFloat64(h.m.unresolved); got != 3 {
		t.Errorf("vigil_ebpf_unresolved_cgroups_total = %v, want 3 (first request of %d, then of %d twice)", got, uint64(id), uint64(never))
	}
}
