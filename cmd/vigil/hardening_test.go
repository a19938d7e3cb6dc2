package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// hostileQuery loads every series at every millisecond of the retention (a
// subquery); unbounded it took the agent from 155 MB to 1.58 GB (issue 18).
// Most of its steps fall before the first sample: it costs CPU until the
// timeout, then loads samples until max_samples. greedyQuery loads ten
// million samples at once.
const (
	hostileQuery = `last_over_time({__name__=~".+"}[20m:1ms])`
	greedyQuery  = `last_over_time({__name__=~".+"}[10s:1ms])`
)

// memoryLimit is the DaemonSet's memory limit (deploy/helm/vigil/values.yaml).
const memoryLimit = 512 << 20

// peakRSS returns the process's peak resident set size (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/<pid>/status")
	return 0
}

// The real binary with the query API on (its default bounds): a query
// that loads too many samples is refused (422), the hostile query sent
// eight times at once is stopped at max_samples or its timeout (503; two
// run at a time), and the process's peak RSS stays under the DaemonSet's
// memory limit.
func TestHostileQueryIsBoundedInTheBinary(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	// ingest_all: the worst case, every series of the agent in the TSDB.
	if err := os.WriteFile(cfg, []byte("rules:\n  evaluation_interval: 200ms\n  ingest_all: true\n  query_api:\n    enabled: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, base, logBuf := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")
	query := func(q string) (int, string) {
		resp, err := http.Get(base + "/api/v1/query?" + url.Values{"query": {q}}.Encode())
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// Ten ingests of every series: 2 s at one sample a millisecond is
	// already twice the default max_samples for a handful of series.
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body := query("count_over_time(vigil_build_info[1m]) >= 10")
		if code == 200 && strings.Contains(body, `"result":[{`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the local TSDB did not fill: %d %s\n%s", code, body, logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	before := peakRSS(t, cmd.Process.Pid)
	if code, body := query(greedyQuery); code != http.StatusUnprocessableEntity || !strings.Contains(body, "too many samples") {
		t.Errorf("%s = %d %.200s, want 422 (max samples)", greedyQuery, code, body)
	}

	var wg sync.WaitGroup
	results := make([]string, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := query(hostileQuery)
			if len(body) > 200 {
				body = body[:200]
			}
			results[i] = fmt.Sprintf("%d %s", code, body)
		}()
	}
	wg.Wait()
	peak := peakRSS(t, cmd.Process.Pid)
	t.Logf("peak RSS %d MiB before the hostile queries, %d MiB after (limit %d MiB)", before>>20, peak>>20, memoryLimit>>20)
	for _, r := range results {
		t.Logf("hostile query: %.120s", r)
		if !(strings.HasPrefix(r, "422 ") && strings.Contains(r, "too many samples")) && !strings.HasPrefix(r, "503 ") {
			t.Errorf("hostile query answered %s, want 422 (max samples) or 503 (out of time)", r)
		}
	}
	if peak > memoryLimit {
		t.Errorf("peak RSS %d MiB under the hostile queries, over the %d MiB limit", peak>>20, memoryLimit>>20)
	}
	// The agent still serves.
	if resp, err := http.Get(base + "/-/healthy"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/-/healthy after the queries: %v", err)
	} else {
		resp.Body.Close()
	}
	if resp, err := http.Get(base + "/metrics"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "vigil_rules_query_api_refused_total") {
				t.Log(l)
			}
		}
	}
}

