package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hangServer is the web helper's handler on a real loopback server, with
// a count of the requests it holds at the moment and the most it held.
type hangServer struct {
	mode          webMode
	held, maxHeld atomic.Int64
	srv           *httptest.Server
}

func newHangServer(t *testing.T) *hangServer {
	t.Helper()
	h := &hangServer{}
	h.mode.set("ok")
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := h.held.Add(1)
		for m := h.maxHeld.Load(); n > m && !h.maxHeld.CompareAndSwap(m, n); m = h.maxHeld.Load() {
		}
		defer h.held.Add(-1)
		h.mode.serve(w, r)
	}))
	t.Cleanup(func() {
		h.mode.set("ok") // let the hung handlers go, or Close waits for them
		h.srv.Close()
	})
	return h
}

// waitFor polls cond every 10 ms; the deadline only bounds a broken run
// (a load generator that never gets there), it measures nothing.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// In hang mode the helper reads each request and never answers it: the
// client gets nothing until it gives up; "ok" cuts the held requests
// without an answer (as a restart would) and answers the next ones 200.
func TestWebHelperHangs(t *testing.T) {
	h := newHangServer(t)
	get := func(ctx context.Context) (string, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, h.srv.URL, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Status + " " + strings.TrimSpace(string(b)), nil
	}
	if got, err := get(t.Context()); err != nil || got != "200 OK ok" {
		t.Fatalf("healthy: %q, %v", got, err)
	}
	h.mode.set("hang")
	// A client that gives up gets no answer.
	ctx, cancel := context.WithCancel(t.Context())
	gaveUp := make(chan error, 1)
	go func() { _, err := get(ctx); gaveUp <- err }()
	waitFor(t, "the first request to be held", func() bool { return h.held.Load() == 1 })
	cancel()
	if err := <-gaveUp; err == nil {
		t.Fatal("a hung server answered")
	}
	waitFor(t, "the handler to notice the client gave up", func() bool { return h.held.Load() == 0 })
	// A held request is cut, not answered, when the hang ends.
	cut := make(chan string, 1)
	go func() {
		got, err := get(t.Context())
		if err != nil {
			got = "error"
		}
		cut <- got
	}()
	waitFor(t, "the second request to be held", func() bool { return h.held.Load() == 1 })
	h.mode.set("ok")
	if got := <-cut; got != "error" {
		t.Errorf("a request held by the hang got the answer %q, want none (connection closed)", got)
	}
	if got, err := get(t.Context()); err != nil || got != "200 OK ok" {
		t.Errorf("after ok: %q, %v", got, err)
	}
	h.mode.set("5xx")
	if got, err := get(t.Context()); err != nil || !strings.HasPrefix(got, "500 ") {
		t.Errorf("5xx: %q, %v", got, err)
	}
}

// The open-loop load keeps sending while earlier requests wait: a hung
// server holds many at once (a one-at-a-time load would hold one), never
// more than the bound, and the sends due beyond it are counted as
// skipped. Answered and given-up requests are counted too.
func TestOpenLoopLoad(t *testing.T) {
	h := newHangServer(t)
	w := &webServer{addr: strings.TrimPrefix(h.srv.URL, "http://")}
	const bound = 5
	run := func(timeout time.Duration, until func() bool) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { defer close(done); w.loadOpen(ctx, 200, bound, timeout) }()
		waitFor(t, "the load", until)
		cancel()
		<-done
	}
	run(time.Minute, func() bool { return w.ok.Load() >= 20 })
	if w.failed.Load() != 0 || w.skipped.Load() != 0 || w.timedOut.Load() != 0 {
		t.Errorf("healthy server: failed %d skipped %d timed out %d, want none", w.failed.Load(), w.skipped.Load(), w.timedOut.Load())
	}
	h.mode.set("hang")
	run(time.Minute, func() bool { return w.skipped.Load() >= 3 })
	if got := h.maxHeld.Load(); got != bound {
		t.Errorf("a hung server held at most %d requests at once, want the bound %d", got, bound)
	}
	// A short client timeout: the requests are given up and counted so.
	run(50*time.Millisecond, func() bool { return w.timedOut.Load() >= 3 })
	if got := h.maxHeld.Load(); got > bound {
		t.Errorf("held %d requests at once, over the bound %d", got, bound)
	}
}
