package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// webHelperArg makes this binary the benchmark's web server (see
// runWebHelper) instead of the driver.
const webHelperArg = "web-server"

// runWebHelper is the HTTP service of the 5xx scenario, run as a child of
// the driver: it moves itself into the cgroup whose cgroup.procs file is
// args[0] before it serves anything, prints its listen address, then
// answers every request 200 — or 500 after a "5xx" line on standard input,
// until an "ok" line. It exits when standard input closes.
func runWebHelper(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: faultbench web-server CGROUP.PROCS")
		return 2
	}
	if err := os.WriteFile(args[0], []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "web-server:", err)
		return 1
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "web-server:", err)
		return 1
	}
	var failing atomic.Bool
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "injected fault", http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "5xx":
			failing.Store(true)
		case "ok":
			failing.Store(false)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return 0
}

// webServer is one running web helper and the load on it.
type webServer struct {
	unit  string
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	ok, errors5xx, failed atomic.Int64 // answers seen by the load generator
}

// set switches the server's answers: "5xx" or "ok".
func (w *webServer) set(mode string) error {
	_, err := io.WriteString(w.stdin, mode+"\n")
	return err
}

// startWeb starts the web helper in unit's cgroup and waits for its address.
func startWeb(cg *cgroups, unit string) (*webServer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	w := &webServer{unit: unit, done: make(chan struct{})}
	w.cmd = exec.Command(exe, webHelperArg, cg.dir(unit)+"/cgroup.procs")
	w.cmd.Stderr = os.Stderr
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := w.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	go func() { _ = w.cmd.Wait(); close(w.done) }()
	if err != nil {
		w.stop()
		return nil, fmt.Errorf("%s: no listen address: %w", unit, err)
	}
	w.addr = strings.TrimSpace(line)
	return w, nil
}

// stop closes the server's standard input (it shuts down and exits 0) and
// kills it if it has not exited within 10 s.
func (w *webServer) stop() {
	_ = w.stdin.Close()
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

// load sends GET / to the server every 1/rps seconds, one at a time on a
// keep-alive connection, until ctx ends.
func (w *webServer) load(ctx context.Context, rps float64) {
	tr := &http.Transport{MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	t := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.addr+"/", nil)
		if err != nil {
			w.failed.Add(1)
			continue
		}
		resp, err := cl.Do(req)
		if err != nil {
			if !errors.Is(ctx.Err(), context.Canceled) {
				w.failed.Add(1)
			}
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			w.errors5xx.Add(1)
		} else {
			w.ok.Add(1)
		}
	}
}
