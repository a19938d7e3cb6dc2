//go:build linux

package host

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/shirou/gopsutil/v4/disk"

	"github.com/vigil-agent/vigil/collectors"
)

// fakeStatfs stands in for statfs(2) on mount points that do not exist on
// this machine (the fake procfs's mount table names /rootfs/...). It records
// the paths asked for and answers from a table.
type fakeStatfs struct {
	mu     sync.Mutex
	calls  []string
	usage  map[string]*disk.UsageStat
	errs   map[string]error
	blocks map[string]chan struct{}
}

func (f *fakeStatfs) statfs(path string) (*disk.UsageStat, error) {
	f.mu.Lock()
	f.calls = append(f.calls, path)
	block := f.blocks[path]
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	if err := f.errs[path]; err != nil {
		return nil, err
	}
	if u := f.usage[path]; u != nil {
		return u, nil
	}
	return nil, errors.New("no such file or directory")
}

func (f *fakeStatfs) callCount(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == path {
			n++
		}
	}
	return n
}

func newFakeProcCollector(t *testing.T, cfg *Config, fs *fakeStatfs) *Collector {
	t.Helper()
	c, err := New(cfg, collectors.Settings{Paths: collectors.Paths{
		ProcFS: "testdata/fakeproc",
		SysFS:  "testdata/fakesys-absent",
		RootFS: "/rootfs",
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.statfs = fs.statfs
	return c
}

// TestFakeProcFS is a golden test over a fake procfs (testdata/fakeproc, a
// directory of hand-written kernel files, not the kernel's): every figure
// must come from Paths.ProcFS, and mount points must be read under
// Paths.RootFS and reported without that prefix.
func TestFakeProcFS(t *testing.T) {
	fs := &fakeStatfs{usage: map[string]*disk.UsageStat{
		"/rootfs":              {Total: 1000 * 4096, Free: 300 * 4096, Used: 600 * 4096, InodesTotal: 5000, InodesFree: 4000},
		"/rootfs/srv/data dir": {Total: 2 << 30, Free: 1 << 30, Used: 1 << 29, InodesTotal: 100, InodesFree: 90},
	}, errs: map[string]error{
		"/rootfs/mnt/nfs": errors.New("permission denied"),
	}}
	c := newFakeProcCollector(t, NewConfig(), fs)

	const want = `
# HELP node_boot_time_seconds Node boot time, in unixtime.
# TYPE node_boot_time_seconds gauge
node_boot_time_seconds 1.7e+09
# HELP node_context_switches_total Total number of context switches.
# TYPE node_context_switches_total counter
node_context_switches_total 987654
# HELP node_cpu_guest_seconds_total Seconds the CPUs spent in guests (VMs) for each mode.
# TYPE node_cpu_guest_seconds_total counter
node_cpu_guest_seconds_total{cpu="0",mode="nice"} 0
node_cpu_guest_seconds_total{cpu="0",mode="user"} 0
node_cpu_guest_seconds_total{cpu="1",mode="nice"} 0.02
node_cpu_guest_seconds_total{cpu="1",mode="user"} 0.11
# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 200
node_cpu_seconds_total{cpu="0",mode="iowait"} 0.25
node_cpu_seconds_total{cpu="0",mode="irq"} 0
node_cpu_seconds_total{cpu="0",mode="nice"} 0.1
node_cpu_seconds_total{cpu="0",mode="softirq"} 0.03
node_cpu_seconds_total{cpu="0",mode="steal"} 0
node_cpu_seconds_total{cpu="0",mode="system"} 1.5
node_cpu_seconds_total{cpu="0",mode="user"} 5
node_cpu_seconds_total{cpu="1",mode="idle"} 200
node_cpu_seconds_total{cpu="1",mode="iowait"} 0.25
node_cpu_seconds_total{cpu="1",mode="irq"} 0
node_cpu_seconds_total{cpu="1",mode="nice"} 0.1
node_cpu_seconds_total{cpu="1",mode="softirq"} 0.03
node_cpu_seconds_total{cpu="1",mode="steal"} 0.07
node_cpu_seconds_total{cpu="1",mode="system"} 1.5
node_cpu_seconds_total{cpu="1",mode="user"} 5
# HELP node_disk_io_time_seconds_total Total seconds spent doing I/Os.
# TYPE node_disk_io_time_seconds_total counter
node_disk_io_time_seconds_total{device="nvme0n1"} 3
node_disk_io_time_seconds_total{device="vda"} 14.204
# HELP node_disk_read_bytes_total The total number of bytes read successfully.
# TYPE node_disk_read_bytes_total counter
node_disk_read_bytes_total{device="nvme0n1"} 2.048e+06
node_disk_read_bytes_total{device="vda"} 1.049629696e+09
# HELP node_disk_written_bytes_total The total number of bytes written successfully.
# TYPE node_disk_written_bytes_total counter
node_disk_written_bytes_total{device="nvme0n1"} 3.072e+06
node_disk_written_bytes_total{device="vda"} 5.589409792e+09
# HELP node_filefd_allocated File descriptor statistics: allocated.
# TYPE node_filefd_allocated gauge
node_filefd_allocated 1234
# HELP node_filesystem_avail_bytes Filesystem space available to non-root users in bytes.
# TYPE node_filesystem_avail_bytes gauge
node_filesystem_avail_bytes{device="/dev/mapper/vg-data",device_error="",fstype="xfs",mountpoint="/srv/data dir"} 1.073741824e+09
node_filesystem_avail_bytes{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 1.2288e+06
# HELP node_filesystem_device_error Whether an error occurred while getting statistics for the given device.
# TYPE node_filesystem_device_error gauge
node_filesystem_device_error{device="/dev/mapper/vg-data",device_error="",fstype="xfs",mountpoint="/srv/data dir"} 0
node_filesystem_device_error{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 0
node_filesystem_device_error{device="/dev/vda1",device_error="no such file or directory",fstype="vfat",mountpoint="/boot"} 1
node_filesystem_device_error{device="srv:/export",device_error="permission denied",fstype="nfs4",mountpoint="/mnt/nfs"} 1
node_filesystem_device_error{device="tmpfs",device_error="no such file or directory",fstype="tmpfs",mountpoint="/run"} 1
# HELP node_filesystem_free_bytes Filesystem free space in bytes.
# TYPE node_filesystem_free_bytes gauge
node_filesystem_free_bytes{device="/dev/mapper/vg-data",device_error="",fstype="xfs",mountpoint="/srv/data dir"} 1.610612736e+09
node_filesystem_free_bytes{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 1.6384e+06
# HELP node_filesystem_readonly Filesystem read-only status.
# TYPE node_filesystem_readonly gauge
node_filesystem_readonly{device="/dev/mapper/vg-data",device_error="",fstype="xfs",mountpoint="/srv/data dir"} 1
node_filesystem_readonly{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 0
node_filesystem_readonly{device="/dev/vda1",device_error="no such file or directory",fstype="vfat",mountpoint="/boot"} 0
node_filesystem_readonly{device="srv:/export",device_error="permission denied",fstype="nfs4",mountpoint="/mnt/nfs"} 0
node_filesystem_readonly{device="tmpfs",device_error="no such file or directory",fstype="tmpfs",mountpoint="/run"} 0
# HELP node_filesystem_size_bytes Filesystem size in bytes.
# TYPE node_filesystem_size_bytes gauge
node_filesystem_size_bytes{device="/dev/mapper/vg-data",device_error="",fstype="xfs",mountpoint="/srv/data dir"} 2.147483648e+09
node_filesystem_size_bytes{device="/dev/vda",device_error="",fstype="ext4",mountpoint="/"} 4.096e+06
# HELP node_forks_total Total number of forks.
# TYPE node_forks_total counter
node_forks_total 4321
# HELP node_intr_total Total number of interrupts serviced.
# TYPE node_intr_total counter
node_intr_total 123456
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.25
# HELP node_load15 15m load average.
# TYPE node_load15 gauge
node_load15 1.75
# HELP node_memory_Cached_bytes Memory information field Cached_bytes.
# TYPE node_memory_Cached_bytes gauge
node_memory_Cached_bytes 4.096e+09
# HELP node_memory_HugePages_Total Memory information field HugePages_Total.
# TYPE node_memory_HugePages_Total gauge
node_memory_HugePages_Total 4
# HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.
# TYPE node_memory_MemAvailable_bytes gauge
node_memory_MemAvailable_bytes 8.192e+09
# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.
# TYPE node_memory_MemTotal_bytes gauge
node_memory_MemTotal_bytes 1.6384e+10
# HELP node_memory_SwapFree_bytes Memory information field SwapFree_bytes.
# TYPE node_memory_SwapFree_bytes gauge
node_memory_SwapFree_bytes 5.36870912e+08
# HELP node_network_receive_bytes_total Network device statistic receive_bytes.
# TYPE node_network_receive_bytes_total counter
node_network_receive_bytes_total{device="eth0"} 6.02034429e+08
node_network_receive_bytes_total{device="lo"} 26290
# HELP node_network_transmit_drop_total Network device statistic transmit_drop.
# TYPE node_network_transmit_drop_total counter
node_network_transmit_drop_total{device="eth0"} 8
node_network_transmit_drop_total{device="lo"} 0
# HELP node_nf_conntrack_entries Number of currently allocated flow entries for connection tracking.
# TYPE node_nf_conntrack_entries gauge
node_nf_conntrack_entries 17
# HELP node_procs_blocked Number of processes blocked waiting for I/O to complete.
# TYPE node_procs_blocked gauge
node_procs_blocked 1
# HELP node_procs_running Number of processes in runnable state.
# TYPE node_procs_running gauge
node_procs_running 3
# HELP node_vmstat_oom_kill /proc/vmstat information field oom_kill.
# TYPE node_vmstat_oom_kill untyped
node_vmstat_oom_kill 2
# HELP node_vmstat_pgmajfault /proc/vmstat information field pgmajfault.
# TYPE node_vmstat_pgmajfault untyped
node_vmstat_pgmajfault 42
# HELP vigil_host_mount_stat_failures_total statfs calls on a mount point that failed (reason=error) or did not answer within filesystem.mount_timeout (reason=timeout).
# TYPE vigil_host_mount_stat_failures_total counter
vigil_host_mount_stat_failures_total{reason="error"} 3
vigil_host_mount_stat_failures_total{reason="timeout"} 0
`
	names := []string{
		"node_boot_time_seconds", "node_context_switches_total", "node_cpu_guest_seconds_total", "node_cpu_seconds_total",
		"node_disk_io_time_seconds_total", "node_disk_read_bytes_total", "node_disk_written_bytes_total",
		"node_filefd_allocated", "node_filesystem_avail_bytes", "node_filesystem_device_error", "node_filesystem_free_bytes",
		"node_filesystem_readonly", "node_filesystem_size_bytes", "node_forks_total", "node_intr_total", "node_load1",
		"node_load15", "node_memory_Cached_bytes", "node_memory_HugePages_Total", "node_memory_MemAvailable_bytes",
		"node_memory_MemTotal_bytes", "node_memory_SwapFree_bytes", "node_network_receive_bytes_total",
		"node_network_transmit_drop_total", "node_nf_conntrack_entries", "node_procs_blocked", "node_procs_running",
		"node_vmstat_oom_kill", "node_vmstat_pgmajfault", "vigil_host_mount_stat_failures_total",
	}
	if err := testutil.CollectAndCompare(asPrometheus{c}, strings.NewReader(want), names...); err != nil {
		t.Fatal(err)
	}

	// Mounts are read under RootFS; excluded ones (/proc by type and mount
	// point, /var/lib/docker/... by mount point) are never asked.
	fs.mu.Lock()
	calls := append([]string(nil), fs.calls...)
	fs.mu.Unlock()
	sort.Strings(calls)
	wantCalls := []string{"/rootfs", "/rootfs/boot", "/rootfs/mnt/nfs", "/rootfs/run", "/rootfs/srv/data dir"}
	if strings.Join(calls, ",") != strings.Join(wantCalls, ",") {
		t.Errorf("statfs calls = %q, want %q", calls, wantCalls)
	}
}
