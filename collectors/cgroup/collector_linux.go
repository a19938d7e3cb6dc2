//go:build linux

package cgroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/component"
)

func init() { component.RegisterCollector("cgroup", true, NewConfig, New) }

// labelNames are the workload identity labels plus "cgroup", the path
// relative to the hierarchy root, which keeps series unique where two
// cgroups share an identity (a pod's cgroup and an unknown extra path).
var labelNames = append(append([]string{}, workload.LabelNames...), "cgroup")

func newDesc(name, help string, extra ...string) *prometheus.Desc {
	labels := labelNames
	if len(extra) > 0 {
		labels = extra
	}
	return prometheus.NewDesc("vigil_cgroup_"+name, help, labels, nil)
}

var (
	cpuUsageDesc      = newDesc("cpu_usage_seconds_total", "CPU time consumed by the cgroup and its descendants, user and system together.")
	cpuUserDesc       = newDesc("cpu_user_seconds_total", "CPU time consumed in user mode by the cgroup and its descendants.")
	cpuSystemDesc     = newDesc("cpu_system_seconds_total", "CPU time consumed in kernel mode by the cgroup and its descendants.")
	cpuPeriodsDesc    = newDesc("cpu_periods_total", "CFS bandwidth enforcement periods that elapsed while the cgroup had runnable tasks and a CPU quota.")
	cpuThrottledDesc  = newDesc("cpu_throttled_periods_total", "CFS bandwidth enforcement periods in which the cgroup was throttled because it used up its CPU quota.")
	cpuThrottledSDesc = newDesc("cpu_throttled_seconds_total", "Total time the cgroup's tasks were throttled by the CPU quota.")
	memUsageDesc      = newDesc("memory_usage_bytes", "Memory charged to the cgroup, page cache included (v2 memory.current, v1 memory.usage_in_bytes).")
	memWorkingSetDesc = newDesc("memory_working_set_bytes", "Memory usage minus inactive file pages: what the kubelet evicts on and what is hard to reclaim.")
	memRSSDesc        = newDesc("memory_rss_bytes", "Anonymous memory of the cgroup (v2 anon, v1 total_rss).")
	memCacheDesc      = newDesc("memory_cache_bytes", "Page cache charged to the cgroup (v2 file, v1 total_cache).")
	memLimitDesc      = newDesc("memory_limit_bytes", "The cgroup's hard memory limit (v2 memory.max, v1 memory.limit_in_bytes); absent when unlimited.")
	oomKillsDesc      = newDesc("oom_kills_total", "Processes the kernel OOM killer killed in the cgroup because it reached its memory limit.")
	limitHitsDesc     = newDesc("memory_limit_hits_total", "Times the cgroup's memory usage reached its limit and the kernel reclaimed the cgroup's own memory to stay below it (v2 memory.events max, v1 memory.failcnt).")
	cpuPressureDesc   = newDesc("cpu_pressure_waiting_seconds_total", "Time at least one of the cgroup's tasks waited for a CPU (PSI cpu.pressure some; quota throttling counts).")
	memPressureDesc   = newDesc("memory_pressure_waiting_seconds_total", "Time at least one of the cgroup's tasks was stalled on memory: reclaim, refaults, swap-in (PSI memory.pressure some).")
	memStalledDesc    = newDesc("memory_pressure_stalled_seconds_total", "Time all of the cgroup's non-idle tasks were stalled on memory at once (PSI memory.pressure full).")
	openFDsDesc       = newDesc("process_open_fds", "Open file descriptors of the cgroup's process nearest its open-files limit (of the processes directly in the cgroup).")
	maxFDsDesc        = newDesc("process_max_fds", "The soft open-files limit (RLIMIT_NOFILE) of the process in vigil_cgroup_process_open_fds; absent when unlimited.")

	cgroupsDesc    = newDesc("cgroups", "Cgroups reported in the last scrape, by kind (container, pod, service, extra).", "kind")
	droppedDesc    = prometheus.NewDesc("vigil_cgroup_cgroups_dropped_total", "Cgroups left out of scrapes because max_cgroups was reached (each scrape adds the number it left out).", nil, nil)
	readErrorsDesc = newDesc("read_errors_total", "Cgroup files that could not be read or parsed, by file name (a missing file is not an error).", "file")
	fdSkippedDesc  = newDesc("fd_processes_skipped_total", "Processes whose open file descriptors were not counted: reason budget (max_fd_processes reached in a scrape) or unreadable (procfs entry could not be read).", "reason")
	layoutDesc     = newDesc("hierarchy_info", "The cgroup layout detected at start: v2, hybrid (v1 controllers plus a cgroup2 mount) or v1. Always 1.", "layout")
)

