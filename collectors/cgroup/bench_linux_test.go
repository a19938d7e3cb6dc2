package cgroup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// writeV2Tree fabricates a busy Kubernetes node's pure v2 hierarchy under
// root/fs/cgroup: pods burstable and guaranteed, each with containers and a
// pause container, plus system services and user sessions that are walked
// but not reported. File contents are copied from the v2 fixture.
func writeV2Tree(tb testing.TB, root string, pods, containersPerPod, services int) (reported int) {
	tb.Helper()
	files := map[string][]byte{}
	for _, f := range []string{"cpu.stat", "memory.current", "memory.max", "memory.stat", "memory.events"} {
		b, err := os.ReadFile(filepath.Join(v2Fixture, "fs/cgroup", fxApp, f))
		if err != nil {
			tb.Fatal(err)
		}
		files[f] = b
	}
	cg := filepath.Join(root, "fs", "cgroup")
	mk := func(rel string) {
		d := cg + rel
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
		for f, b := range files {
			if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
				tb.Fatal(err)
			}
		}
	}
	mk("")
	if err := os.WriteFile(filepath.Join(cg, "cgroup.controllers"), []byte("cpu memory\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	for p := range pods {
		uid := fmt.Sprintf("%08x_0000_0000_0000_%012x", p, p)
		pod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uid + ".slice"
		if p%3 == 0 {
			pod = "/kubepods.slice/kubepods-pod" + uid + ".slice"
		}
		mk(pod)
		reported++
		for c := range containersPerPod + 1 { // + pause
			mk(pod + "/cri-containerd-" + fmt.Sprintf("%064x", p*100+c) + ".scope")
			reported++
		}
	}
	for s := range services {
		mk(fmt.Sprintf("/system.slice/svc-%03d.service", s))
		reported++
	}
	for u := range 5 {
		mk(fmt.Sprintf("/user.slice/user-%d.slice/session-%d.scope", 1000+u, u))
	}
	return reported
}

func benchUpdate(b *testing.B, c *Collector) {
	benchUpdateWith(b, func(ch chan<- prometheus.Metric) error { return c.Update(context.Background(), ch) })
}

func benchUpdateWith(b *testing.B, update func(chan<- prometheus.Metric) error) {
	ch := make(chan prometheus.Metric, 1024)
	done := make(chan int)
	go func() {
		n := 0
		for range ch {
			n++
		}
		done <- n
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := update(ch); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	close(ch)
	b.ReportMetric(float64(<-done)/float64(b.N), "series/op")
}

// BenchmarkUpdate is one full scrape of a node with 110 pods (3 containers
// and a pause container each) and 60 services: 660 cgroups reported. The
// tree is regular files, so this measures Vigil's own cost (walk, parse,
// series); BenchmarkUpdateRealV1 adds the kernel's.
func BenchmarkUpdate(b *testing.B) {
	root := b.TempDir()
	n := writeV2Tree(b, root, 110, 3, 60)
	c := newStarted(b, NewConfig(), root, nil, nil)
	b.ReportMetric(float64(n), "cgroups")
	benchUpdate(b, c)
}

// BenchmarkWalk is the walk alone on the same tree: the part a cached walk
// would save.
func BenchmarkWalk(b *testing.B) {
	root := b.TempDir()
	writeV2Tree(b, root, 110, 3, 60)
	c := newStarted(b, NewConfig(), root, nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.walk(c.layout.primary()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateRealV1 scrapes this machine's real v1/hybrid hierarchy
// after adding 50 real pods of 4 containers (needs root). It includes the
// kernel's cost of producing the files, which the fabricated tree lacks.
func BenchmarkUpdateRealV1(b *testing.B) {
	r := newRealCgroups(b)
	if r.l.kind == LayoutV2 {
		b.Skip("needs a v1 or hybrid cgroup layout")
	}
	parent := "/vigil-bench-" + randHex(8)
	for p := range 50 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-0000-0000-%012x", parent, p, p)
		for c := range 4 {
			r.mkdir(pod + "/" + fmt.Sprintf("%064x", p*100+c))
		}
	}
	c := newStarted(b, NewConfig(), "/sys", nil, nil)
	benchUpdate(b, c)
}

// BenchmarkUpdateRealProcesses scrapes 50 real containers with one
// process each (needs root), with descriptor counting off and on, side by
// side: the cost of vigil_cgroup_process_open_fds and _max_fds.
func BenchmarkUpdateRealProcesses(b *testing.B) {
	r := newRealCgroups(b)
	parent := "/vigil-bench-" + randHex(8)
	for p := range 50 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-0000-0000-%012x", parent, p, p)
		ctr := pod + "/" + fmt.Sprintf("%064x", p)
		r.mkdir(ctr)
		r.start(ctr, "sleep 1000")
	}
	for _, fds := range []int{0, DefaultMaxFDProcesses} {
		b.Run(fmt.Sprintf("max_fd_processes=%d", fds), func(b *testing.B) {
			cfg := NewConfig()
			cfg.MaxFDProcesses = fds
			benchUpdate(b, newStarted(b, cfg, "/sys", nil, nil))
		})
	}
}

// BenchmarkUpdateNamesRealV1 is BenchmarkUpdateRealV1's hierarchy
// collected in full (what /metrics does) and through UpdateNames with the
// default rules' families (what the rules ingest does), side by side.
func BenchmarkUpdateNamesRealV1(b *testing.B) {
	r := newRealCgroups(b)
	if r.l.kind == LayoutV2 {
		b.Skip("needs a v1 or hybrid cgroup layout")
	}
	parent := "/vigil-bench-" + randHex(8)
	for p := range 50 {
		pod := fmt.Sprintf("%s/kubepods/burstable/pod%08x-0000-0000-0000-%012x", parent, p, p)
		for c := range 4 {
			r.mkdir(pod + "/" + fmt.Sprintf("%064x", p*100+c))
		}
	}
	c := newStarted(b, NewConfig(), "/sys", nil, nil)
	b.Run("all", func(b *testing.B) { benchUpdate(b, c) })
	keep := keepOf(defaultRuleNames)
	b.Run("default_rules", func(b *testing.B) {
		benchUpdateWith(b, func(ch chan<- prometheus.Metric) error { return c.UpdateNames(context.Background(), keep, ch) })
	})
}
