//go:build linux

package cgroup

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Which fields of stats were read. A field whose file is missing (a
// controller not enabled for the cgroup, an older kernel) stays unset and
// its metric is not reported for that cgroup.
const (
	hasCPUUsage = 1 << iota
	hasCPUUser
	hasCPUSystem
	hasPeriods
	hasThrottled
	hasThrottledTime
	hasMemUsage
	hasMemLimit
	hasInactiveFile
	hasRSS
	hasCache
	hasOOMKills
	hasLimitHits
	hasCPUPressure
	hasMemPressureSome
	hasMemPressureFull

	// allFields is every field: what Update reads.
	allFields = hasMemPressureFull<<1 - 1
)

// Which fields each file fills, so that a collection that wants only some
// fields (UpdateNames) opens only the files behind them.
const (
	cpuStatFields  = hasCPUUsage | hasCPUUser | hasCPUSystem | hasPeriods | hasThrottled | hasThrottledTime
	memStatFields  = hasRSS | hasCache | hasInactiveFile
	v2EventFields  = hasOOMKills | hasLimitHits
	memPSIFields   = hasMemPressureSome | hasMemPressureFull
	v1CPUStatField = hasPeriods | hasThrottled | hasThrottledTime
)

// stats is what one cgroup's files say. CPU times are in seconds, memory in
// bytes.
type stats struct {
	has                                uint32
	cpuUsage, cpuUser, cpuSystem       float64
	periods, throttled                 uint64
	throttledTime                      float64
	memUsage, memLimit                 uint64
	inactiveFile, rss, cache, oomKills uint64
	// limitHits counts charges that met the memory limit (v2
	// memory.events "max", v1 memory.failcnt): each one made the kernel
	// reclaim the cgroup's own memory first.
	limitHits uint64
	// Pressure stall totals (PSI, cgroup2 cpu.pressure and
	// memory.pressure) in seconds: "some" is time at least one task
	// waited, "full" time all non-idle tasks were stalled at once.
	cpuSome, memSome, memFull float64
}

func (s *stats) set(bit uint32) { s.has |= bit }

// Has reports whether all of bits were read.
func (s *stats) Has(bits uint32) bool { return s.has&bits == bits }

// unlimited is the threshold above which a memory limit means "no limit".
// cgroup v1 reports no limit as the largest page-aligned 63-bit number
// (9223372036854771712 with 4 KiB pages); v2 writes "max".
const unlimited = 1 << 62

// fileReader reads small pseudo-files into one reused buffer with raw
// open/read/close system calls: no *os.File, no poller registration, and no
// allocation beyond the path once the buffer has grown to fit memory.stat.
// A fileReader is not safe for concurrent use.
type fileReader struct {
	buf []byte
	// onError is called for every failure other than a missing file: the
	// file's base name (for the error metric) and the error, which names
	// the full path and, for content errors, the line and field.
	onError func(file string, err error)
	pids    []uint32 // cgroup.procs of the cgroup being read
}

func newFileReader(onError func(string, error)) *fileReader {
	return &fileReader{buf: make([]byte, 8192), onError: onError}
}

// read returns the content of dir/name, valid until the next read. ok is
// false when the file could not be read; a missing file is not reported as
// an error, since cgroups come and go between the walk and the read and not
// every controller is enabled everywhere.
func (r *fileReader) read(dir, name string) (data []byte, ok bool) {
	p := dir + "/" + name
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		if err != unix.ENOENT && err != unix.ENODEV {
			r.onError(name, &os.PathError{Op: "open", Path: p, Err: err})
		}
		return nil, false
	}
	defer unix.Close(fd)
	n := 0
	for {
		if n == len(r.buf) {
			r.buf = append(r.buf, make([]byte, len(r.buf))...)
		}
		m, err := unix.Read(fd, r.buf[n:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			if err != unix.ENOENT && err != unix.ENODEV {
				r.onError(name, &os.PathError{Op: "read", Path: p, Err: err})
			}
			return nil, false
		}
		if m == 0 {
			return r.buf[:n], true
		}
		n += m
	}
}

// contentError is a file whose content could not be parsed.
type contentError struct {
	path  string
	line  int
	field string
	msg   string
}

func (e *contentError) Error() string {
	if e.field != "" {
		return fmt.Sprintf("%s:%d: field %q: %s", e.path, e.line, e.field, e.msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.path, e.line, e.msg)
}

// readUint reads a file holding one unsigned number ("max" when allowMax,
// returned as ok with isMax).
func (r *fileReader) readUint(dir, name string, allowMax bool) (v uint64, isMax, ok bool) {
	b, ok := r.read(dir, name)
	if !ok {
		return 0, false, false
	}
	b = bytes.TrimSpace(b)
	if allowMax && string(b) == "max" {
		return 0, true, true
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		r.onError(name, &contentError{path: dir + "/" + name, line: 1, msg: fmt.Sprintf("want an unsigned number, got %q", truncate(b))})
		return 0, false, false
	}
	return v, false, true
}

// readKeyed reads a flat-keyed file ("key value" per line) and stores the
// values of keys[i] in vals[i]. It returns a bit per key found. A bad value
// for a wanted key is reported and that key left out; unwanted keys are not
// parsed at all.
func (r *fileReader) readKeyed(dir, name string, keys []string, vals []uint64) (found uint32) {
	b, ok := r.read(dir, name)
	if !ok {
		return 0
	}
	line := 0
	for len(b) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			l, b = b, nil
		}
		k, v, ok := bytes.Cut(l, []byte{' '})
		if !ok {
			if len(bytes.TrimSpace(l)) > 0 {
				r.onError(name, &contentError{path: dir + "/" + name, line: line, msg: fmt.Sprintf("want \"key value\", got %q", truncate(l))})
			}
			continue
		}
		for i, want := range keys {
			if string(k) != want {
				continue
			}
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				r.onError(name, &contentError{path: dir + "/" + name, line: line, field: want, msg: fmt.Sprintf("want an unsigned number, got %q", truncate(v))})
				break
			}
			vals[i] = n
			found |= 1 << i
			break
		}
	}
	return found
}