// nopEnricher leaves identities as the cgroup path gives them.
type nopEnricher struct{}

func (nopEnricher) Enrich(*workload.Identity) {}

// kind is why a cgroup is reported. Lower kinds are kept first when
// max_cgroups is reached.
type kind uint8

const (
	kindContainer kind = iota
	kindPod
	kindService
	kindExtra
)

var kindNames = [...]string{"container", "pod", "service", "extra"}

// candidate is one cgroup selected by the walk.
type candidate struct {
	rel  string // path relative to the hierarchy root, starting with "/"
	kind kind
}

// Collector reports per-cgroup CPU and memory metrics. Build it with New;
// it is safe for concurrent use.
type Collector struct {
	cfg    *Config
	set    collectors.Settings
	logger *slog.Logger

	readers sync.Pool // *fileReader

	mu         sync.Mutex
	layout     layout
	started    bool
	dropped    uint64
	fdSkipped  [2]uint64 // budget, unreadable
	readErrors map[string]uint64
	warned     map[string]bool
}

// New builds the collector from a validated configuration. The layout is
// detected by Start.
func New(cfg *Config, set collectors.Settings) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if set.Logger == nil {
		set.Logger = slog.New(slog.DiscardHandler)
	}
	if set.Enricher == nil {
		set.Enricher = nopEnricher{}
	}
	c := &Collector{cfg: cfg, set: set, logger: set.Logger, readErrors: map[string]uint64{}, warned: map[string]bool{}}
	c.readers.New = func() any { return newFileReader(c.readError) }
	return c, nil
}

// Start detects the cgroup layout under Paths.SysFS. It fails when there
// is no cgroup hierarchy at all.
func (c *Collector) Start(context.Context) error {
	sysfs := c.set.Paths.SysFS
	if sysfs == "" {
		sysfs = "/sys"
	}
	l, err := detectLayout(sysfs)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.layout, c.started = l, true
	c.mu.Unlock()
	c.logger.Info("cgroup layout detected", "layout", l.kind, "walk_root", l.primary(), "cgroup2", l.v2,
		"cpu", l.cpu, "cpuacct", l.cpuacct, "memory", l.memory)
	return nil
}

// Shutdown does nothing: the collector holds no resources between scrapes.
func (c *Collector) Shutdown(context.Context) error { return nil }

// readError counts and logs a file that could not be read: a warning the
// first time for each file name, debug afterwards, so a persistent problem
// shows once in the log and always in vigil_cgroup_read_errors_total.
func (c *Collector) readError(file string, err error) {
	c.mu.Lock()
	c.readErrors[file]++
	first := !c.warned[file]
	c.warned[file] = true
	c.mu.Unlock()
	if first {
		c.logger.Warn("cannot read cgroup file (further errors for this file name are logged at debug)", "file", file, "err", err)
	} else {
		c.logger.Debug("cannot read cgroup file", "file", file, "err", err)
	}
}

// Update walks the hierarchy once, selects the cgroups to report, reads
// each one's files and sends its metrics.
func (c *Collector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	return c.update(ctx, allFields, true, ch)
}

