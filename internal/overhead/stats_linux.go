//go:build linux

package overhead

import (
	"io"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// enableStats turns on the kernel's BPF run-time statistics
// (BPF_ENABLE_STATS) until the result is closed; it needs CAP_SYS_ADMIN.
func enableStats() (io.Closer, error) {
	return ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
}

// processCPUTime is the user and system CPU time of the whole process.
func processCPUTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
