package cgroup

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// v2Fixture is a fabricated pure cgroup v2 tree (testdata/v2-fixture, laid
// out as <sysfs>/fs/cgroup): the real cgroup2 mount on the development
// machines has no controllers enabled, so memory and throttling files on
// v2 can only be parsed from a fixture there. It holds a kubelet systemd
// driver layout with containerd (burstable pod with an app and a pause
// container) and CRI-O (guaranteed pod, plus its conmon scope), a Docker
// container, services and user sessions, with real file formats.
const v2Fixture = "testdata/v2-fixture"

const (
	fxPod1   = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1f2e3d4c_5b6a_7980_a1b2_c3d4e5f60718.slice"
	fxApp    = fxPod1 + "/cri-containerd-1111111111111111111111111111111111111111111111111111111111111111.scope"
	fxPause  = fxPod1 + "/cri-containerd-2222222222222222222222222222222222222222222222222222222222222222.scope"
	fxPod2   = "/kubepods.slice/kubepods-podaaaabbbb_cccc_dddd_eeee_ffff00001111.slice"
	fxCRIO   = fxPod2 + "/crio-3333333333333333333333333333333333333333333333333333333333333333.scope"
	fxDocker = "/system.slice/docker-4444444444444444444444444444444444444444444444444444444444444444.scope"
)

var fxEnricher = staticEnricher{
	pods:       map[string][2]string{"1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718": {"shop", "web-7d9f-abcde"}},
	containers: map[string]string{"1111111111111111111111111111111111111111111111111111111111111111": "app"},
}

