//go:build linux

package ebpf

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// Tests in this file reproduce two kinds of failure with real processes on
// real sockets and check the signals Vigil's default alerts use: a server
// that reads requests and never answers them (a hung replica), and a
// dependency that answers, slowly.

// faultServer serves on 127.0.0.1:0 and prints its address: "hung" reads
// each request and never answers (the connection stays open), "ok"
// answers 200 at once, "5xx" answers 503 at once, and a duration answers
// 200 after it.
func faultServer(mode string) error {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	if mode == "hung" {
		var held []net.Conn
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			//lint:ignore SA4010 held keeps every accepted connection referenced, so no finalizer closes it: the server hangs, it does not hang up.
			held = append(held, c)
			go func() {
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			}()
		}
	}
	if mode == "5xx" {
		return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
		}))
	}
	var delay time.Duration
	if mode != "ok" {
		if delay, err = time.ParseDuration(mode); err != nil {
			return err
		}
	}
	return http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		_, _ = w.Write([]byte("ok"))
	}))
}

// faultGets sends n GET requests to each address of "n,addr,addr...",
// one connection each, waiting at most a second for the answer.
func faultGets(arg string) error {
	f := strings.Split(arg, ",")
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range n {
		for _, a := range f[1:] {
			resp, err := cl.Get("http://" + a + "/work")
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	return nil
}

// timeoutGets makes n GETs of "n,timeout,addr", each given up after
// timeout (a caller whose dependency answers later than it waits).
func timeoutGets(arg string) error {
	f := strings.Split(arg, ",")
	if len(f) != 3 {
		return fmt.Errorf("timeout-gets: want n,timeout,addr, got %q", arg)
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return err
	}
	timeout, err := time.ParseDuration(f[1])
	if err != nil {
		return err
	}
	cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	for range n {
		resp, err := cl.Get("http://" + f[2] + "/work")
		if err == nil {
			resp.Body.Close()
			return fmt.Errorf("%s answered within %s", f[2], timeout)
		}
	}
	return nil
}

// startServer runs a fault server helper in the cgroup at dir and returns
// its address.
func startServer(t *testing.T, dir, mode string) string {
	t.Helper()
	cmd := helperCmd(t, dir, "fault-server", mode)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("fault server %s: %v", mode, err)
	}
	return strings.TrimSpace(addr)
}

// TestHTTPUnanswered: a hung replica reads five requests and answers none;
// each is counted once in vigil_http_server_requests_unanswered_total
// after http_unanswered_after, while a healthy replica's answered requests
// are not.
func TestHTTPUnanswered(t *testing.T) { forEachHTTPHook(t, testHTTPUnanswered) }

func testHTTPUnanswered(t *testing.T, hook string) {
	cfg := spansConfig(hook)
	cfg.HTTPUnansweredAfter = time.Second
	env := startCollector(t, cfg)
	requireHTTPHook(t, env, hook)
	const hungUnit, okUnit = "vigil-ebpf-test-hung.service", "vigil-ebpf-test-answers.service"
	hung := startServer(t, testCgroup(t, hungUnit), "hung")
	ok := startServer(t, testCgroup(t, okUnit), "ok")

	// The hung server is given 300ms (it never answers); the healthy one
	// as long as a loaded machine needs.
	cl := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	patient := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for range 5 {
		if resp, err := cl.Get("http://" + hung + "/work"); err == nil {
			resp.Body.Close()
			t.Fatal("the hung server answered")
		}
		resp, err := patient.Get("http://" + ok + "/work")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	testenv.EventuallyTrue(t, 30*time.Second, "five unanswered requests of the hung replica", func() bool {
		return env.value(t, "vigil_http_server_requests_unanswered_total", map[string]string{"unit": hungUnit}) >= 5
	})
	// Counted once each: later sweeps add nothing.
	time.Sleep(2500 * time.Millisecond)
	if got := env.value(t, "vigil_http_server_requests_unanswered_total", map[string]string{"unit": hungUnit}); got != 5 {
		t.Errorf("hung replica: %v unanswered, want 5", got)
	}
	answered := env.value(t, "vigil_http_requests_total", map[string]string{"unit": okUnit, "kind": "server"})
	if answered != 5 {
		t.Errorf("healthy replica: %v answered, want 5", answered)
	}
	if got := env.value(t, "vigil_http_server_requests_unanswered_total", map[string]string{"unit": okUnit}); got != 0 {
		t.Errorf("healthy replica: %v unanswered, want 0", got)
	}
	if got := env.value(t, "vigil_http_requests_total", map[string]string{"unit": hungUnit, "kind": "server"}); got != 0 {
		t.Errorf("hung replica: %v answered requests, want 0", got)
	}
}

// TestHTTPDependencySlow: a client calls a dependency that answers after
// 300ms and one that answers at once; the per-destination time sum over
// the per-destination count gives each one's mean latency.
func TestHTTPDependencySlow(t *testing.T) { forEachHTTPHook(t, testHTTPDependencySlow) }

func testHTTPDependencySlow(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	slow := startServer(t, testCgroup(t, "vigil-ebpf-test-slowdep.service"), "300ms")
	fast := startServer(t, testCgroup(t, "vigil-ebpf-test-fastdep.service"), "ok")
	const caller = "vigil-ebpf-test-caller.service"
	cmd := helperCmd(t, testCgroup(t, caller), "fault-gets", "4,"+slow+","+fast)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("caller: %v\n%s", err, out)
	}
	mean := func(dest string) (float64, float64) {
		l := map[string]string{"unit": caller, "destination": dest, "status_class": "2xx"}
		n := env.value(t, "vigil_http_client_requests_by_destination_total", l)
		return env.value(t, "vigil_http_client_request_seconds_by_destination_total", l) / n, n
	}
	testenv.EventuallyTrue(t, 30*time.Second, "the caller's requests by destination", func() bool {
		_, a := mean(slow)
		_, b := mean(fast)
		return a >= 4 && b >= 4
	})
	ms, ns := mean(slow)
	mf, nf := mean(fast)
	if ns != 4 || nf != 4 {
		t.Errorf("requests: %v to the slow dependency, %v to the fast one; want 4 each", ns, nf)
	}
	if ms < 0.3 || ms > 3 {
		t.Errorf("slow dependency: mean %.3fs, want at least its 0.3s delay", ms)
	}
	if mf >= 0.15 {
		t.Errorf("fast dependency: mean %.3fs, want well under the slow one's delay", mf)
	}
	t.Logf("%s: mean latency seen by the caller: slow dependency %.3fs, fast %.4fs", hook, ms, mf)
}
