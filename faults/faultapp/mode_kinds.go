package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The modes for the suite's six kinds of failure:
//
//	hang     read each request and never answer it (the connection stays open
//	         until the client gives up); the process stays alive
//	memhold  hold a working set just under the container's memory limit
//	         (cgroup memory.max less FAULTS_MEMHOLD_MARGIN, default 8 MiB; or
//	         FAULTS_MEMHOLD_BYTES when set), touched so it stays resident, and
//	         go on serving; held until the process ends. With
//	         FAULTS_MEMHOLD_CHURN (bytes) it also writes a file that large in
//	         FAULTS_MEMHOLD_DIR and reads it again and again while the mode
//	         holds: its page cache pushes the cgroup against its limit, so the
//	         kernel reclaims on every read and the tasks stall, as a service
//	         whose working set sits at its limit does, without an OOM kill
//	cpuburn  keep every CPU the process may use busy while the mode holds, so
//	         under a CPU quota the process is throttled and answers slowly
//	fdleak   open descriptors until EMFILE and keep them; every request then
//	         answers 500 with the open error (FAULTS_FDLIMIT, if set, is the
//	         soft RLIMIT_NOFILE the app sets at start)
//	slow     answer every request after FAULTS_SLOW (default 1.5s): a slow
//	         dependency for a replica whose FAULTS_CALL points at it
//	fill     write FAULTS_FILL_DIR/fill in 1 MiB chunks until the filesystem
//	         is full (ENOSPC) or FAULTS_FILL_BYTES are written, then keep the
//	         file and go on serving
func init() {
	register("hang", Mode{Handle: func(_ *App, w http.ResponseWriter, r *http.Request) bool {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		<-r.Context().Done()
		return true
	}})
	register("memhold", Mode{Enter: func(a *App) int {
		if err := memhold(); err != nil {
			fmt.Fprintln(os.Stderr, "fault app: memhold:", err)
		}
		if err := memchurn(a); err != nil {
			fmt.Fprintln(os.Stderr, "fault app: memhold:", err)
		}
		return -1
	}})
	register("cpuburn", Mode{Enter: func(a *App) int {
		for range runtime.GOMAXPROCS(0) {
			go func() {
				for n := 0; ; n++ {
					if n%(1<<20) == 0 && a.Mode() != "cpuburn" {
						return
					}
				}
			}()
		}
		return -1
	}})
	register("fdleak", Mode{
		Enter: func(*App) int {
			// Leave two so that the next connection can be accepted.
			_ = fdleakFill()
			fdleakRelease(2)
			return -1
		},
		Handle: func(_ *App, w http.ResponseWriter, _ *http.Request) bool {
			err := fdleakFill()
			http.Error(w, "fault injected: "+err.Error(), http.StatusInternalServerError)
			// Give back two so that the next connection can be accepted
			// and served its error.
			fdleakRelease(2)
			return true
		},
	})
	register("slow", Mode{Handle: func(_ *App, _ http.ResponseWriter, r *http.Request) bool {
		d := 1500 * time.Millisecond
		if v, err := time.ParseDuration(os.Getenv("FAULTS_SLOW")); err == nil {
			d = v
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		return false
	}})
	register("fill", Mode{Enter: func(*App) int {
		go func() {
			n, err := fill(os.Getenv("FAULTS_FILL_DIR"), os.Getenv("FAULTS_FILL_BYTES"))
			fmt.Fprintf(os.Stderr, "fault app: fill: %d bytes written: %v\n", n, err)
		}()
		return -1
	}})
	if v := os.Getenv("FAULTS_FDLIMIT"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err == nil {
			var lim syscall.Rlimit
			if err = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
				lim.Cur = min(n, lim.Max)
				err = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "fault app: FAULTS_FDLIMIT=%q: %v\n", v, err)
		}
	}
}

var (
	held   []byte
	leakMu sync.Mutex
	leaked []*os.File
)

func memhold() error {
	var size int64
	if v := os.Getenv("FAULTS_MEMHOLD_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("FAULTS_MEMHOLD_BYTES=%q: %w", v, err)
		}
		size = n
	} else {
		b, err := os.ReadFile("/sys/fs/cgroup/memory.max")
		if err != nil {
			return err
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return errors.New("the cgroup has no memory limit (memory.max is max) and FAULTS_MEMHOLD_BYTES is not set")
		}
		limit, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("memory.max %q: %w", s, err)
		}
		margin := int64(8 << 20)
		if v := os.Getenv("FAULTS_MEMHOLD_MARGIN"); v != "" {
			if margin, err = strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("FAULTS_MEMHOLD_MARGIN=%q: %w", v, err)
			}
		}
		size = limit - margin
	}
	if size <= int64(len(held)) {
		return nil
	}
	b := make([]byte, size)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	held = b
	return nil
}

// fdleakFill opens /dev/null until the open fails (EMFILE once the limit is
// reached) and returns that error.
func fdleakFill() error {
	leakMu.Lock()
	defer leakMu.Unlock()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return err
		}
		leaked = append(leaked, f)
	}
}

func fdleakRelease(n int) {
	leakMu.Lock()
	defer leakMu.Unlock()
	for ; n > 0 && len(leaked) > 0; n-- {
		leaked[len(leaked)-1].Close()
		leaked = leaked[:len(leaked)-1]
	}
}

func fill(dir, maxBytes string) (int64, error) {
	if dir == "" {
		return 0, errors.New("FAULTS_FILL_DIR is not set")
	}
	var limit int64 = -1
	if maxBytes != "" {
		n, err := strconv.ParseInt(maxBytes, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("FAULTS_FILL_BYTES=%q: %w", maxBytes, err)
		}
		limit = n
	}
	f, err := os.OpenFile(filepath.Join(dir, "fill"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	chunk := make([]byte, 1<<20)
	for i := range chunk {
		chunk[i] = 0xa5
	}
	var n int64
	for limit < 0 || n < limit {
		c := chunk
		if limit >= 0 && limit-n < int64(len(c)) {
			c = c[:limit-n]
		}
		w, err := f.Write(c)
		n += int64(w)
		if err != nil {
			_ = f.Sync()
			return n, err
		}
	}
	return n, f.Sync()
}

// memchurn writes FAULTS_MEMHOLD_CHURN bytes to FAULTS_MEMHOLD_DIR/churn and
// reads the file over and over while the app is in mode memhold.
func memchurn(a *App) error {
	v := os.Getenv("FAULTS_MEMHOLD_CHURN")
	if v == "" {
		return nil
	}
	size, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return fmt.Errorf("FAULTS_MEMHOLD_CHURN=%q: %w", v, err)
	}
	p := filepath.Join(os.Getenv("FAULTS_MEMHOLD_DIR"), "churn")
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for n := int64(0); n < size; n += int64(len(buf)) {
		if _, err := f.Write(buf[:min(int64(len(buf)), size-n)]); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	go func() {
		for a.Mode() == "memhold" {
			r, err := os.Open(p)
			if err != nil {
				fmt.Fprintln(os.Stderr, "fault app: memhold churn:", err)
				return
			}
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
			r.Close()
		}
	}()
	return nil
}
