// Command faultapp is the fault suite's workload: a small HTTP service whose
// behaviour the suite changes from outside, while it runs, the way a real
// fault appears in a real service without a restart. It is built into an
// image with testenv.GoImage (the binary at /faultapp) and run by the suite
// (see package faults).
//
// The behaviour is a mode, read from a control file (FAULTS_CONTROL:
// comma-separated files, the first that exists and is not empty wins),
// polled every 50 ms, or set over HTTP on the control address
// (FAULTS_CONTROL_ADDR: PUT /mode with the mode's name as the body, answered
// 204 once the mode is in effect or after 2 s; GET /mode to read it; a mode set over HTTP wins over the files until it is set back
// to the empty string). An unknown mode is reported on stderr and ignored.
//
// Adding a mode: write faults/faultapp/mode_<name>.go with an init function
// that calls register("<name>", Mode{...}) (see [Mode] and mode_base.go for
// the built-in modes). Nothing else needs to change; the suite injects it by
// writing "<name>" into the control file.
//
// Settings, all from the environment:
//
//	FAULTS_ADDR          ip:port to serve on (default :8080)
//	FAULTS_CONTROL       control files (see above)
//	FAULTS_CONTROL_ADDR  ip:port of the control endpoint (empty: none)
//	FAULTS_CALL          URL of a dependency to call for every request
//	FAULTS_WORKERS       requests served at once (0: no limit)
//	FAULTS_SERVICE       time each request takes to serve (a Go duration)
//	FAULTS_MODE          the mode to start in when no control says otherwise (default ok)
//
// The noisy but healthy modes (slowburst, restart; see mode_noise.go) read:
//
//	FAULTS_BURST_EVERY     how often slowburst's burst comes (default 1m)
//	FAULTS_BURST_FOR       how long a burst lasts (default 2.5s)
//	FAULTS_BURST_DELAY     how long each answer waits in a burst (default 1.5s)
//	FAULTS_RESTART_EVERY   time in mode restart before a clean exit 0 (default 45s)
//
// SIGTERM or SIGINT stops the app cleanly: it stops listening, finishes the
// requests in flight (at most 5 s) and exits 0.
//
// The modes for the suite's kinds of failure (hang, memhold, cpuburn, fdleak,
// slow, fill; see mode_kinds.go) read more settings:
//
//	FAULTS_MEMHOLD_BYTES   bytes memhold holds (default: memory.max less the margin)
//	FAULTS_MEMHOLD_MARGIN  bytes memhold leaves under memory.max (default 8 MiB)
//	FAULTS_MEMHOLD_CHURN   bytes of a file memhold reads again and again (default none)
//	FAULTS_MEMHOLD_DIR     directory of that file
//	FAULTS_FDLIMIT         soft RLIMIT_NOFILE set at start (fdleak's ceiling)
//	FAULTS_SLOW            time slow waits before answering (default 1.5s)
//	FAULTS_FILL_DIR        directory fill writes its file into
//	FAULTS_FILL_BYTES      bytes fill writes at most (default: until ENOSPC)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mode is one behaviour of the fault app.
type Mode struct {
	// Refuse closes the listener while the mode holds: new connections are
	// refused. It is opened again when a mode without Refuse comes.
	Refuse bool
	// Enter, if set, runs when the app enters the mode (at start or when the
	// control changes to it), on the control loop. It returns the exit code
	// the process must end with, or -1 to go on. It may block for ever (an
	// allocation loop until the OOM killer comes).
	Enter func(a *App) int
	// Handle, if set, serves every request while the mode holds, after the
	// worker queue and the service time, instead of the normal answer (200
	// after the dependency call). It returns false to fall through to the
	// normal answer.
	Handle func(a *App, w http.ResponseWriter, r *http.Request) bool
}

var modes = map[string]Mode{}

// register adds a mode; it is called from init functions. Registering a name
// twice is a programming error and panics.
func register(name string, m Mode) {
	if _, dup := modes[name]; dup {
		panic("faultapp: mode " + name + " registered twice")
	}
	modes[name] = m
}

// App is the running service, handed to modes.
type App struct {
	Call string       // dependency URL (FAULTS_CALL), or empty
	Dep  *http.Client // client for the dependency

	mu       sync.Mutex
	mode     string
	httpMode string // set over the control endpoint; wins when not empty

	stop     chan struct{} // closed by Stop
	stopOnce sync.Once
}

// Stop asks the app to shut down cleanly and exit 0, as on SIGTERM.
func (a *App) Stop() { a.stopOnce.Do(func() { close(a.stop) }) }

// Mode returns the current mode's name.
func (a *App) Mode() string { a.mu.Lock(); defer a.mu.Unlock(); return a.mode }

// answer is the normal answer: call the dependency if any, then 200.
func (a *App) answer(w http.ResponseWriter) {
	if a.Call != "" {
		resp, err := a.Dep.Get(a.Call)
		if err != nil {
			http.Error(w, "dependency: "+err.Error(), http.StatusBadGateway)
			return
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			http.Error(w, "dependency answered "+resp.Status, http.StatusBadGateway)
			return
		}
	}
	_, _ = io.WriteString(w, "ok\n")
}

