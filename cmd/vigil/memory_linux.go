//go:build linux

package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// releaseStartupPages drops this process's mappings of its own executable's
// read-only pages (code, read-only data, the function tables) so that the
// resident set holds only what the agent touches from now on: start-up
// runs every package's init (the Kubernetes API types alone are tens of
// MB of code and tables) once and never again. The pages stay in the page
// cache, shared and reclaimable, and a later access maps them back with a
// minor fault. Only private, never-written mappings are dropped: for
// those MADV_DONTNEED changes nothing but residency. It returns the bytes
// that were resident in them.
func releaseStartupPages() (released int64) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	type region struct{ start, end uintptr }
	var (
		regions []region
		cur     *region
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			cur = nil
			// Read-only (r--p) or executable (r-xp) private mappings of
			// the executable itself; never rw-p (data that may have been
			// written).
			if len(fields) == 6 && fields[5] == exe && fields[1][1] == '-' && fields[1][3] == 'p' {
				lo, hi, ok := strings.Cut(fields[0], "-")
				s, err1 := strconv.ParseUint(lo, 16, 64)
				e, err2 := strconv.ParseUint(hi, 16, 64)
				if ok && err1 == nil && err2 == nil {
					regions = append(regions, region{uintptr(s), uintptr(e)})
					cur = &regions[len(regions)-1]
				}
			}
			continue
		}
		if cur != nil && len(fields) >= 2 && fields[0] == "Rss:" {
			if kb, err := strconv.ParseInt(fields[1], 10, 64); err == nil {
				released += kb << 10
			}
		}
	}
	for _, r := range regions {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return 0
		}
	}
	return released
}
