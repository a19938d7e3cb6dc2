//go:build linux

package overhead

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// statsSysctl shows whether the kernel's BPF run-time statistics are on,
// whoever turned them on.
const statsSysctl = "/proc/sys/kernel/bpf_stats_enabled"

// enableStats turns on the kernel's BPF run-time statistics
// (BPF_ENABLE_STATS) until the result is closed; that needs CAP_SYS_ADMIN.
// Without it, statistics already on (collectors.ebpf.bpf_stats, enabled
// before the agent dropped the capability, or the sysctl) are used as
// they are.
func enableStats() (io.Closer, error) {
	st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err == nil {
		return st, nil
	}
	if on, rerr := os.ReadFile(statsSysctl); rerr == nil && bytes.Equal(bytes.TrimSpace(on), []byte("1")) {
		return io.NopCloser(nil), nil
	}
	return nil, fmt.Errorf("enable BPF run-time statistics (needs CAP_SYS_ADMIN, or collectors.ebpf.bpf_stats: true): %w", err)
}

// processCPUTime is the user and system CPU time of the whole process.
func processCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