// readMode returns the mode the control files ask for, def when none does,
// or current when a file could not be read for another reason than its
// absence (no descriptor left in mode fdleak).
func readMode(files []string, def, current string) string {
	for _, f := range files {
		if f == "" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) && current != "" {
			return current
		}
		if m := strings.TrimSpace(string(b)); err == nil && m != "" {
			return m
		}
	}
	return def
}

func modeNames() string {
	var n []string
	for k := range modes {
		n = append(n, k)
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

func main() { os.Exit(run()) }

func run() int {
	files := strings.Split(os.Getenv("FAULTS_CONTROL"), ",")
	def := os.Getenv("FAULTS_MODE")
	if def == "" {
		def = "ok"
	}
	addr := os.Getenv("FAULTS_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	workers, _ := strconv.Atoi(os.Getenv("FAULTS_WORKERS"))
	service, _ := time.ParseDuration(os.Getenv("FAULTS_SERVICE"))
	a := &App{
		Call: os.Getenv("FAULTS_CALL"),
		Dep:  &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		stop: make(chan struct{}),
	}
	// SIGTERM (the kubelet stopping the container) and SIGINT: a clean
	// shutdown and exit 0, as a well-behaved service does.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; a.Stop() }()
	var sem chan struct{}
	if workers > 0 {
		sem = make(chan struct{}, workers)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if sem != nil {
			// Queue for a worker; a client that gave up is not served
			// (as a server with a request deadline would do).
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-r.Context().Done():
				return
			}
		}
		if service > 0 {
			time.Sleep(service)
		}
		if m, ok := modes[a.Mode()]; ok && m.Handle != nil && m.Handle(a, w, r) {
			return
		}
		a.answer(w)
	})

	if caddr := os.Getenv("FAULTS_CONTROL_ADDR"); caddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/mode", func(w http.ResponseWriter, r *http.Request) {
			switch r.Method {
			case http.MethodGet:
				_, _ = io.WriteString(w, a.Mode()+"\n")
			case http.MethodPut, http.MethodPost:
				b, err := io.ReadAll(io.LimitReader(r.Body, 256))
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadRequest)
					return
				}
				m := strings.TrimSpace(string(b))
				if _, ok := modes[m]; m != "" && !ok {
					http.Error(w, "unknown mode "+strconv.Quote(m)+"; known: "+modeNames(), http.StatusBadRequest)
					return
				}
				a.mu.Lock()
				a.httpMode = m
				a.mu.Unlock()
				// Answer once the main loop has switched (it looks every
				// 50 ms), so that a caller's next request meets the new
				// mode: the real-node test saw a 200 right after setting 5xx.
				for deadline := time.Now().Add(2 * time.Second); m != "" && a.Mode() != m && time.Now().Before(deadline); {
					time.Sleep(10 * time.Millisecond)
				}
				w.WriteHeader(http.StatusNoContent)
			default:
				http.Error(w, "GET or PUT", http.StatusMethodNotAllowed)
			}
		})
		cln, err := net.Listen("tcp", caddr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fault app: control:", err)
			return 1
		}
		go func() { _ = (&http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}).Serve(cln) }()
	}

	var srv *http.Server
	listen := func() error {
		var err error
		for i := 0; i < 100; i++ { // the previous process may still hold the port
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
				go func(s *http.Server, l net.Listener) { _ = s.Serve(l) }(srv, ln)
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return err
	}

	current := ""
	warned := map[string]bool{}
	for {
		a.mu.Lock()
		want := a.httpMode
		a.mu.Unlock()
		if want == "" {
			want = readMode(files, def, current)
		}
		m, ok := modes[want]
		if !ok {
			if !warned[want] {
				fmt.Fprintf(os.Stderr, "fault app: unknown mode %q ignored; known: %s\n", want, modeNames())
				warned[want] = true
			}
			want, m = current, modes[current]
		}
		if want != current {
			fmt.Fprintf(os.Stderr, "fault app: mode %s\n", want)
			a.mu.Lock()
			a.mode = want
			a.mu.Unlock()
			current = want
			if m.Refuse && srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = srv.Shutdown(ctx)
				cancel()
				srv = nil
			}
			if m.Enter != nil {
				if code := m.Enter(a); code >= 0 {
					return code
				}
			}
		}
		if !m.Refuse && srv == nil {
			if err := listen(); err != nil && !errors.Is(err, net.ErrClosed) {
				fmt.Fprintln(os.Stderr, "fault app:", err)
				return 1
			}
		}
		select {
		case <-a.stop:
			// Stop listening and finish the requests in flight; a request
			// that never ends (mode hang) is given 5 s.
			if srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = srv.Shutdown(ctx)
				cancel()
			}
			fmt.Fprintln(os.Stderr, "fault app: stopped")
			return 0
		case <-time.After(50 * time.Millisecond):
		}
	}
}