func TestFixtureV2Selection(t *testing.T) {
	var logs bytes.Buffer
	c := newStarted(t, NewConfig(), v2Fixture, fxEnricher, &logs)
	got := cgroupsOf(scrape(t, c), "vigil_cgroup_cpu_usage_seconds_total")
	want := []string{
		fxPod2, fxCRIO, fxPod1, fxApp, fxPause,
		"/system.slice/containerd.service", fxDocker, "/system.slice/nginx.service",
		"/system.slice/system-getty.slice/getty@tty1.service",
	}
	if strings.Join(got, "\n") != strings.Join(sortedCopy(want), "\n") {
		t.Errorf("reported cgroups:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(sortedCopy(want), "\n"))
	}
}

func sortedCopy(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// The values and labels a user would check, for the containerd container
// of the burstable pod: identity from the path plus enrichment, CPU from
// cpu.stat (µs), memory from memory.current/max/stat/events.
func TestFixtureV2Values(t *testing.T) {
	var logs bytes.Buffer
	c := newStarted(t, NewConfig(), v2Fixture, fxEnricher, &logs)
	const labels = `cgroup="` + fxApp + `",container="app",container_id="1111111111111111111111111111111111111111111111111111111111111111",namespace="shop",pod="web-7d9f-abcde",pod_uid="1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718",unit=""`
	samples := scrape(t, c)
	want := map[string]float64{
		"vigil_cgroup_cpu_usage_seconds_total":     240,
		"vigil_cgroup_cpu_user_seconds_total":      190,
		"vigil_cgroup_cpu_system_seconds_total":    50,
		"vigil_cgroup_cpu_periods_total":           1000,
		"vigil_cgroup_cpu_throttled_periods_total": 100,
		"vigil_cgroup_cpu_throttled_seconds_total": 2.5,
		"vigil_cgroup_memory_usage_bytes":          260046848,
		"vigil_cgroup_memory_working_set_bytes":    260046848 - 65011712,
		"vigil_cgroup_memory_rss_bytes":            130023424,
		"vigil_cgroup_memory_cache_bytes":          130023424,
		"vigil_cgroup_memory_limit_bytes":          268435456,
		"vigil_cgroup_oom_kills_total":             1,
	}
	for name, v := range want {
		s, ok := find(samples, name, fxApp)
		if !ok {
			t.Errorf("%s missing for %s", name, fxApp)
			continue
		}
		if s.value != v {
			t.Errorf("%s = %v, want %v", name, s.value, v)
		}
		if got := labelString(s.labels); got != labels {
			t.Errorf("%s labels\n got %s\nwant %s", name, got, labels)
		}
	}
	// An unlimited memory.max ("max") reports no limit series.
	if _, ok := find(samples, "vigil_cgroup_memory_limit_bytes", "/system.slice/nginx.service"); ok {
		t.Error("nginx.service has memory.max=max but a limit series was reported")
	}
	if s, _ := find(samples, "vigil_cgroup_memory_usage_bytes", "/system.slice/nginx.service"); s.labels["unit"] != "nginx.service" || s.labels["container_id"] != "" {
		t.Errorf("service labels: %v", s.labels)
	}
	if s, _ := find(samples, "vigil_cgroup_memory_usage_bytes", fxPod1); s.labels["pod_uid"] != "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718" || s.labels["pod"] != "web-7d9f-abcde" || s.labels["container_id"] != "" {
		t.Errorf("pod-level labels: %v", s.labels)
	}
	if s, _ := find(samples, "vigil_cgroup_memory_usage_bytes", fxDocker); s.labels["container_id"] != strings.Repeat("4", 64) || s.labels["unit"] != "" {
		t.Errorf("docker labels: %v", s.labels)
	}
}

func labelString(l map[string]string) string {
	var parts []string
	for _, k := range []string{"cgroup", "container", "container_id", "namespace", "pod", "pod_uid", "unit"} {
		parts = append(parts, k+`="`+l[k]+`"`)
	}
	return strings.Join(parts, ",")
}

// A corrupt memory.stat line is counted and logged with file, line and
// field; every other value of that cgroup is still reported.
func TestFixtureV2CorruptFile(t *testing.T) {
	var logs bytes.Buffer
	c := newStarted(t, NewConfig(), v2Fixture, nil, &logs)
	const golden = `
# HELP vigil_cgroup_read_errors_total Cgroup files that could not be read or parsed, by file name (a missing file is not an error).
# TYPE vigil_cgroup_read_errors_total counter
vigil_cgroup_read_errors_total{file="memory.stat"} 1
`
	if err := testutil.CollectAndCompare(adapter{t, c}, strings.NewReader(golden), "vigil_cgroup_read_errors_total"); err != nil {
		t.Error(err)
	}
	wantLog := fxCRIO + `/memory.stat:1: field \"anon\": want an unsigned number, got \"5O331648\"`
	if !strings.Contains(logs.String(), wantLog) {
		t.Errorf("log does not name file, line and field:\n%s\nwant %s", logs.String(), wantLog)
	}
	samples := scrape(t, c)
	if _, ok := find(samples, "vigil_cgroup_memory_rss_bytes", fxCRIO); ok {
		t.Error("corrupt anon still reported as rss")
	}
	for _, name := range []string{"vigil_cgroup_memory_cache_bytes", "vigil_cgroup_memory_usage_bytes", "vigil_cgroup_cpu_usage_seconds_total"} {
		if _, ok := find(samples, name, fxCRIO); !ok {
			t.Errorf("%s lost because of the corrupt anon line", name)
		}
	}
}

// max_cgroups keeps containers and pods before services and counts the rest.
func TestFixtureV2MaxCgroups(t *testing.T) {
	cfg := NewConfig()
	cfg.MaxCgroups = 6
	c := newStarted(t, cfg, v2Fixture, nil, nil)
	const golden = `
# HELP vigil_cgroup_cgroups Cgroups reported in the last scrape, by kind (container, pod, service, extra).
# TYPE vigil_cgroup_cgroups gauge
vigil_cgroup_cgroups{kind="container"} 4
vigil_cgroup_cgroups{kind="extra"} 0
vigil_cgroup_cgroups{kind="pod"} 2
vigil_cgroup_cgroups{kind="service"} 0
# HELP vigil_cgroup_cgroups_dropped_total Cgroups left out of scrapes because max_cgroups was reached (each scrape adds the number it left out).
# TYPE vigil_cgroup_cgroups_dropped_total counter
vigil_cgroup_cgroups_dropped_total 3
`
	if err := testutil.CollectAndCompare(adapter{t, c}, strings.NewReader(golden), "vigil_cgroup_cgroups", "vigil_cgroup_cgroups_dropped_total"); err != nil {
		t.Error(err)
	}
	// The counter accumulates over scrapes (CollectAndCompare scraped once).
	if s, _ := find(scrape(t, c), "vigil_cgroup_cgroups_dropped_total", ""); s.value != 6 {
		t.Errorf("dropped after two scrapes = %v, want 6", s.value)
	}
}

// Kinds can be switched off, and extra path globs add cgroups of any shape.
func TestFixtureV2KindsAndExtraPaths(t *testing.T) {
	cfg := &Config{MaxCgroups: 100, ExtraPaths: []string{"/user.slice/*/*.scope", "/init.scope"}}
	c := newStarted(t, cfg, v2Fixture, nil, nil)
	got := cgroupsOf(scrape(t, c), "vigil_cgroup_memory_usage_bytes")
	want := []string{"/init.scope", "/user.slice/user-1000.slice/session-1.scope"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestDetectLayout(t *testing.T) {
	mk := func(t *testing.T, files ...string) string {
		root := t.TempDir()
		for _, f := range files {
			p := filepath.Join(root, "fs", "cgroup", f)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return root
	}
	t.Run("v2", func(t *testing.T) {
		l, err := detectLayout(v2Fixture)
		if err != nil || l.kind != LayoutV2 || l.primary() != filepath.Join(v2Fixture, "fs/cgroup") {
			t.Errorf("got %+v, %v", l, err)
		}
	})
	t.Run("v1 co-mounted cpu,cpuacct", func(t *testing.T) {
		root := mk(t, "cpu,cpuacct/cpu.cfs_quota_us", "cpu,cpuacct/cpuacct.usage", "memory/memory.usage_in_bytes")
		cg := filepath.Join(root, "fs", "cgroup")
		l, err := detectLayout(root)
		if err != nil || l.kind != LayoutV1 || l.cpu != cg+"/cpu,cpuacct" || l.cpuacct != l.cpu || l.memory != cg+"/memory" || l.v2 != "" {
			t.Errorf("got %+v, %v", l, err)
		}
	})
	t.Run("hybrid", func(t *testing.T) {
		root := mk(t, "cpu/cpu.cfs_quota_us", "cpuacct/cpuacct.usage", "memory/memory.usage_in_bytes", "unified/cgroup.controllers")
		l, err := detectLayout(root)
		if err != nil || l.kind != LayoutHybrid || l.v2 != filepath.Join(root, "fs/cgroup/unified") || l.primary() != filepath.Join(root, "fs/cgroup/memory") {
			t.Errorf("got %+v, %v", l, err)
		}
	})
	t.Run("none", func(t *testing.T) {
		_, err := detectLayout(mk(t, "unrelated"))
		if err == nil || !strings.Contains(err.Error(), "no cgroup hierarchy found under") {
			t.Errorf("got %v", err)
		}
	})
}

// On a node without cgroups Start fails, so the agent reports the collector
// down instead of serving empty metrics.
func TestStartWithoutCgroups(t *testing.T) {
	c, err := New(NewConfig(), settingsFor(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(t.Context()); err == nil {
		t.Fatal("Start succeeded without any cgroup hierarchy")
	}
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// The agent may scrape for /metrics and for the local TSDB at once.
func TestFixtureV2ConcurrentUpdates(t *testing.T) {
	c := newStarted(t, NewConfig(), v2Fixture, fxEnricher, nil)
	errs := make(chan error)
	for range 4 {
		go func() {
			ch := make(chan prometheus.Metric, 256)
			go func() {
				errs <- c.Update(context.Background(), ch)
				close(ch)
			}()
			n := 0
			for m := range ch {
				if m.Desc() == cpuUsageDesc {
					n++
				}
			}
			if n != 9 {
				errs <- fmt.Errorf("concurrent scrape saw %d cgroups, want 9", n)
				return
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