// The lifecycle API of the real binary: off by default (404), and with
// --web.enable-lifecycle only for the API token.
func TestReloadEndpointInTheBinary(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte("healing:\n  auth_token_file: "+tok+"\n  kubernetes: {mode: \"off\"}\n"), 0o644)
	reload := func(base, auth string) int {
		req, _ := http.NewRequest("POST", base+"/-/reload", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	_, base, _ := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")
	if code := reload(base, "Bearer s3cret"); code != http.StatusNotFound {
		t.Errorf("lifecycle off: POST /-/reload = %d, want 404", code)
	}
	_, base, _ = startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0", "--web.enable-lifecycle")
	if code := reload(base, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: POST /-/reload = %d, want 401", code)
	}
	if code := reload(base, "Bearer nope"); code != http.StatusUnauthorized {
		t.Errorf("wrong token: POST /-/reload = %d, want 401", code)
	}
	if code := reload(base, "Bearer s3cret"); code != http.StatusOK {
		t.Errorf("the token: POST /-/reload = %d, want 200", code)
	}
}

// With server.require_api_token, `vigil status` needs --token-file.
func TestStatusWithRequiredToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte("server:\n  require_api_token: true\nhealing:\n  auth_token_file: "+tok+"\n  kubernetes: {mode: \"off\"}\n"), 0o644)
	_, base, _ := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")

	var out, errb strings.Builder
	if code := Main([]string{"status", "--url", base}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "401") {
		t.Errorf("status without the token: exit %d, stderr %q; want 1 and 401", code, errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := Main([]string{"status", "--url", base, "--token-file", tok}, &out, &errb); code != 0 || !strings.Contains(out.String(), "remediation dry-run") {
		t.Errorf("status with the token: exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
	}
}

// 1,100 idle keep-alive connections to the real binary (the issue's
// flood): /-/healthy and a scrape are still served, and the agent holds at
// most server.max_connections (256) sockets for them.
func TestIdleConnectionFloodInTheBinary(t *testing.T) {
	cmd, base, logBuf := startVigil(t, "run", "--web.listen-address", "127.0.0.1:0")
	addr := strings.TrimPrefix(base, "http://")
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 1100; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: vigil\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// Sockets, not all files: the eBPF collector's descriptors (maps,
	// links, one per uprobe on every TLS library and Go executable of the
	// host) grow with the host.
	dir := fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sockets := 0
	for _, fd := range fds {
		if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
			sockets++
		}
	}
	t.Logf("the agent has %d sockets (%d open files) with 1,100 idle connections held", sockets, len(fds))
	if sockets > 256+32 {
		t.Errorf("%d sockets: the connection bound (256) does not hold", sockets)
	}
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, p := range []string{"/-/healthy", "/metrics"} {
		resp, err := probe.Get(base + p)
		if err != nil {
			t.Fatalf("%s starved: %v\n%s", p, err, logBuf.String())
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d", p, resp.StatusCode)
		}
		if p == "/metrics" && !strings.Contains(string(b), `vigil_collector_success{collector="host"} 1`) {
			t.Errorf("the host collector failed under the flood")
		}
	}
}

// 2,000 event streams asked of the real binary (the flood): 16 are
// served, the rest get 503, and the goroutines stay bounded.
func TestEventStreamFloodInTheBinary(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("healing:\n  kubernetes: {mode: \"off\"}\n"), 0o644)
	_, base, _ := startVigil(t, "run", "--config", cfg, "--web.listen-address", "127.0.0.1:0")
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	var open []*http.Response
	defer func() {
		for _, r := range open {
			r.Body.Close()
		}
	}()
	refused := 0
	for i := 0; i < 2000; i++ {
		req, _ := http.NewRequest("GET", base+"/api/v1/actions", nil)
		req.Header.Set("Accept", "text/event-stream")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		switch resp.StatusCode {
		case 200:
			open = append(open, resp)
		case http.StatusServiceUnavailable:
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			refused++
		default:
			t.Fatalf("stream %d: %d", i, resp.StatusCode)
		}
	}
	if len(open) != 16 || refused != 2000-16 {
		t.Errorf("%d streams served and %d refused, want 16 and %d", len(open), refused, 2000-16)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "go_goroutines "); ok {
			n, _ := strconv.Atoi(v)
			t.Logf("go_goroutines %d with 16 streams open after 2,000 asked", n)
			if n > 400 {
				t.Errorf("go_goroutines = %d", n)
			}
		}
		if strings.HasPrefix(l, `vigil_http_requests_rejected_total{reason="too_many_streams"}`) {
			t.Log(l)
		}
	}
}
