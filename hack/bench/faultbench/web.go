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
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// webHelperArg makes this binary the benchmark's web server (see
// runWebHelper) instead of the driver.
const webHelperArg = "web-server"

// runWebHelper is the HTTP service of the 5xx and hang scenarios, run as a
// child of the driver: it moves itself into the cgroup whose cgroup.procs
// file is args[0] before it serves anything, prints its listen address,
// then answers every request 200 — or, after a line on standard input,
// until an "ok" line: "5xx" answers 500; "hang" reads each request and
// never answers it (the handler waits until the client gives up, then
// closes the connection without a word). "ok" ends a hang as a restart
// would: the requests it holds are cut, their connections closed
// unanswered. It exits when standard input closes.
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
	var m webMode
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(m.serve)}
	go func() { _ = srv.Serve(ln) }()
	fmt.Println(ln.Addr().String())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch line := sc.Text(); line {
		case "ok", "5xx", "hang":
			m.set(line)
		}
	}
	m.set("ok") // let the hung handlers go, or Shutdown waits for them
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	return 0
}

// webMode is how the web helper answers: "ok", "5xx" or "hang"; release
// is closed when a hang ends.
type webMode struct {
	mu      sync.Mutex
	mode    string
	release chan struct{}
}

func (m *webMode) set(mode string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mode == "hang" && mode != "hang" {
		close(m.release)
	}
	if mode == "hang" && m.mode != "hang" {
		m.release = make(chan struct{})
	}
	m.mode = mode
}

func (m *webMode) serve(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	mode, release := m.mode, m.release
	m.mu.Unlock()
	switch mode {
	case "5xx":
		http.Error(w, "injected fault", http.StatusInternalServerError)
	case "hang":
		select {
		case <-r.Context().Done(): // the client gave up
		case <-release: // the hang ended
		}
		// Close the connection without answering: returning would make
		// the server write an (empty) 200, a late answer.
		panic(http.ErrAbortHandler)
	default:
		_, _ = io.WriteString(w, "ok\n")
	}
}

// webServer is one running web helper and the load on it.
type webServer struct {
	unit  string
	addr  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}

	// What the load generator saw: answers 2xx and 5xx, requests that
	// failed otherwise (for a hang: cut when it ended), requests it gave
	// up on (client timeout), and sends it skipped because too many
	// requests were in flight (open-loop load only).
	ok, errors5xx, failed, timedOut, skipped atomic.Int64
}

// set switches the server's answers: "ok", "5xx" or "hang".
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
		w.get(ctx, cl)
	}
}

// Open-loop load (the hang scenario): at most openInFlight requests wait
// for their answers at once, each for at most openTimeout. The timeout
// outlasts Vigil's http_unanswered_after (10 s), so a hung request is
// still open when Vigil counts it in
// vigil_http_server_requests_unanswered_total (Vigil forgets a waiting
// request when its socket's descriptor number serves a new connection,
// which happens soon after the client gives up and the server closes it).
const (
	openInFlight = 512
	openTimeout  = 15 * time.Second
)

// loadOpen sends GET / to the server every 1/rps seconds whether or not
// the earlier requests were answered, each in its own goroutine, as
// callers with many requests in flight do; a hung server gets rps
// requests a second, not one per client timeout. At most inFlight wait at
// once (a send due beyond that is skipped and counted); each is given up
// after timeout; idle connections are reused. It returns once ctx has
// ended and every request has.
func (w *webServer) loadOpen(ctx context.Context, rps float64, inFlight int, timeout time.Duration) {
	tr := &http.Transport{MaxIdleConns: 64, MaxIdleConnsPerHost: 64}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: timeout}
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, inFlight)
	t := time.NewTicker(time.Duration(float64(time.Second) / rps))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			w.skipped.Add(1)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			w.get(ctx, cl)
		}()
	}
}

// get sends one GET / and counts what came of it.
func (w *webServer) get(ctx context.Context, cl *http.Client) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+w.addr+"/", nil)
	if err != nil {
		w.failed.Add(1)
		return
	}
	resp, err := cl.Do(req)
	if err != nil {
		var ne net.Error
		switch {
		case ctx.Err() != nil: // the run is over
		case errors.As(err, &ne) && ne.Timeout():
			w.timedOut.Add(1)
		default:
			w.failed.Add(1)
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		w.errors5xx.Add(1)
	} else {
		w.ok.Add(1)
	}
}
