//go:build linux

package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"regexp"
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/procfs"
	"github.com/shirou/gopsutil/v4/common"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/component"
)

// Name is the collector's name: its configuration key and its
// vigil_collector_success label.
const Name = "host"

func init() { component.RegisterCollector(Name, true, NewConfig, New) }

var (
	areaSuccessDesc = prometheus.NewDesc("vigil_host_area_success",
		"Whether the host collector read this area (cpu, meminfo, filesystem, …) in the last scrape (1) or failed (0).",
		[]string{"area"}, nil)
	areaErrorsDesc = prometheus.NewDesc("vigil_host_area_errors_total",
		"Scrapes in which the host collector failed to read this area.",
		[]string{"area"}, nil)
	mountFailuresDesc = prometheus.NewDesc("vigil_host_mount_stat_failures_total",
		"statfs calls on a mount point that failed (reason=error) or did not answer within filesystem.mount_timeout (reason=timeout).",
		[]string{"reason"}, nil)
)

// area is one independently read part of the host: a failure in one is
// logged and counted, and the others are still reported.
type area struct {
	name   string
	update func(ctx context.Context, ch chan<- prometheus.Metric) error
}

// Collector reads the host's metrics. It is safe for concurrent Update
// calls.
type Collector struct {
	logger *slog.Logger
	paths  collectors.Paths
	cfg    Config
	env    common.EnvMap
	proc   procfs.FS
	areas  []area

	mountPointsExclude *regexp.Regexp
	fsTypesExclude     *regexp.Regexp
	diskExclude        *regexp.Regexp
	netExclude         *regexp.Regexp
	vmstatFields       *regexp.Regexp

	// statfs reads one mount point's usage; tests replace it to simulate
	// a hung or failing mount.
	statfs statfsFunc

	mu            sync.Mutex
	failing       map[string]bool   // area -> failed in its last scrape
	areaErrors    map[string]uint64 // area -> failed scrapes
	mountFailures map[string]uint64 // reason -> count
	stuck         map[string]struct{}
	vmstatDescs   map[string]*prometheus.Desc
}

// New builds a host collector from a validated configuration.
func New(cfg *Config, set collectors.Settings) (*Collector, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	logger := set.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	paths := set.Paths
	if paths.ProcFS == "" {
		paths.ProcFS = "/proc"
	}
	if paths.SysFS == "" {
		paths.SysFS = "/sys"
	}
	if paths.RootFS == "" {
		paths.RootFS = "/"
	}
	proc, err := procfs.NewFS(paths.ProcFS)
	if err != nil {
		return nil, fmt.Errorf("host: procfs %s: %w", paths.ProcFS, err)
	}
	c := &Collector{
		logger: logger,
		paths:  paths,
		cfg:    *cfg,
		// gopsutil reads HOST_PROC and friends from this map when it is in
		// the context, so the process environment is never touched.
		env: common.EnvMap{
			common.HostProcEnvKey: paths.ProcFS,
			common.HostSysEnvKey:  paths.SysFS,
			common.HostRootEnvKey: paths.RootFS,
			common.HostDevEnvKey:  filepath.Join(paths.RootFS, "dev"),
			common.HostRunEnvKey:  filepath.Join(paths.RootFS, "run"),
			common.HostEtcEnvKey:  filepath.Join(paths.RootFS, "etc"),
			common.HostVarEnvKey:  filepath.Join(paths.RootFS, "var"),
		},
		proc:               proc,
		mountPointsExclude: compileOptional(cfg.Filesystem.MountPointsExclude),
		fsTypesExclude:     compileOptional(cfg.Filesystem.FSTypesExclude),
		diskExclude:        compileOptional(cfg.Disk.DeviceExclude),
		netExclude:         compileOptional(cfg.Network.DeviceExclude),
		vmstatFields:       regexp.MustCompile(cfg.VMStat.Fields),
		statfs:             gopsutilStatfs,
		failing:            map[string]bool{},
		areaErrors:         map[string]uint64{},
		mountFailures:      map[string]uint64{},
		stuck:              map[string]struct{}{},
		vmstatDescs:        map[string]*prometheus.Desc{},
	}
	// The area names are node_exporter's collector names.
	c.areas = []area{
		{"cpu", c.updateCPU},
		{"meminfo", c.updateMeminfo},
		{"loadavg", c.updateLoadavg},
		{"stat", c.updateStat},
		{"vmstat", c.updateVMStat},
		{"filesystem", c.updateFilesystem},
		{"diskstats", c.updateDiskstats},
		{"netdev", c.updateNetdev},
		{"uname", c.updateUname},
		{"time", c.updateTime},
		{"timex", c.updateTimex},
		{"filefd", c.updateFilefd},
		{"conntrack", c.updateConntrack},
	}
	return c, nil
}

// errNoData marks an area that has nothing to report on this host (for
// example conntrack without the nf_conntrack module); it is not a failure.
var errNoData = errors.New("no data")

// Update implements collectors.Collector. Each area is read on its own: a
// failing area is logged, counted in vigil_host_area_errors_total and shown
// as vigil_host_area_success 0, and the scrape goes on. Update returns an
// error only when the context ends or every area failed.
func (c *Collector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	gctx := context.WithValue(ctx, common.EnvKey, c.env)
	failed := 0
	for _, a := range c.areas {
		if err := ctx.Err(); err != nil {
			return err
		}
		err := a.update(gctx, ch)
		if errors.Is(err, errNoData) {
			err = nil
		}
		c.recordArea(a.name, err)
		ok := 1.0
		if err != nil {
			ok = 0
			failed++
		}
		ch <- prometheus.MustNewConstMetric(areaSuccessDesc, prometheus.GaugeValue, ok, a.name)
	}
	c.mu.Lock()
	for _, name := range sortedKeys(c.areaErrors) {
		ch <- prometheus.MustNewConstMetric(areaErrorsDesc, prometheus.CounterValue, float64(c.areaErrors[name]), name)
	}
	for _, reason := range []string{"error", "timeout"} {
		ch <- prometheus.MustNewConstMetric(mountFailuresDesc, prometheus.CounterValue, float64(c.mountFailures[reason]), reason)
	}
	c.mu.Unlock()
	if failed == len(c.areas) {
		return errors.New("every host area failed")
	}
	return nil
}

// recordArea counts a failure and logs when an area starts or stops
// failing, so that a persistent failure does not flood the log.
func (c *Collector) recordArea(name string, err error) {
	c.mu.Lock()
	was := c.failing[name]
	c.failing[name] = err != nil
	if _, ok := c.areaErrors[name]; !ok {
		c.areaErrors[name] = 0
	}
	if err != nil {
		c.areaErrors[name]++
	}
	c.mu.Unlock()
	switch {
	case err != nil && !was:
		c.logger.Warn("host area failed; its metrics are skipped until it recovers", "area", name, "err", err)
	case err != nil:
		c.logger.Debug("host area still failing", "area", name, "err", err)
	case was:
		c.logger.Info("host area recovered", "area", name)
	}
}

func (c *Collector) procPath(elem ...string) string {
	return filepath.Join(append([]string{c.paths.ProcFS}, elem...)...)
}

func matches(re *regexp.Regexp, s string) bool {
	return re != nil && re.MatchString(s)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
