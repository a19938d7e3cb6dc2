package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kindApp is a running fault app for TestKindModes and TestNoiseModes.
type kindApp struct {
	t           *testing.T
	cmd         *exec.Cmd
	addr, caddr string
	c           *http.Client
	// exited is closed when the process has exited, with err its status.
	exited chan struct{}
	err    error
}

func startKindApp(t *testing.T, bin string, env ...string) *kindApp {
	t.Helper()
	a := &kindApp{t: t, addr: freeAddr(t), caddr: freeAddr(t),
		c: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	a.cmd = exec.Command(bin)
	a.cmd.Env = append([]string{"FAULTS_ADDR=" + a.addr, "FAULTS_CONTROL_ADDR=" + a.caddr}, env...)
	var stderr strings.Builder
	a.cmd.Stderr = &stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.exited = make(chan struct{})
	go func() { a.err = a.cmd.Wait(); close(a.exited) }()
	t.Cleanup(func() {
		_ = a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("fault app's stderr:\n%s", stderr.String())
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _ := a.get(context.Background()); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the fault app does not answer 200 10 s after start")
		}
	}
	return a
}

// get returns the status code and body of GET /, or an error.
func (a *kindApp) get(ctx context.Context) (int, string) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+"/", nil)
	resp, err := a.c.Do(req)
	if err != nil {
		return -1, err.Error()
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// mode sets the mode over the control endpoint (which answers once the app
// has switched to it).
func (a *kindApp) mode(m string) {
	a.t.Helper()
	req, _ := http.NewRequest(http.MethodPut, "http://"+a.caddr+"/mode", strings.NewReader(m))
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("PUT /mode %s: %v", m, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		a.t.Fatalf("PUT /mode %s: %s", m, resp.Status)
	}
}

// procStatus returns a field of /proc/<pid>/status in kB.
func (a *kindApp) procStatus(field string) int64 {
	a.t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/status")
	if err != nil {
		a.t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	a.t.Fatalf("no %s in /proc/<pid>/status", field)
	return 0
}

// cpuTicks returns the process's user+system CPU time in clock ticks.
func (a *kindApp) cpuTicks() int64 {
	a.t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/stat")
	if err != nil {
		a.t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func (a *kindApp) openFDs() int {
	a.t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(a.cmd.Process.Pid) + "/fd")
	if err != nil {
		a.t.Fatal(err)
	}
	return len(ents)
}

// TestKindModes runs the built fault app in each mode of the suite's kinds
// of failure and checks, from outside, what the mode is for.
func TestKindModes(t *testing.T) {
	bin := buildApp(t)

	t.Run("hang", func(t *testing.T) {
		a := startKindApp(t, bin)
		a.mode("hang")
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if code, msg := a.get(ctx); code != -1 || !strings.Contains(msg, "deadline exceeded") {
			t.Errorf("hang: got %d %q, want no answer until the client gave up", code, msg)
		}
		if err := a.cmd.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("hang: the process is gone: %v", err)
		}
		a.mode("ok")
		if code, _ := a.get(context.Background()); code != 200 {
			t.Errorf("back to ok: %d, want 200", code)
		}
	})

	t.Run("memhold", func(t *testing.T) {
		a := startKindApp(t, bin, "FAULTS_MEMHOLD_BYTES="+strconv.Itoa(48<<20))
		before := a.procStatus("VmRSS")
		a.mode("memhold")
		// The mode is entered after PUT /mode answers: wait for the set.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			after := a.procStatus("VmRSS")
			if after-before >= 46<<10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("memhold: resident set %d kB -> %d kB, want 48 MiB more", before, after)
			}
		}
		if code, _ := a.get(context.Background()); code != 200 {
			t.Errorf("memhold: service answers %d, want 200", code)
		}
	})

	t.Run("memhold churn", func(t *testing.T) {
		dir := t.TempDir()
		a := startKindApp(t, bin, "FAULTS_MEMHOLD_BYTES="+strconv.Itoa(8<<20), "FAULTS_MEMHOLD_CHURN="+strconv.Itoa(3<<20+5), "FAULTS_MEMHOLD_DIR="+dir)
		a.mode("memhold")
		// The churn file is written whole, then read over and over: the
		// process's read bytes grow by many times its size.
		var st os.FileInfo
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var err error
			if st, err = os.Stat(filepath.Join(dir, "churn")); err == nil && st.Size() == 3<<20+5 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("memhold: no churn file of 3 MiB + 5 bytes in %s: %v", dir, st)
			}
		}
		read := func() int64 {
			b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(a.cmd.Process.Pid), "io"))
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "rchar: "); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					return n
				}
			}
			t.Fatal("no rchar in /proc/PID/io")
			return 0
		}
		first := read()
		for deadline := time.Now().Add(10 * time.Second); read()-first < 10*st.Size(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("memhold: read %d bytes in 10 s, want the churn file read ten times over", read()-first)
			}
		}
		a.mode("ok") // the reader stops with the mode
	})

	t.Run("cpuburn", func(t *testing.T) {
		a := startKindApp(t, bin, "GOMAXPROCS=1")
		idle := a.cpuTicks()
		time.Sleep(300 * time.Millisecond)
		idle = a.cpuTicks() - idle
		a.mode("cpuburn")
		busy := a.cpuTicks()
		time.Sleep(300 * time.Millisecond)
		busy = a.cpuTicks() - busy
		// 300 ms is 30 ticks at 100 Hz; a busy loop on a shared machine gets
		// at least some of them, an idle process none or one.
		if busy < 5 || busy <= idle {
			t.Errorf("cpuburn: %d ticks in the window (idle: %d), want the process busy", busy, idle)
		}
		if code, _ := a.get(context.Background()); code != 200 {
			t.Errorf("cpuburn: service answers %d, want 200", code)
		}
		a.mode("ok")
	})

	t.Run("fdleak", func(t *testing.T) {
		a := startKindApp(t, bin, "FAULTS_FDLIMIT=128")
		a.mode("fdleak")
		for range 3 {
			code, msg := a.get(context.Background())
			if code != 500 || !strings.Contains(msg, "too many open files") {
				t.Errorf("fdleak: got %d %q, want 500 with too many open files", code, msg)
			}
		}
		if n := a.openFDs(); n < 120 {
			t.Errorf("fdleak: %d descriptors open, want near the limit 128", n)
		}
		if code, _ := a.get(context.Background()); code != 500 {
			t.Errorf("fdleak: still serving errors: %d, want 500", code)
		}
	})

	t.Run("slow", func(t *testing.T) {
		dep := startKindApp(t, bin, "FAULTS_SLOW=400ms")
		caller := startKindApp(t, bin, "FAULTS_CALL=http://"+dep.addr+"/")
		dep.mode("slow")
		start := time.Now()
		code, _ := caller.get(context.Background())
		if took := time.Since(start); code != 200 || took < 400*time.Millisecond {
			t.Errorf("slow dependency: the caller answered %d after %v, want 200 after the dependency's 400ms", code, took)
		}
	})

	t.Run("fill", func(t *testing.T) {
		dir := t.TempDir()
		a := startKindApp(t, bin, "FAULTS_FILL_DIR="+dir, "FAULTS_FILL_BYTES="+strconv.Itoa(5<<20+17))
		a.mode("fill")
		p := filepath.Join(dir, "fill")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			fi, err := os.Stat(p)
			if err == nil && fi.Size() == 5<<20+17 {
				break
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
				t.Fatalf("fill: %v, size %v; want %d bytes written", err, fi, 5<<20+17)
			}
		}
		if code, _ := a.get(context.Background()); code != 200 {
			t.Errorf("fill: service answers %d, want 200", code)
		}
	})
}