// familyFields says which fields each per-cgroup family is computed from.
var familyFields = []struct {
	name   string
	fields uint32
}{
	{"vigil_cgroup_cpu_usage_seconds_total", hasCPUUsage},
	{"vigil_cgroup_cpu_user_seconds_total", hasCPUUser},
	{"vigil_cgroup_cpu_system_seconds_total", hasCPUSystem},
	{"vigil_cgroup_cpu_periods_total", hasPeriods},
	{"vigil_cgroup_cpu_throttled_periods_total", hasThrottled},
	{"vigil_cgroup_cpu_throttled_seconds_total", hasThrottledTime},
	{"vigil_cgroup_memory_usage_bytes", hasMemUsage},
	{"vigil_cgroup_memory_working_set_bytes", hasMemUsage | hasInactiveFile},
	{"vigil_cgroup_memory_rss_bytes", hasRSS},
	{"vigil_cgroup_memory_cache_bytes", hasCache},
	{"vigil_cgroup_memory_limit_bytes", hasMemLimit},
	{"vigil_cgroup_oom_kills_total", hasOOMKills},
	{"vigil_cgroup_memory_limit_hits_total", hasLimitHits},
	{"vigil_cgroup_cpu_pressure_waiting_seconds_total", hasCPUPressure},
	{"vigil_cgroup_memory_pressure_waiting_seconds_total", hasMemPressureSome},
	{"vigil_cgroup_memory_pressure_stalled_seconds_total", hasMemPressureFull},
}

// UpdateNames implements collectors.NamesUpdater: it sends what Update
// sends (at least every family keep accepts, with the same values) but
// reads only the cgroup files behind the families keep accepts, and the
// processes' descriptors only when keep accepts vigil_cgroup_process_*.
// Cgroups are counted as by Update: one none of whose wanted files could
// be read is read in full to tell whether it still exists. Read errors and
// fd_processes_skipped_total count only what was read.
func (c *Collector) UpdateNames(ctx context.Context, keep func(name string) bool, ch chan<- prometheus.Metric) error {
	var want uint32
	for _, f := range familyFields {
		if keep(f.name) {
			want |= f.fields
		}
	}
	fds := keep("vigil_cgroup_process_open_fds") || keep("vigil_cgroup_process_max_fds")
	return c.update(ctx, want, fds, ch)
}

func (c *Collector) update(ctx context.Context, want uint32, wantFDs bool, ch chan<- prometheus.Metric) error {
	c.mu.Lock()
	l, started := c.layout, c.started
	c.mu.Unlock()
	if !started {
		return errors.New("cgroup collector used before Start")
	}
	root := l.primary()
	cands, err := c.walk(root)
	if err != nil {
		return err
	}
	var dropped int
	if len(cands) > c.cfg.MaxCgroups {
		sort.SliceStable(cands, func(i, j int) bool { return cands[i].kind < cands[j].kind })
		dropped = len(cands) - c.cfg.MaxCgroups
		cands = cands[:c.cfg.MaxCgroups]
	}

	r := c.readers.Get().(*fileReader)
	defer c.readers.Put(r)
	procfs := c.set.Paths.ProcFS
	if procfs == "" {
		procfs = "/proc"
	}
	fdb := fdBudget{left: c.cfg.MaxFDProcesses}
	var perKind [len(kindNames)]int
	for i, cand := range cands {
		if i%64 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		s := r.readCgroup(&l, root, cand.rel, want)
		if s.has == 0 && want != allFields {
			// Nothing wanted was read: the full read tells, as in Update,
			// whether the cgroup is still there.
			s = r.readCgroup(&l, root, cand.rel, allFields)
		}
		if s.has == 0 {
			continue // removed since the walk
		}
		perKind[cand.kind]++
		id := workload.FromCgroupPath(cand.rel)
		c.set.Enricher.Enrich(&id)
		var fds fdUsage
		if wantFDs && cand.kind != kindPod && c.cfg.MaxFDProcesses > 0 {
			fds = r.readFDs(root+cand.rel, procfs, &fdb)
		}
		emit(ch, &s, fds, append(id.Labels(), cand.rel))
	}

	for k, n := range perKind {
		ch <- prometheus.MustNewConstMetric(cgroupsDesc, prometheus.GaugeValue, float64(n), kindNames[k])
	}
	c.mu.Lock()
	c.dropped += uint64(dropped)
	ch <- prometheus.MustNewConstMetric(droppedDesc, prometheus.CounterValue, float64(c.dropped))
	c.fdSkipped[0] += fdb.skipped
	c.fdSkipped[1] += fdb.unreadable
	if c.cfg.MaxFDProcesses > 0 {
		ch <- prometheus.MustNewConstMetric(fdSkippedDesc, prometheus.CounterValue, float64(c.fdSkipped[0]), "budget")
		ch <- prometheus.MustNewConstMetric(fdSkippedDesc, prometheus.CounterValue, float64(c.fdSkipped[1]), "unreadable")
	}
	for file, n := range c.readErrors {
		ch <- prometheus.MustNewConstMetric(readErrorsDesc, prometheus.CounterValue, float64(n), file)
	}
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(layoutDesc, prometheus.GaugeValue, 1, string(l.kind))
	if dropped > 0 {
		c.logger.Debug("max_cgroups reached; cgroups left out", "max_cgroups", c.cfg.MaxCgroups, "dropped", dropped)
	}
	return nil
}

