//go:build linux

package cgroup

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// File descriptors. A process that reaches its open-files limit
// (RLIMIT_NOFILE) fails every accept, connect and open with EMFILE while
// it looks alive to everything else. For each reported container, service
// and extra cgroup the collector reads the processes directly in it
// (cgroup.procs), counts each one's open descriptors and reads its soft
// limit from procfs, and reports the process nearest its limit. Reading a
// process costs two system calls and one small file, so the processes read
// per scrape are bounded (max_fd_processes); the ones left out are counted.

// fdUsage is the process of a cgroup nearest its open-files limit.
type fdUsage struct {
	open, limit uint64
	ok          bool
}

// fdBudget is what one scrape may still read, and what it left out.
type fdBudget struct {
	left       int
	skipped    uint64 // processes left out because the budget was spent
	unreadable uint64 // processes whose procfs entries could not be read (not gone: gone is not counted)
}

// readFDs returns the process of the cgroup at dir (a directory holding
// cgroup.procs) with the highest share of its open-files limit in use.
// procfs is the /proc the PIDs belong to.
func (r *fileReader) readFDs(dir, procfs string, b *fdBudget) fdUsage {
	data, ok := r.read(dir, "cgroup.procs")
	if !ok {
		return fdUsage{}
	}
	r.pids = r.pids[:0]
	for _, f := range bytes.Fields(data) {
		pid, err := strconv.ParseUint(string(f), 10, 32)
		if err != nil || pid == 0 { // 0: a process outside this PID namespace
			continue
		}
		r.pids = append(r.pids, uint32(pid))
	}
	var best fdUsage
	for i, pid := range r.pids {
		if b.left <= 0 {
			b.skipped += uint64(len(r.pids) - i)
			break
		}
		b.left--
		p := procfs + "/" + strconv.FormatUint(uint64(pid), 10)
		limit, err := r.nofileLimit(p)
		if err != nil {
			if err != unix.ENOENT && err != unix.ESRCH {
				b.unreadable++
			}
			continue
		}
		if limit == 0 {
			continue // unlimited: there is nothing to run out of
		}
		open, err := r.countFDs(p + "/fd")
		if err != nil {
			if err != unix.ENOENT && err != unix.ESRCH {
				b.unreadable++
			}
			continue
		}
		// Compare open/limit without division: open*best.limit > best.open*limit.
		if !best.ok || float64(open)*float64(best.limit) > float64(best.open)*float64(limit) {
			best = fdUsage{open: open, limit: limit, ok: true}
		}
	}
	return best
}

// nofileLimit reads the soft "Max open files" limit from a process's
// limits file; 0 means unlimited.
func (r *fileReader) nofileLimit(procDir string) (uint64, error) {
	data, err := r.readRaw(procDir + "/limits")
	if err != nil {
		return 0, err
	}
	const key = "Max open files"
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, unix.EINVAL
	}
	line := data[i+len(key):]
	if j := bytes.IndexByte(line, '\n'); j >= 0 {
		line = line[:j]
	}
	f := bytes.Fields(line)
	if len(f) < 1 {
		return 0, unix.EINVAL
	}
	if string(f[0]) == "unlimited" {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil {
		return 0, unix.EINVAL
	}
	return n, nil
}

// countFDs counts the entries of a process's fd directory. Since Linux 6.2
// the directory's size is that count (one stat); before, it is 0 and the
// entries are read and counted.
func (r *fileReader) countFDs(dir string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return 0, err
	}
	if st.Size > 0 {
		return uint64(st.Size), nil
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var n uint64
	for {
		m, err := unix.ReadDirent(fd, r.buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if m == 0 {
			break
		}
		// Each record: ino (8), off (8), reclen (2), type (1), name.
		for b := r.buf[:m]; len(b) >= 19; {
			reclen := int(uint16(b[16]) | uint16(b[17])<<8)
			if reclen < 19 || reclen > len(b) {
				break
			}
			if name := b[19:reclen]; !bytes.HasPrefix(name, []byte(".\x00")) && !bytes.HasPrefix(name, []byte("..\x00")) {
				n++
			}
			b = b[reclen:]
		}
	}
	return n, nil
}

// readRaw reads a file into the reader's buffer, returning the errno of a
// failure instead of reporting it: for procfs files, where a vanished
// process is normal.
func (r *fileReader) readRaw(p string) ([]byte, error) {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	for err == unix.EINTR {
		fd, err = unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, err
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
			return nil, err
		}
		if m == 0 {
			return r.buf[:n], nil
		}
		n += m
	}
}
