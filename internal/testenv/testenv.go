// Package testenv starts the real servers that Vigil talks to — a Kubernetes
// control plane with kwok nodes, Prometheus, Alertmanager, VictoriaLogs, an
// OpenTelemetry Collector, HAProxy, node_exporter, Redis and PostgreSQL — for tests.
//
// Every Start function ([StartKubernetes], [StartPrometheus],
// [StartAlertmanager], [StartVictoriaLogs], [StartOTelCollector],
// [StartHAProxy], [StartNodeExporter], [StartRedis], [StartPostgres]) brings its server up on free
// 127.0.0.1 ports with its data in the test's temporary directory, waits
// until it is ready, returns its endpoints and stops it when the test ends.
// Each server's output goes to a log file; when the test fails, the tail of
// that log is printed and the whole file is kept (see [Process]).
//
// Binaries built from Go modules (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok, victoria-logs, otelcol) are looked up in the cache that
// hack/testenv/build.sh (`make testenv-build`) fills; Debian's binaries
// (prometheus, prometheus-alertmanager, haproxy, prometheus-node-exporter,
// redis-server, redis-cli; PostgreSQL's in /usr/lib/postgresql/*/bin too,
// see [PostgresBinary]) are looked up on PATH. When a binary is missing the test is skipped, except
// under CI=true, where it fails: CI must never pass by skipping.
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TB is the part of testing.TB that the harness uses. *testing.T and
// *testing.B satisfy it; cmd/testenv implements it to keep an environment
// running outside of a test.
type TB interface {
	Helper()
	Name() string
	Logf(format string, args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Failed() bool
	Cleanup(func())
	TempDir() string
	Context() context.Context
}

// Environment variables that steer the harness.
const (
	// EnvCache names the build cache root (default $HOME/.cache/vigil);
	// binaries live in its bin/<tool>-<version>-<key>/ folders.
	EnvCache = "VIGIL_CACHE"
	// EnvBin names a folder searched first for every binary, by its plain
	// name (etcd, kube-apiserver, prometheus, …).
	EnvBin = "VIGIL_TESTENV_BIN"
	// EnvLogDir names a folder where the logs of servers used by a failed test
	// are kept (default: vigil-testenv-logs in the system temp folder).
	EnvLogDir = "VIGIL_TESTENV_LOGS"
)

// tools maps each cached binary to the tools/ module that builds it.
var tools = map[string]string{
	"etcd":                    "etcd",
	"kube-apiserver":          "kube",
	"kube-controller-manager": "kube",
	"kube-scheduler":          "kube",
	"kwok":                    "kube",
	"kwok-stages.yaml":        "kube",
	"kubelet":                 "kube",
	"kube-proxy":              "kube",
	"kubectl":                 "kube",
	"containerd":              "containerd",
	"ctr":                     "containerd",
	"containerd-shim-runc-v2": "containerd",
	"runc":                    "runc",
	"bridge":                  "cni",
	"host-local":              "cni",
	"loopback":                "cni",
	"portmap":                 "cni",
	"victoria-logs":           "victorialogs",
	"otelcol":                 "otelcol",
	"helm":                    "helm",
}

// underCI reports whether the tests run in CI (CI=true), where a server that
// cannot start is a failure rather than a skip.
func underCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Unavailable stops the test because something it needs (a server, root, a
// kernel feature) cannot be had here: Fatalf under CI=true, where the suite
// runs as root with every server and nothing the issues ask for may be
// skipped, Skipf otherwise. The message says what is missing.
func Unavailable(t TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if underCI() {
		t.Fatalf("testenv: %s (CI=true: a missing test server is a failure)", msg)
	}
	t.Skipf("testenv: %s", msg)
}

// unavailable is Unavailable under its old name, which node.go still uses.
var unavailable = Unavailable

// short reports whether a test binary runs with -short (make test-unit):
// then nothing that needs a test server or root runs. Outside a test
// (cmd/testenv-up) it is false.
func short() bool { return testing.Testing() && testing.Short() }

// RequireRoot stops the test (Unavailable) unless it runs as root; why says
// what needs root.
func RequireRoot(t TB, why string) {
	t.Helper()
	if short() {
		t.Skipf("-short (make test-unit): %s needs root", why)
	}
	if os.Geteuid() != 0 {
		Unavailable(t, "%s needs root (make test runs as root)", why)
	}
}

// Binary returns the path of the named test binary, or skips the test (fails
// it under CI=true) when it cannot be found. Names are plain binary names:
// "etcd", "kube-apiserver", "kwok", "victoria-logs", "otelcol", "prometheus",
// "prometheus-alertmanager", "haproxy", "prometheus-node-exporter",
// "redis-server", "redis-cli", and the
// data file "kwok-stages.yaml".
func Binary(t TB, name string) string {
	t.Helper()
	if short() {
		t.Skipf("-short (make test-unit): needs the test server %s", name)
	}
	p, err := LookBinary(name)
	if err != nil {
		Unavailable(t, "%v", err)
	}
	return p
}

// LookBinary finds the named test binary: first in $VIGIL_TESTENV_BIN, then
// in the build cache for binaries built from tools/ (keyed by the tool
// module's files, as hack/testenv/build.sh keys them), then on PATH.
func LookBinary(name string) (string, error) {
	if dir := os.Getenv(EnvBin); dir != "" {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if tool, ok := tools[name]; ok {
		dir, err := toolDir(tool)
		if err != nil {
			return "", fmt.Errorf("%s: %w; run make testenv-build", name, err)
		}
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s not built (looked in %s); run make testenv-build", name, dir)
		}
		return p, nil
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not installed (%v); run hack/install-deps.sh (Debian packages in hack/apt/*.txt)", name, err)
	}
	return p, nil
}

// CacheDir returns the root of the binary cache: $VIGIL_CACHE or
// $HOME/.cache/vigil.
func CacheDir() string {
	if d := os.Getenv(EnvCache); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "vigil-cache")
	}
	return filepath.Join(home, ".cache", "vigil")
}

// toolDir returns the cache folder of the given tools/ module's binaries for
// the module's current files.
func toolDir(tool string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	key, err := toolKey(filepath.Join(root, "tools", tool))
	if err != nil {
		return "", err
	}
	matches, err := filepath.Glob(filepath.Join(CacheDir(), "bin", tool+"-*-"+key))
	if err != nil {
		return "", err
	}
	if len(matches) == 0 {
		return "", fmt.Errorf("no build of tools/%s (key %s) in %s", tool, key, filepath.Join(CacheDir(), "bin"))
	}
	return matches[len(matches)-1], nil
}

// toolKey hashes the regular files directly in dir the way build.sh does:
// sha256 over "name\n" followed by the content of each file, in byte order of
// the names, shortened to 12 hex digits.
func toolKey(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\n", e.Name())
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// repoRoot finds the Vigil repository root: the nearest parent of the working
// directory (a package folder under go test) that holds tools/.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "tools")); err == nil && fi.IsDir() {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (a folder with go.mod and tools/) not found above the working directory")
		}
		dir = parent
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// kernel hands out ports from its ephemeral range in a spread order, so two
// calls in a row rarely collide with each other or with parallel test
// binaries.
func FreePort(t TB) int {
	t.Helper()
	p, err := freePort()
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	return p
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// freePorts returns n distinct free ports, holding all of them open until
// every one is chosen so that none repeats.
func freePorts(t TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testenv: free port: %v", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// hostPort joins 127.0.0.1 and port.
func hostPort(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// httpClient is used for readiness probes and helpers. It keeps no idle
// connections, so nothing of the harness outlives a test (goleak-friendly).
var httpClient = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// httpGet fetches url and returns its body when the status is 200.
func httpGet(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return doHTTP(req)
}

// doHTTP sends req and returns the body when the status is 2xx.
func doHTTP(req *http.Request) ([]byte, error) {
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return body, fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// writeFile writes content to dir/name (mode 0600) and returns the path,
// failing the test on error.
func writeFile(t TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return p
}

// EventuallyTrue calls cond every 20ms until it returns true or timeout
// passes; then the test fails naming what it waited for. Timeouts should
// be generous (a loaded 2-core machine is slow): no test fails on speed.
func EventuallyTrue(t TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Eventually(t, timeout, 20*time.Millisecond, what, func(context.Context) error {
		if cond() {
			return nil
		}
		return errors.New("not yet")
	})
}

// Eventually calls cond every interval until it returns nil or timeout
// passes; then the test fails with the last error. Use it with generous
// timeouts: a loaded 2-core machine is slow, and a test should never fail on
// wall-clock speed alone.
func Eventually(t TB, timeout, interval time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	if err := poll(t.Context(), timeout, interval, cond); err != nil {
		t.Fatalf("testenv: %s: not true after %s: %v", what, timeout, err)
	}
}

// poll calls cond every interval until it returns nil, ctx ends or timeout
// passes, and returns the last error.
func poll(ctx context.Context, timeout, interval time.Duration, cond func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last, prev error
	for {
		cctx, ccancel := context.WithTimeout(ctx, 15*time.Second)
		last = cond(cctx)
		ccancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			// The last call may have been cut short by the deadline: the
			// one before it says what was still wrong.
			if prev != nil && prev.Error() != last.Error() {
				return fmt.Errorf("%w (last error: %v; the one before: %v)", ctx.Err(), last, prev)
			}
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
		case <-tick.C:
		}
		prev = last
	}
}

// postEmpty sends an empty POST to url and expects a 2xx answer.
func postEmpty(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	_, err = doHTTP(req)
	return err
}