// readCgroup reads the fields in want of the cgroup at rel.
func (r *fileReader) readCgroup(l *layout, root, rel string, want uint32) stats {
	if l.kind == LayoutV2 {
		return r.readV2(root+rel, want)
	}
	return r.readV1(l, rel, want)
}

// emit sends one cgroup's metrics; a field that was not read is left out.
// All of a cgroup's series share one set of label pairs, built once: with
// prometheus.MustNewConstMetric each series would build its own, which was
// nine tenths of the collector's allocations.
func emit(ch chan<- prometheus.Metric, s *stats, fds fdUsage, lv []string) {
	lp := labelPairs(lv)
	send := func(d *prometheus.Desc, t prometheus.ValueType, bit uint32, v float64) {
		if s.Has(bit) {
			ch <- &series{desc: d, typ: t, value: v, labels: lp}
		}
	}
	const counter, gauge = prometheus.CounterValue, prometheus.GaugeValue
	send(cpuUsageDesc, counter, hasCPUUsage, s.cpuUsage)
	send(cpuUserDesc, counter, hasCPUUser, s.cpuUser)
	send(cpuSystemDesc, counter, hasCPUSystem, s.cpuSystem)
	send(cpuPeriodsDesc, counter, hasPeriods, float64(s.periods))
	send(cpuThrottledDesc, counter, hasThrottled, float64(s.throttled))
	send(cpuThrottledSDesc, counter, hasThrottledTime, s.throttledTime)
	send(memUsageDesc, gauge, hasMemUsage, float64(s.memUsage))
	send(memWorkingSetDesc, gauge, hasMemUsage, float64(workingSet(s)))
	send(memRSSDesc, gauge, hasRSS, float64(s.rss))
	send(memCacheDesc, gauge, hasCache, float64(s.cache))
	send(memLimitDesc, gauge, hasMemLimit, float64(s.memLimit))
	send(oomKillsDesc, counter, hasOOMKills, float64(s.oomKills))
	send(limitHitsDesc, counter, hasLimitHits, float64(s.limitHits))
	send(cpuPressureDesc, counter, hasCPUPressure, s.cpuSome)
	send(memPressureDesc, counter, hasMemPressureSome, s.memSome)
	send(memStalledDesc, counter, hasMemPressureFull, s.memFull)
	if fds.ok {
		open, limit := float64(fds.open), float64(fds.limit)
		ch <- &series{desc: openFDsDesc, typ: gauge, value: open, labels: lp}
		ch <- &series{desc: maxFDsDesc, typ: gauge, value: limit, labels: lp}
	}
}

// sortedLabelIdx orders labelNames by name, as the exposition format and
// the registry's consistency check expect label pairs.
var sortedLabelIdx = func() []int {
	idx := make([]int, len(labelNames))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return labelNames[idx[a]] < labelNames[idx[b]] })
	return idx
}()