func truncate(b []byte) string {
	if len(b) > 40 {
		return string(b[:40]) + "…"
	}
	return string(b)
}

var (
	v2CPUKeys   = []string{"usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"}
	v2MemKeys   = []string{"anon", "file", "inactive_file"}
	v1CPUKeys   = []string{"nr_periods", "nr_throttled", "throttled_time"}
	v1MemKeys   = []string{"total_rss", "total_cache", "total_inactive_file"}
	oomKillKeys = []string{"oom_kill"}
	v2EventKeys = []string{"oom_kill", "max"}
)

// readV2 reads a cgroup v2 directory: cpu.stat (always present: the kernel
// keeps usage without the cpu controller), memory.current, memory.max,
// memory.stat and memory.events (with the memory controller), and the
// pressure files. Only the files behind the fields in want are read (a
// file is read whole: its other fields are set too).
func (r *fileReader) readV2(dir string, want uint32) stats {
	var s stats
	var v [6]uint64
	var f uint32
	if want&cpuStatFields != 0 {
		f = r.readKeyed(dir, "cpu.stat", v2CPUKeys, v[:])
		s.cpuUsage, s.cpuUser, s.cpuSystem = float64(v[0])/1e6, float64(v[1])/1e6, float64(v[2])/1e6
		s.periods, s.throttled, s.throttledTime = v[3], v[4], float64(v[5])/1e6
		s.has |= f // bit order of v2CPUKeys matches hasCPUUsage…hasThrottledTime
	}

	if want&hasMemUsage != 0 {
		if u, _, ok := r.readUint(dir, "memory.current", false); ok {
			s.memUsage = u
			s.set(hasMemUsage)
		}
	}
	if want&hasMemLimit != 0 {
		if l, isMax, ok := r.readUint(dir, "memory.max", true); ok && !isMax && l < unlimited {
			s.memLimit = l
			s.set(hasMemLimit)
		}
	}
	if want&v2EventFields != 0 {
		f = r.readKeyed(dir, "memory.events", v2EventKeys, v[:2])
		if f&1 != 0 {
			s.oomKills = v[0]
			s.set(hasOOMKills)
		}
		if f&2 != 0 {
			s.limitHits = v[1]
			s.set(hasLimitHits)
		}
	}
	if want&memStatFields != 0 {
		r.readMemStat(&s, dir, v2MemKeys)
	}
	r.readPressure(&s, dir, want)
	return s
}

// readMemStat reads memory.stat's anonymous, page cache and inactive file
// totals (keys names them, v2's or v1's).
func (r *fileReader) readMemStat(s *stats, dir string, keys []string) {
	var v [3]uint64
	f := r.readKeyed(dir, "memory.stat", keys, v[:])
	if f&1 != 0 {
		s.rss = v[0]
		s.set(hasRSS)
	}
	if f&2 != 0 {
		s.cache = v[1]
		s.set(hasCache)
	}
	if f&4 != 0 {
		s.inactiveFile = v[2]
		s.set(hasInactiveFile)
	}
}

// readPressure reads the pressure stall totals of the cgroup2 directory
// dir: cpu.pressure's "some" and memory.pressure's "some" and "full". The
// files are part of every cgroup2 directory when the kernel has PSI, with
// or without controllers, so on a hybrid node they come from the cgroup2
// mount while the other numbers come from the v1 controllers: PSI is
// accounted to a task's cgroup2 cgroup whatever hierarchy limits it.
func (r *fileReader) readPressure(s *stats, dir string, want uint32) {
	var some, full float64
	var f uint32
	if want&hasCPUPressure != 0 {
		if some, _, f = r.readPSI(dir, "cpu.pressure"); f&1 != 0 {
			s.cpuSome = some
			s.set(hasCPUPressure)
		}
	}
	if want&memPSIFields == 0 {
		return
	}
	some, full, f = r.readPSI(dir, "memory.pressure")
	if f&1 != 0 {
		s.memSome = some
		s.set(hasMemPressureSome)
	}
	if f&2 != 0 {
		s.memFull = full
		s.set(hasMemPressureFull)
	}
}

