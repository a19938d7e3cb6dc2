// Command webapp is the workload the deploy tests run on the real node
// (deploy/node_test.go): a real HTTP server and, optionally, a real HTTP
// client, so that the agent sees a pod's processes, cgroups, TCP
// connections, HTTP requests and CRI log lines as it would in production.
//
// It serves on -listen (default :8080): GET / answers 200 "ok", GET /fail
// answers 500. Every request served and every client call writes one line
// to standard output starting with "webapp-request" (server) or
// "webapp-call" (client), which the kubelet turns into CRI log lines.
//
// With -target URL (or $WEBAPP_TARGET) it also calls that URL every
// -interval (default 200ms) with a fresh connection each time (so that TCP
// connects and HTTP client requests keep coming).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", ":8080", "HTTP listen address")
	target := flag.String("target", os.Getenv("WEBAPP_TARGET"), "URL to call in a loop (empty: none)")
	interval := flag.Duration("interval", 200*time.Millisecond, "time between two calls to -target")
	flag.Parse()
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("webapp-request method=%s path=%s status=200 remote=%s", r.Method, r.URL.Path, r.RemoteAddr)
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /fail", func(w http.ResponseWriter, r *http.Request) {
		log.Printf("webapp-request method=%s path=%s status=500 remote=%s", r.Method, r.URL.Path, r.RemoteAddr)
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if *target != "" {
		go callLoop(ctx, *target, *interval)
	}
	log.Printf("webapp listening on %s, target %q", *listen, *target)
	if err := srv.ListenAndServe(); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// callLoop GETs target every interval until ctx ends, each time on a new
// connection.
func callLoop(ctx context.Context, target string, interval time.Duration) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			log.Printf("webapp-call url=%s error=%q", target, err)
			return
		}
		resp, err := c.Do(req)
		if err != nil {
			log.Printf("webapp-call url=%s error=%q", target, err)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		log.Printf("webapp-call url=%s status=%d", target, resp.StatusCode)
	}
}
