//go:build linux

package host

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/disk"
)

// filesystemLabels are node_exporter's labels for node_filesystem_*.
// device_error is empty unless statfs failed; Prometheus drops empty labels
// at ingestion, so series match node_exporter versions before 1.7 (which
// did not have the label) too.
var filesystemLabels = []string{"device", "mountpoint", "fstype", "device_error"}

var (
	fsSizeDesc = prometheus.NewDesc("node_filesystem_size_bytes",
		"Filesystem size in bytes.", filesystemLabels, nil)
	fsFreeDesc = prometheus.NewDesc("node_filesystem_free_bytes",
		"Filesystem free space in bytes.", filesystemLabels, nil)
	fsAvailDesc = prometheus.NewDesc("node_filesystem_avail_bytes",
		"Filesystem space available to non-root users in bytes.", filesystemLabels, nil)
	fsFilesDesc = prometheus.NewDesc("node_filesystem_files",
		"Filesystem total file nodes.", filesystemLabels, nil)
	fsFilesFreeDesc = prometheus.NewDesc("node_filesystem_files_free",
		"Filesystem total free file nodes.", filesystemLabels, nil)
	fsReadonlyDesc = prometheus.NewDesc("node_filesystem_readonly",
		"Filesystem read-only status.", filesystemLabels, nil)
	fsDeviceErrorDesc = prometheus.NewDesc("node_filesystem_device_error",
		"Whether an error occurred while getting statistics for the given device.", filesystemLabels, nil)
	fsMountInfoDesc = prometheus.NewDesc("node_filesystem_mount_info",
		"Filesystem mount information.", []string{"device", "major", "minor", "mountpoint"}, nil)
)

// statfsFunc returns a mount point's usage (one statfs(2) call).
type statfsFunc func(path string) (*disk.UsageStat, error)

func gopsutilStatfs(path string) (*disk.UsageStat, error) {
	return disk.UsageWithContext(context.Background(), path)
}

// mount is one line of the mount table, as node_exporter labels it.
type mount struct {
	device, mountPoint, fsType string
	major, minor               string
	readonly                   bool
}

// fsResult is what one statfs gave.
type fsResult struct {
	usage *disk.UsageStat
	err   error
}

const errMountTimeout = "mountpoint timeout"

// updateFilesystem reports every mount not excluded by
// filesystem.mount_points_exclude or filesystem.fs_types_exclude. The mount
// table is /proc/1/mountinfo (the host's, when procfs is the host's /proc;
// /proc/self/mountinfo when pid 1 is hidden), read with prometheus/procfs:
// gopsutil's partition list rewrites mount sources (/dev/mapper/* to
// /dev/dm-*, /dev/root to the real device, bind mounts to their first
// source), which would change node_exporter's device label. Sizes come from
// gopsutil's statfs, at most filesystem.stat_workers at once, each bounded
// by filesystem.mount_timeout.
func (c *Collector) updateFilesystem(ctx context.Context, ch chan<- prometheus.Metric) error {
	mounts, err := c.mounts()
	if err != nil {
		return err
	}
	results := make([]fsResult, len(mounts))
	sem := make(chan struct{}, c.cfg.Filesystem.StatWorkers)
	var wg sync.WaitGroup
	for i, m := range mounts {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = c.statMount(ctx, m)
		}()
	}
	wg.Wait()
	for i, m := range mounts {
		r := results[i]
		ro := 0.0
		if m.readonly {
			ro = 1
		}
		if r.err != nil {
			e := r.err.Error()
			ch <- prometheus.MustNewConstMetric(fsDeviceErrorDesc, prometheus.GaugeValue, 1, m.device, m.mountPoint, m.fsType, e)
			ch <- prometheus.MustNewConstMetric(fsReadonlyDesc, prometheus.GaugeValue, ro, m.device, m.mountPoint, m.fsType, e)
			continue
		}
		u := r.usage
		lv := []string{m.device, m.mountPoint, m.fsType, ""}
		ch <- prometheus.MustNewConstMetric(fsDeviceErrorDesc, prometheus.GaugeValue, 0, lv...)
		ch <- prometheus.MustNewConstMetric(fsReadonlyDesc, prometheus.GaugeValue, ro, lv...)
		ch <- prometheus.MustNewConstMetric(fsSizeDesc, prometheus.GaugeValue, float64(u.Total), lv...)
		// gopsutil's Free is f_bavail (space for unprivileged users) and
		// Used is (f_blocks - f_bfree); f_bfree is Total - Used.
		ch <- prometheus.MustNewConstMetric(fsFreeDesc, prometheus.GaugeValue, float64(u.Total-u.Used), lv...)
		ch <- prometheus.MustNewConstMetric(fsAvailDesc, prometheus.GaugeValue, float64(u.Free), lv...)
		ch <- prometheus.MustNewConstMetric(fsFilesDesc, prometheus.GaugeValue, float64(u.InodesTotal), lv...)
		ch <- prometheus.MustNewConstMetric(fsFilesFreeDesc, prometheus.GaugeValue, float64(u.InodesFree), lv...)
		ch <- prometheus.MustNewConstMetric(fsMountInfoDesc, prometheus.GaugeValue, 1, m.device, m.major, m.minor, m.mountPoint)
	}
	return nil
}

