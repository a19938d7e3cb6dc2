package capability

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is returned by Reduce when the change cannot be made on
// every thread of the process: a binary built with cgo cannot use
// syscall.AllThreadsSyscall (capabilities and no_new_privs are per thread
// in Linux, and a set changed on one Go thread only would leave the
// others holding the old one).
var ErrUnsupported = errors.New("the capability sets cannot be changed on every thread of a binary built with cgo (build with CGO_ENABLED=0, as make build and the image do)")

// lastCap is the highest capability number the running kernel knows
// (/proc/sys/kernel/cap_last_cap; 40 on Linux 5.9 and later). It is read
// once: the kernel's number does not change while it runs, and Current
// runs at every scrape.
var lastCap = sync.OnceValue(func() Cap {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return Cap(n)
		}
	}
	return Cap(len(names) - 1)
})

// KernelKnows reports whether the running kernel has capability c (CAP_BPF
// and CAP_PERFMON came with Linux 5.8).
func KernelKnows(c Cap) bool { return c <= lastCap() }

// Current returns the calling thread's capability sets and no_new_privs
// (after Reduce, every thread's).
func Current() (State, error) {
	// capget and /proc/thread-self describe the thread they run on.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return State{}, fmt.Errorf("capget: %w", err)
	}
	st := State{
		Effective:   Set(data[0].Effective) | Set(data[1].Effective)<<32,
		Permitted:   Set(data[0].Permitted) | Set(data[1].Permitted)<<32,
		Inheritable: Set(data[0].Inheritable) | Set(data[1].Inheritable)<<32,
	}
	// One read of the thread's status instead of two prctl calls per
	// capability (82 system calls; this runs at every scrape).
	if b, a, nnp, ok := threadStatus(); ok {
		st.Bounding, st.Ambient, st.NoNewPrivs = b, a, nnp
		return st, nil
	}
	st.Bounding, st.Ambient, st.NoNewPrivs = prctlSets()
	return st, nil
}

// threadStatus reads the calling thread's bounding and ambient sets and
// no_new_privs from /proc/thread-self/status; false when it cannot.
func threadStatus() (bounding, ambient Set, noNewPrivs, ok bool) {
	b, err := os.ReadFile("/proc/thread-self/status")
	if err != nil {
		return 0, 0, false, false
	}
	seen := 0
	for line := range strings.Lines(string(b)) {
		k, v, found := strings.Cut(line, ":")
		if !found {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "CapBnd", "CapAmb":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return 0, 0, false, false
			}
			if k == "CapBnd" {
				bounding = Set(n)
			} else {
				ambient = Set(n)
			}
			seen++
		case "NoNewPrivs":
			noNewPrivs = v == "1"
			seen++
		}
	}
	return bounding, ambient, noNewPrivs, seen == 3
}

// prctlSets asks the kernel for the bounding and ambient sets one
// capability at a time, and for no_new_privs.
func prctlSets() (bounding, ambient Set, noNewPrivs bool) {
	for c := Cap(0); c <= lastCap(); c++ {
		if on, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0); err == nil && on == 1 {
			bounding |= Of(c)
		}
		if on, err := unix.PrctlRetInt(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_IS_SET, uintptr(c), 0, 0); err == nil && on == 1 {
			ambient |= Of(c)
		}
	}
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	return bounding, ambient, err == nil && nnp == 1
}

// allThreads runs one system call on every thread of the process.
func allThreads(trap, a1, a2, a3 uintptr) error {
	_, _, errno := syscall.AllThreadsSyscall(trap, a1, a2, a3)
	if errno == syscall.ENOTSUP {
		return ErrUnsupported
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// Reduce leaves the process, on every thread, with keep ∩ permitted as its
// effective and permitted sets, an empty inheritable and ambient set, the
// bounding set reduced to keep when it holds CAP_SETPCAP (it cannot be
// reduced without; a container's or a systemd unit's bounding set is then
// what it was given), and no_new_privs set. It returns the state after.
// Nothing can be added back: a capability dropped here is gone until the
// process restarts.
func Reduce(keep Set) (State, error) {
	before, err := Current()
	if err != nil {
		return State{}, err
	}
	keep &= before.Permitted
	if err := allThreads(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return before, fmt.Errorf("clear the ambient set: %w", err)
	}
	if before.Effective.Has(SetPCap) {
		for c := Cap(0); c <= lastCap(); c++ {
			if before.Bounding.Has(c) && !keep.Has(c) {
				if err := allThreads(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
					return before, fmt.Errorf("drop %s from the bounding set: %w", c, err)
				}
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(keep), Permitted: uint32(keep)},
		{Effective: uint32(keep >> 32), Permitted: uint32(keep >> 32)},
	}
	if err := allThreads(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); err != nil {
		return before, fmt.Errorf("capset: %w", err)
	}
	if err := allThreads(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return before, fmt.Errorf("set no_new_privs: %w", err)
	}
	return Current()
}