func labelPairs(values []string) []*dto.LabelPair {
	pairs := make([]dto.LabelPair, len(values))
	out := make([]*dto.LabelPair, len(values))
	for i, j := range sortedLabelIdx {
		pairs[i] = dto.LabelPair{Name: &labelNames[j], Value: &values[j]}
		out[i] = &pairs[i]
	}
	return out
}

// series is one sample whose label pairs are shared, read-only, with the
// other series of its cgroup.
type series struct {
	desc   *prometheus.Desc
	typ    prometheus.ValueType
	value  float64
	labels []*dto.LabelPair
}

// Desc implements prometheus.Metric.
func (m *series) Desc() *prometheus.Desc { return m.desc }

// Write implements prometheus.Metric.
func (m *series) Write(out *dto.Metric) error {
	out.Label = m.labels
	if m.typ == prometheus.CounterValue {
		out.Counter = &dto.Counter{Value: &m.value}
	} else {
		out.Gauge = &dto.Gauge{Value: &m.value}
	}
	return nil
}

// workingSet is usage minus inactive file pages, never below zero, as the
// kubelet and cAdvisor compute it.
func workingSet(s *stats) uint64 {
	if !s.Has(hasInactiveFile) || s.inactiveFile > s.memUsage {
		if s.Has(hasInactiveFile) {
			return 0
		}
		return s.memUsage
	}
	return s.memUsage - s.inactiveFile
}

// walk lists the cgroups to report below root, in a stable order.
func (c *Collector) walk(root string) ([]candidate, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("reading cgroup hierarchy root: %w", err)
	}
	out := make([]candidate, 0, 64)
	c.walkEntries(root, "", entries, 1, false, &out)
	return out, nil
}

func (c *Collector) walkEntries(dir, rel string, entries []os.DirEntry, depth int, inSystemSlice bool, out *[]candidate) {
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		base := e.Name()
		childRel := rel + "/" + base
		k, report, descend := c.classify(childRel, base, inSystemSlice)
		if report {
			*out = append(*out, candidate{rel: childRel, kind: k})
		}
		if !descend || depth >= workload.MaxCgroupDepth {
			continue
		}
		childDir := dir + "/" + base
		sub, err := os.ReadDir(childDir)
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				c.readError("(directory)", err)
			}
			continue
		}
		c.walkEntries(childDir, childRel, sub, depth+1, inSystemSlice || base == "system.slice", out)
	}
}

// classify decides whether the cgroup at rel is reported, as what, and
// whether the walk goes below it. Below a container or a service nothing is
// reported: their own counters already include their descendants.
func (c *Collector) classify(rel, base string, inSystemSlice bool) (k kind, report, descend bool) {
	if strings.HasPrefix(base, "crio-conmon-") {
		// CRI-O's monitor process, named after the container it watches:
		// not the workload, and it would share the container's identity.
		return 0, false, false
	}
	if mightBeWorkload(rel, base) {
		id := workload.FromCgroupPath(rel)
		switch {
		case id.ContainerID != "" && strings.Contains(base, id.ContainerID):
			return kindContainer, c.cfg.Containers, false
		case id.PodUID != "" && id.ContainerID == "" && isPodBase(base):
			return kindPod, c.cfg.Pods, true
		}
	}
	if inSystemSlice && strings.HasSuffix(base, ".service") {
		return kindService, c.cfg.Services, false
	}
	for _, g := range c.cfg.ExtraPaths {
		if ok, _ := path.Match(g, rel); ok {
			return kindExtra, true, true
		}
	}
	return 0, false, true
}

// mightBeWorkload is a cheap filter before the full identity parse: only
// Kubernetes paths, container scopes and 64-character names can name a
// container or pod.
func mightBeWorkload(rel, base string) bool {
	return len(base) >= 64 || strings.Contains(rel, "kubepods")
}

// isPodBase reports whether a path element is a pod's own cgroup:
// pod<uid> (cgroupfs driver) or kubepods[-<qos>]-pod<uid>.slice (systemd).
func isPodBase(base string) bool {
	return strings.HasPrefix(base, "pod") ||
		(strings.HasPrefix(base, "kubepods-") && strings.Contains(base, "pod") && strings.HasSuffix(base, ".slice"))
}
