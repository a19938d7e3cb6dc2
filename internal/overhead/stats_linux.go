//go:build linux

package overhead

import (
	"fmt"
	"io"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// enableStats turns on the kernel's BPF run-time statistics
// (BPF_ENABLE_STATS) until the result is closed; that needs CAP_SYS_ADMIN.
func enableStats() (io.Closer, error) {
	st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		return nil, fmt.Errorf("enable BPF run-time statistics (needs CAP_SYS_ADMIN, or collectors.ebpf.bpf_stats: true): %w", err)
	}
	return st, nil
}

// processCPUTime is the user and system CPU time of the whole process.
func processCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