// mounts lists the mounts to report, once per (device, mount point, type).
func (c *Collector) mounts() ([]mount, error) {
	infos, err := c.proc.GetProcMounts(1)
	if errors.Is(err, fs.ErrNotExist) {
		infos, err = c.proc.GetMounts()
	}
	if err != nil {
		return nil, err
	}
	type key struct{ device, mountPoint, fsType string }
	seen := map[key]bool{}
	var out []mount
	for _, mi := range infos {
		// The kernel escapes blanks in mount points as in fstab(5).
		mp := strings.NewReplacer(`\040`, " ", `\011`, "\t").Replace(mi.MountPoint)
		m := mount{
			device:     strings.ToValidUTF8(mi.Source, "\uFFFD"),
			mountPoint: strings.ToValidUTF8(c.stripRootFS(mp), "\uFFFD"),
			fsType:     strings.ToValidUTF8(mi.FSType, "\uFFFD"),
			readonly:   hasOption(mi.Options, "ro") || hasOption(mi.SuperOptions, "ro") || hasOption(mi.SuperOptions, "emergency_ro"),
		}
		m.major, m.minor, _ = strings.Cut(mi.MajorMinorVer, ":")
		if matches(c.mountPointsExclude, m.mountPoint) || matches(c.fsTypesExclude, m.fsType) {
			continue
		}
		k := key{m.device, m.mountPoint, m.fsType}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, m)
	}
	return out, nil
}

func hasOption(opts map[string]string, name string) bool {
	_, ok := opts[name]
	return ok
}

// stripRootFS turns a mount point seen from the agent (under rootfs, when
// the host's root is mounted into the agent's container) into the host's
// path, as node_exporter's --path.rootfs does.
func (c *Collector) stripRootFS(p string) string {
	if c.paths.RootFS == "/" {
		return p
	}
	s := strings.TrimPrefix(p, c.paths.RootFS)
	if s == "" {
		return "/"
	}
	return s
}

// statMount runs statfs on one mount under filesystem.mount_timeout. A
// mount that overruns is remembered as stuck and not asked again until its
// pending call returns, so a hung NFS server costs one blocked goroutine,
// not one per scrape.
func (c *Collector) statMount(ctx context.Context, m mount) fsResult {
	path := filepath.Join(c.paths.RootFS, m.mountPoint)
	c.mu.Lock()
	if _, stuck := c.stuck[path]; stuck {
		c.mu.Unlock()
		c.logger.Debug("mount point still unresponsive; skipped", "mountpoint", m.mountPoint)
		return fsResult{err: errors.New(errMountTimeout)}
	}
	c.mu.Unlock()

	done := make(chan fsResult, 1)
	go func() {
		u, err := c.statfs(path)
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, stuck := c.stuck[path]; stuck {
			delete(c.stuck, path)
			c.logger.Info("mount point answers again; monitoring resumes", "mountpoint", m.mountPoint)
		}
		// Sent under the lock, so the timeout branch below either sees
		// this result or marks the mount stuck before it is unmarked.
		done <- fsResult{usage: u, err: err}
	}()

	timer := time.NewTimer(c.cfg.Filesystem.MountTimeout)
	defer timer.Stop()
	var r fsResult
	select {
	case r = <-done:
	case <-timer.C:
		c.mu.Lock()
		select {
		case r = <-done:
		default:
			c.stuck[path] = struct{}{}
			c.mountFailures["timeout"]++
			r = fsResult{err: errors.New(errMountTimeout)}
			c.logger.Warn("mount point did not answer statfs in time; skipped until it does",
				"mountpoint", m.mountPoint, "device", m.device, "timeout", c.cfg.Filesystem.MountTimeout)
		}
		c.mu.Unlock()
		return r
	case <-ctx.Done():
		return fsResult{err: ctx.Err()}
	}
	if r.err != nil {
		c.mu.Lock()
		c.mountFailures["error"]++
		c.mu.Unlock()
		c.logger.Debug("statfs failed", "mountpoint", m.mountPoint, "path", path, "err", r.err)
	}
	return r
}
