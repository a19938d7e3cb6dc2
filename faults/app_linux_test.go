package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fault app is this test binary started again with appEnv set: a small
// HTTP service whose behaviour the suite changes from outside by writing a
// mode into a control file, the way a real fault appears in a real service
// without a restart. Modes:
//
//	ok      answer 200 (after calling the dependency, if any)
//	5xx     answer 503
//	crash   exit with code 3 (at start, and as soon as the mode is seen)
//	oom     allocate and touch memory until the OOM killer ends the process
//	refuse  close the listener: connections are refused
const appEnv = "VIGIL_FAULTS_APP"

// Settings of the fault app, passed through the environment.
const (
	envAddr    = "FAULTS_ADDR"    // ip:port to listen on
	envControl = "FAULTS_CONTROL" // comma-separated control files; the first that exists wins
	envCall    = "FAULTS_CALL"    // URL of a dependency to call for every request
	envWorkers = "FAULTS_WORKERS" // requests served at once (0: no limit)
	envService = "FAULTS_SERVICE" // time each request takes to serve (a Go duration)
)

func readMode(files []string) string {
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			if m := strings.TrimSpace(string(b)); m != "" {
				return m
			}
		}
	}
	return "ok"
}

// leak allocates and touches memory until the process is killed.
func leak() {
	var keep [][]byte
	for {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		//lint:ignore SA4010 keep holds the pages so that the memory limit is reached.
		keep = append(keep, b)
		time.Sleep(time.Millisecond)
	}
}

func runApp() int {
	files := strings.Split(os.Getenv(envControl), ",")
	mode := readMode(files)
	switch mode {
	case "crash":
		fmt.Fprintln(os.Stderr, "fault app: crashing (mode crash)")
		return 3
	case "oom":
		leak()
	}
	workers, _ := strconv.Atoi(os.Getenv(envWorkers))
	service, _ := time.ParseDuration(os.Getenv(envService))
	var sem chan struct{}
	if workers > 0 {
		sem = make(chan struct{}, workers)
	}
	dep := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	call := os.Getenv(envCall)

	var cur sync.Mutex
	current := mode
	getMode := func() string { cur.Lock(); defer cur.Unlock(); return current }
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
		if getMode() == "5xx" {
			http.Error(w, "fault injected: 5xx", http.StatusServiceUnavailable)
			return
		}
		if call != "" {
			resp, err := dep.Get(call)
			if err != nil {
				http.Error(w, "dependency: "+err.Error(), http.StatusBadGateway)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 500 {
				http.Error(w, "dependency answered "+resp.Status, http.StatusBadGateway)
				return
			}
		}
		_, _ = io.WriteString(w, "ok\n")
	})
	addr := os.Getenv(envAddr)
	var (
		ln  net.Listener
		srv *http.Server
	)
	listen := func() error {
		var err error
		for i := 0; i < 100; i++ { // the previous process may still hold the port
			if ln, err = net.Listen("tcp", addr); err == nil {
				srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
				go func(s *http.Server, l net.Listener) { _ = s.Serve(l) }(srv, ln)
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return err
	}
	if mode != "refuse" {
		if err := listen(); err != nil {
			fmt.Fprintln(os.Stderr, "fault app:", err)
			return 1
		}
	}
	for range time.Tick(50 * time.Millisecond) {
		m := readMode(files)
		cur.Lock()
		current = m
		cur.Unlock()
		switch m {
		case "crash":
			fmt.Fprintln(os.Stderr, "fault app: crashing (mode crash)")
			return 3
		case "oom":
			leak()
		case "refuse":
			if srv != nil {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = srv.Shutdown(ctx)
				cancel()
				srv, ln = nil, nil
			}
		default:
			if srv == nil {
				if err := listen(); err != nil && !errors.Is(err, net.ErrClosed) {
					fmt.Fprintln(os.Stderr, "fault app:", err)
					return 1
				}
			}
		}
	}
	return 0
}
