package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// call is one webhook action call the receiver got.
type call struct {
	at          time.Time
	policy      string
	source      string // the alert's source: event, rule, evidence, alertmanager
	labels      map[string]string
	annotations map[string]string
	startsAt    time.Time // when the alert started: the event's kernel time, the evidence batch's time, the rule's first firing evaluation
}

// receiver is the remediation endpoint: every webhook action of Vigil's
// policies lands here and is stamped with the time it arrived.
type receiver struct {
	mu    sync.Mutex
	calls []call
	bad   []string
	wake  chan struct{} // closed and replaced on every call
}

func newReceiver() *receiver { return &receiver{wake: make(chan struct{})} }

// start serves the receiver on a free loopback port until cleanup and
// returns its base URL.
func (rc *receiver) start(r *testenv.Runner) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		r.Fatalf("receiver: %v", err)
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	r.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	at := time.Now()
	var body struct {
		Alert struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
			Source      string            `json:"source"`
			StartsAt    time.Time         `json:"starts_at"`
		} `json:"alert"`
		Policy string `json:"policy"`
	}
	err := json.NewDecoder(io.LimitReader(req.Body, 1<<20)).Decode(&body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	switch {
	case err != nil:
		rc.bad = append(rc.bad, fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, err))
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	default:
		if why := checkSource(body.Policy, body.Alert.Labels["alertname"], body.Alert.Source); why != "" {
			rc.bad = append(rc.bad, fmt.Sprintf("%s (labels %v)", why, body.Alert.Labels))
		}
	}
	rc.calls = append(rc.calls, call{at: at, policy: body.Policy, source: body.Alert.Source, labels: body.Alert.Labels,
		annotations: body.Alert.Annotations, startsAt: body.Alert.StartsAt})
	close(rc.wake)
	rc.wake = make(chan struct{})
	w.WriteHeader(http.StatusNoContent)
}

// first returns the first call of policy for unit at or after since,
// waiting until ctx ends.
func (rc *receiver) first(ctx context.Context, policy, unit string, since time.Time) (call, error) {
	for {
		rc.mu.Lock()
		for _, c := range rc.calls {
			if c.policy == policy && c.labels["unit"] == unit && !c.at.Before(since) {
				rc.mu.Unlock()
				return c, nil
			}
		}
		wake := rc.wake
		rc.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return call{}, ctx.Err()
		}
	}
}

// byPolicy counts every call each policy made, by "alertname (source)".
func (rc *receiver) byPolicy() map[string][]string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	out := map[string][]string{}
	for _, c := range rc.calls {
		out[c.policy] = append(out[c.policy], c.alert())
	}
	return out
}

// unexpected lists calls that were malformed, from an unknown policy, or
// from a policy acting on an alert it should not see (checkSource).
func (rc *receiver) unexpected() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bad...)
}

// cgroups makes the benchmark's workload cgroups in the hierarchy Vigil's
// eBPF collector attributes events by (the v1 memory hierarchy when it is
// mounted, else the unified one), under this process's own cgroup.
type cgroups struct {
	base string // folder the workload cgroups are made in
	mu   sync.Mutex
	made []string
}

func newCgroups() (*cgroups, error) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var memory, unified string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		switch {
		case f[2] == "cgroup" && hasOption(f[3], "memory"):
			memory = f[1]
		case f[2] == "cgroup2" && unified == "":
			unified = f[1]
		}
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	switch {
	case memory != "":
		return &cgroups{base: filepath.Join(memory, own["memory"])}, nil
	case unified != "":
		return &cgroups{base: filepath.Join(unified, own[""])}, nil
	}
	return nil, errors.New("no cgroup v1 memory or cgroup2 hierarchy is mounted")
}

func hasOption(opts, want string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == want {
			return true
		}
	}
	return false
}

// ownCgroups maps each controller list of /proc/self/cgroup to this
// process's path in it ("" is the unified hierarchy).
func ownCgroups() (map[string]string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			out[c] = parts[2]
		}
	}
	return out, sc.Err()
}

func (c *cgroups) dir(unit string) string { return filepath.Join(c.base, unit) }

func (c *cgroups) create(unit string) error {
	d := c.dir(unit)
	if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
		return err
	}
	c.mu.Lock()
	c.made = append(c.made, d)
	c.mu.Unlock()
	return nil
}

// removeAll removes every cgroup made; a cgroup is busy for a moment after
// its last process exits, so each removal is retried for a few seconds.
func (c *cgroups) removeAll() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, d := range c.made {
		var err error
		for range 100 {
			if err = os.Remove(d); err == nil || os.IsNotExist(err) {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	c.made = nil
	return errors.Join(errs...)
}

// getJSON decodes a Prometheus-style API answer's data into v.
func getJSON(ctx context.Context, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitEBPF waits until Vigil's eBPF collector has loaded the process-exit
// program and one set of HTTP programs (the socket-layer pair where the
// kernel has those tracepoints, else the syscall read and write programs):
// the crash and 5xx faults are seen through them.
func waitEBPF(ctx context.Context, vigilURL string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, vigilURL+"/metrics", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			missing := missingPrograms(string(b))
			if len(missing) == 0 {
				return nil
			}
			last = "not loaded: " + strings.Join(missing, ", ")
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("vigil's eBPF programs: %s (see vigil.log in the work folder)", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// missingPrograms lists what the benchmark needs and metrics (Vigil's
// /metrics text) does not show loaded.
func missingPrograms(metrics string) []string {
	loaded := func(p string) bool {
		return strings.Contains(metrics, `vigil_ebpf_program_loaded{program="`+p+`"} 1`)
	}
	var missing []string
	if !loaded("process_exit") {
		missing = append(missing, "process_exit")
	}
	if !(loaded("http_sock_send") && loaded("http_sock_recv")) && !(loaded("http_exit_read") && loaded("http_write")) {
		missing = append(missing, "HTTP (http_sock_send and http_sock_recv, or http_exit_read and http_write)")
	}
	return missing
}
