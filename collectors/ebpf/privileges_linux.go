//go:build linux

package ebpf

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Capability numbers not all versions of x/sys name.
const (
	capSysAdmin    = 21
	capSysResource = 24
	capPerfmon     = 38
	capBPF         = 39
)

// effectiveCaps returns the calling thread's effective capability set as a
// bit mask (bit n: capability n).
func effectiveCaps() (uint64, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return 0, err
	}
	return uint64(data[0].Effective) | uint64(data[1].Effective)<<32, nil
}

// missingBPFCaps names the capabilities among CAP_BPF and CAP_PERFMON that
// the effective set lacks (none when CAP_SYS_ADMIN, which implies both, is
// there), e.g. "CAP_BPF" or "CAP_BPF and CAP_PERFMON"; "" when none is
// missing or the set cannot be read.
func missingBPFCaps() string {
	eff, err := effectiveCaps()
	if err != nil {
		return ""
	}
	return missingBPFCapsIn(eff)
}

func missingBPFCapsIn(eff uint64) string {
	if eff&(1<<capSysAdmin) != 0 {
		return ""
	}
	var missing []string
	if eff&(1<<capBPF) == 0 {
		missing = append(missing, "CAP_BPF")
	}
	if eff&(1<<capPerfmon) == 0 {
		missing = append(missing, "CAP_PERFMON")
	}
	return strings.Join(missing, " and ")
}

// permissionHint explains a refused bpf(2) or perf_event_open(2): the
// missing capabilities when the process lacks some, otherwise what else
// refuses them.
func permissionHint() string {
	if m := missingBPFCaps(); m != "" {
		return m + " missing"
	}
	if limit, ok := memlockLimited(); ok {
		return fmt.Sprintf("RLIMIT_MEMLOCK is %d bytes and this kernel (before 5.11) charges eBPF maps to it: "+
			"CAP_SYS_RESOURCE missing to raise it", limit)
	}
	return "CAP_BPF and CAP_PERFMON are present: a kernel before 5.8 needs CAP_SYS_ADMIN instead, " +
		"or a seccomp profile, LSM or user namespace refuses bpf(2)"
}

// memcgAccountingRelease is the first kernel that charges BPF memory to the
// memory cgroup instead of RLIMIT_MEMLOCK.
var memcgAccountingRelease = [2]int{5, 11}

// kernelRelease returns the major and minor version of a uname release
// string such as "6.18.0-1-amd64".
func kernelRelease(release string) ([2]int, error) {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return [2]int{}, fmt.Errorf("kernel release %q: want major.minor", release)
	}
	major, err := strconv.Atoi(parts[0])
	if err != nil {
		return [2]int{}, fmt.Errorf("kernel release %q: %w", release, err)
	}
	minor := parts[1]
	if i := strings.IndexFunc(minor, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		minor = minor[:i]
	}
	mi, err := strconv.Atoi(minor)
	if err != nil {
		return [2]int{}, fmt.Errorf("kernel release %q: %w", release, err)
	}
	return [2]int{major, mi}, nil
}

// raiseMemlock lifts RLIMIT_MEMLOCK on kernels before 5.11, which charge
// eBPF maps and programs to it (needs CAP_SYS_RESOURCE unless the hard
// limit is already unlimited). Later kernels charge the memory cgroup and
// nothing is done. A failure is logged with the missing capability: the
// programs are still tried, and those whose maps do not fit are reported
// not loaded.
func raiseMemlock(log *slog.Logger) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return
	}
	rel, err := kernelRelease(unix.ByteSliceToString(u.Release[:]))
	if err != nil || !needsMemlock(rel) {
		return
	}
	unlimited := unix.Rlimit{Cur: unix.RLIM_INFINITY, Max: unix.RLIM_INFINITY}
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, &unlimited, nil); err != nil {
		var cur unix.Rlimit
		_ = unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &cur)
		reason := err.Error()
		if eff, cerr := effectiveCaps(); cerr == nil && eff&(1<<capSysResource) == 0 {
			reason = "CAP_SYS_RESOURCE missing: " + reason
		}
		log.Warn("cannot raise RLIMIT_MEMLOCK; eBPF maps beyond it fail to load on this kernel (before 5.11)",
			"reason", reason, "memlock_bytes", cur.Cur)
	}
}

// memlockLimited returns RLIMIT_MEMLOCK when the kernel charges eBPF memory
// to it and it is not unlimited.
func memlockLimited() (uint64, bool) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return 0, false
	}
	rel, err := kernelRelease(unix.ByteSliceToString(u.Release[:]))
	if err != nil || !needsMemlock(rel) {
		return 0, false
	}
	var cur unix.Rlimit
	if err := unix.Prlimit(0, unix.RLIMIT_MEMLOCK, nil, &cur); err != nil || cur.Cur == unix.RLIM_INFINITY {
		return 0, false
	}
	return cur.Cur, true
}

// needsMemlock reports whether kernel release rel charges BPF memory to
// RLIMIT_MEMLOCK.
func needsMemlock(rel [2]int) bool {
	return rel[0] < memcgAccountingRelease[0] ||
		(rel[0] == memcgAccountingRelease[0] && rel[1] < memcgAccountingRelease[1])
}
