//go:build linux

package host

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shirou/gopsutil/v4/disk"

	"github.com/vigil-agent/vigil/collectors"
)

// TestHungMountDoesNotBreakTheScrape simulates an NFS server that stopped
// answering: statfs on /mnt/nfs blocks (a fault injected through the
// collector's statfs seam, since a really hung mount cannot be made here).
// The scrape must finish, report that mount with device_error="mountpoint
// timeout", report the other mounts normally, not call statfs on the hung
// mount again while the first call is pending, and recover once it returns.
func TestHungMountDoesNotBreakTheScrape(t *testing.T) {
	release := make(chan struct{})
	fs := &fakeStatfs{
		usage: map[string]*disk.UsageStat{
			"/rootfs":         {Total: 4096, Free: 1024, Used: 2048},
			"/rootfs/mnt/nfs": {Total: 8192, Free: 8192},
		},
		blocks: map[string]chan struct{}{"/rootfs/mnt/nfs": release},
	}
	cfg := NewConfig()
	cfg.Filesystem.MountTimeout = 50 * time.Millisecond
	cfg.Filesystem.FSTypesExclude = "^(proc|tmpfs|vfat|xfs)$"
	c := newFakeProcCollector(t, cfg, fs)
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	const hung = `
# HELP node_filesystem_device_error Whether an error occurred while getting statistics for the given device.
# TYPE node_filesystem_device_error gauge
node_filesystem_device_error{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 0
node_filesystem_device_error{device="srv:/export",device_error="mountpoint timeout",fstype="nfs4",mountpoint="/mnt/nfs"} 1
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 4096
# HELP vigil_host_mount_stat_failures_total statfs calls on a mount point that failed (reason=error) or did not answer within filesystem.mount_timeout (reason=timeout).
# TYPE vigil_host_mount_stat_failures_total counter
vigil_host_mount_stat_failures_total{reason="error"} 0
vigil_host_mount_stat_failures_total{reason="timeout"} 1
`
	names := []string{"node_filesystem_device_error", "node_filesystem_size_bytes", "vigil_host_mount_stat_failures_total"}
	for scrape := 1; scrape <= 2; scrape++ {
		if err := testutil.CollectAndCompare(asPrometheus{c}, strings.NewReader(hung), names...); err != nil {
			t.Fatalf("scrape %d: %v", scrape, err)
		}
	}
	if n := fs.callCount("/rootfs/mnt/nfs"); n != 1 {
		t.Fatalf("statfs called %d times on the hung mount, want 1 (skipped while stuck)", n)
	}

	close(release)
	const recovered = `
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 4096
node_filesystem_size_bytes{device="srv:/export",device_error="",fstype="nfs4",mountpoint="/mnt/nfs"} 8192
`
	// The pending call returns in the background; poll until the mount is
	// unmarked and answers again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := testutil.CollectAndCompare(asPrometheus{c}, strings.NewReader(recovered), "node_filesystem_size_bytes")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mount never recovered: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFailingAreaIsSkippedAndCounted removes /proc/meminfo from a copy of
// the fake procfs: the scrape still reports every other area, marks meminfo
// failed and counts the failure; when the file comes back it recovers.
func TestFailingAreaIsSkippedAndCounted(t *testing.T) {
	proc := t.TempDir()
	if err := os.CopyFS(proc, os.DirFS("testdata/fakeproc")); err != nil {
		t.Fatal(err)
	}
	meminfo := filepath.Join(proc, "meminfo")
	saved, err := os.ReadFile(meminfo)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(meminfo); err != nil {
		t.Fatal(err)
	}
	c, err := New(NewConfig(), collectors.Settings{Paths: collectors.Paths{ProcFS: proc, SysFS: "/nonexistent", RootFS: "/rootfs"}})
	if err != nil {
		t.Fatal(err)
	}
	c.statfs = (&fakeStatfs{}).statfs

	scrape := func() map[string]float64 {
		t.Helper()
		ch := make(chan prometheus.Metric, 4096)
		if err := c.Update(context.Background(), ch); err != nil {
			t.Fatalf("Update failed although most areas work: %v", err)
		}
		close(ch)
		got := map[string]float64{}
		for m := range ch {
			got[metricKey(t, m)] += 1
			if strings.HasPrefix(metricKey(t, m), "vigil_host_area") {
				got[metricKey(t, m)] = metricValue(t, m)
			}
		}
		return got
	}
	got := scrape()
	for _, k := range []string{
		`vigil_host_area_success{area="meminfo"}`, `vigil_host_area_errors_total{area="meminfo"}`,
		`vigil_host_area_success{area="cpu"}`,
	} {
		if _, ok := got[k]; !ok {
			t.Fatalf("%s missing", k)
		}
	}
	if got[`vigil_host_area_success{area="meminfo"}`] != 0 || got[`vigil_host_area_errors_total{area="meminfo"}`] != 1 {
		t.Errorf("meminfo success/errors = %v/%v, want 0/1", got[`vigil_host_area_success{area="meminfo"}`], got[`vigil_host_area_errors_total{area="meminfo"}`])
	}
	if got[`vigil_host_area_success{area="cpu"}`] != 1 || got["node_cpu_seconds_total"] == 0 || got["node_load1"] == 0 {
		t.Errorf("other areas not reported while meminfo fails: %v", got)
	}
	if got["node_memory_MemTotal_bytes"] != 0 {
		t.Errorf("meminfo metrics reported although /proc/meminfo is missing")
	}

	if err := os.WriteFile(meminfo, saved, 0o644); err != nil {
		t.Fatal(err)
	}
	got = scrape()
	if got[`vigil_host_area_success{area="meminfo"}`] != 1 || got["node_memory_MemTotal_bytes"] != 1 {
		t.Errorf("meminfo did not recover: %v", got)
	}
	if got[`vigil_host_area_errors_total{area="meminfo"}`] != 1 {
		t.Errorf("errors counter = %v, want it to stay 1", got[`vigil_host_area_errors_total{area="meminfo"}`])
	}
}