// readPSI parses a pressure file's "some" and "full" totals (microseconds,
// returned in seconds), e.g.
//
//	some avg10=0.00 avg60=0.00 avg300=0.00 total=105627
//	full avg10=0.00 avg60=0.00 avg300=0.00 total=19571
//
// found has bit 0 for some and bit 1 for full.
func (r *fileReader) readPSI(dir, name string) (some, full float64, found uint32) {
	b, ok := r.read(dir, name)
	if !ok {
		return 0, 0, 0
	}
	line := 0
	for len(b) > 0 {
		line++
		var l []byte
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			l, b = b[:i], b[i+1:]
		} else {
			l, b = b, nil
		}
		kind, rest, _ := bytes.Cut(l, []byte{' '})
		var bit uint32
		switch string(kind) {
		case "some":
			bit = 1
		case "full":
			bit = 2
		default:
			if len(bytes.TrimSpace(l)) > 0 {
				r.onError(name, &contentError{path: dir + "/" + name, line: line, msg: fmt.Sprintf("want \"some\" or \"full\", got %q", truncate(l))})
			}
			continue
		}
		i := bytes.Index(rest, []byte("total="))
		if i < 0 {
			r.onError(name, &contentError{path: dir + "/" + name, line: line, field: "total", msg: "missing"})
			continue
		}
		v := rest[i+len("total="):]
		if j := bytes.IndexByte(v, ' '); j >= 0 {
			v = v[:j]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		if err != nil {
			r.onError(name, &contentError{path: dir + "/" + name, line: line, field: "total", msg: fmt.Sprintf("want an unsigned number, got %q", truncate(v))})
			continue
		}
		if bit == 1 {
			some = float64(n) / 1e6
		} else {
			full = float64(n) / 1e6
		}
		found |= bit
	}
	return some, full, found
}

// readV1 reads the cgroup at rel in each v1 controller: cpuacct.usage,
// cpuacct.usage_user and cpuacct.usage_sys (nanoseconds), cpu.stat,
// memory.usage_in_bytes, memory.limit_in_bytes, memory.stat (the
// hierarchical total_* fields, since usage includes descendants),
// memory.oom_control (oom_kill, Linux 4.13+) and memory.failcnt; and the
// pressure files from the cgroup2 mount at the same path, if any. Only the
// files behind the fields in want are read.
func (r *fileReader) readV1(l *layout, rel string, want uint32) stats {
	var s stats
	var v [3]uint64
	if l.cpuacct != "" {
		dir := l.cpuacct + rel
		if want&hasCPUUsage != 0 {
			if u, _, ok := r.readUint(dir, "cpuacct.usage", false); ok {
				s.cpuUsage = float64(u) / 1e9
				s.set(hasCPUUsage)
			}
		}
		if want&hasCPUUser != 0 {
			if u, _, ok := r.readUint(dir, "cpuacct.usage_user", false); ok {
				s.cpuUser = float64(u) / 1e9
				s.set(hasCPUUser)
			}
		}
		if want&hasCPUSystem != 0 {
			if u, _, ok := r.readUint(dir, "cpuacct.usage_sys", false); ok {
				s.cpuSystem = float64(u) / 1e9
				s.set(hasCPUSystem)
			}
		}
	}
	if l.cpu != "" && want&v1CPUStatField != 0 {
		f := r.readKeyed(l.cpu+rel, "cpu.stat", v1CPUKeys, v[:])
		s.periods, s.throttled, s.throttledTime = v[0], v[1], float64(v[2])/1e9
		s.has |= f << 3 // to hasPeriods, hasThrottled, hasThrottledTime
	}
	if l.memory != "" {
		dir := l.memory + rel
		if want&hasMemUsage != 0 {
			if u, _, ok := r.readUint(dir, "memory.usage_in_bytes", false); ok {
				s.memUsage = u
				s.set(hasMemUsage)
			}
		}
		if want&hasMemLimit != 0 {
			if u, _, ok := r.readUint(dir, "memory.limit_in_bytes", false); ok && u < unlimited {
				s.memLimit = u
				s.set(hasMemLimit)
			}
		}
		if want&memStatFields != 0 {
			r.readMemStat(&s, dir, v1MemKeys)
		}
		if want&hasOOMKills != 0 && r.readKeyed(dir, "memory.oom_control", oomKillKeys, v[:1]) != 0 {
			s.oomKills = v[0]
			s.set(hasOOMKills)
		}
		if want&hasLimitHits != 0 {
			if u, _, ok := r.readUint(dir, "memory.failcnt", false); ok {
				s.limitHits = u
				s.set(hasLimitHits)
			}
		}
	}
	if l.v2 != "" {
		r.readPressure(&s, l.v2+rel, want)
	}
	return s
}
