//go:build linux

package ebpf

import (
	"bufio"
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
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// runHelper runs the helper named by $VIGIL_EBPF_TEST_HELPER with arg, in
// a child process of the test, so that what it does is attributed to the
// cgroup the test put it in.
func runHelper(name, arg string) int {
	var err error
	switch name {
	case "tcp-client":
		err = tcpClient(arg)
	case "http-client":
		err = httpClient(arg)
	case "fault-server":
		err = faultServer(arg)
	case "fault-gets":
		err = faultGets(arg)
	case "dial-refused":
		err = dialRefused(arg)
	case "timeout-gets":
		err = timeoutGets(arg)
	case "raw-http":
		err = rawHTTP()
	case "unprivileged":
		err = unprivilegedCollector()
	case "tracefs-under-sysfs":
		err = tracefsUnderSysfs(arg)
	case "redis-go-client":
		err = redisGoClient(arg)
	case "pgx-client":
		err = pgxClient(arg)
	case "grpc-client":
		err = grpcClient(arg)
	case "h2c-client":
		err = h2cClient(arg)
	case "grpc-server":
		err = grpcServer(arg)
	case "h2c-server":
		err = h2cServer(arg)
	case "dns-go-client":
		err = dnsGoClient(arg)
	case "grpc-tls-server":
		err = grpcTLSServer(arg)
	case "grpc-tls-client":
		err = grpcTLSClient(arg)
	case "https-server":
		err = httpsServer(arg)
	case "https-client":
		err = httpsClient(arg)
	default:
		err = fmt.Errorf("unknown helper %q", name)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// tcpClient makes the outbound connections TestTCPLifecycle checks; arg is
// "ok,refused,timeout,reset" addresses.
func tcpClient(arg string) error {
	a := strings.Split(arg, ",")
	if len(a) != 4 {
		return fmt.Errorf("want 4 addresses, got %q", arg)
	}
	ok, refused, timeout, reset := a[0], a[1], a[2], a[3]
	for range 3 {
		c, err := net.Dial("tcp4", ok)
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		c.Close()
	}
	if _, err := net.Dial("tcp4", refused); !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("connect to %s: want ECONNREFUSED, got %v", refused, err)
	}
	// One SYN retransmission, then the kernel gives up with ETIMEDOUT.
	d := net.Dialer{Timeout: 60 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_SYNCNT, 1) })
		return errors.Join(err, serr)
	}}
	if _, err := d.Dial("tcp4", timeout); !errors.Is(err, syscall.ETIMEDOUT) {
		return fmt.Errorf("connect to %s: want ETIMEDOUT, got %v", timeout, err)
	}
	c, err := net.Dial("tcp4", reset)
	if err != nil {
		return err
	}
	if err := c.(*net.TCPConn).SetLinger(0); err != nil { // close sends RST
		return err
	}
	return c.Close()
}

// httpClient sends the requests TestHTTP checks to the server at arg, over
// one keep-alive connection, and checks the answers.
func httpClient(arg string) error {
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer cl.CloseIdleConnections()
	for _, r := range []struct {
		method, path, traceparent string
		want                      int
	}{
		{"GET", "/users/12345?verbose=1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 200},
		{"POST", "/orders", "", 201},
		{"GET", "/missing", "", 404},
		{"GET", "/users/12345?verbose=1", "", 200},
	} {
		req, err := http.NewRequest(r.method, "http://"+arg+r.path, strings.NewReader(""))
		if err != nil {
			return err
		}
		if r.traceparent != "" {
			req.Header.Set("traceparent", r.traceparent)
		}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.want {
			return fmt.Errorf("%s %s: status %d, want %d", r.method, r.path, resp.StatusCode, r.want)
		}
	}
	return nil
}

// testCgroup makes a v1 memory cgroup named name (a .service name, so the
// workload identity carries it as its unit) under the test's own memory
// cgroup, and removes it at cleanup. It returns its directory.
func testCgroup(t *testing.T, name string) string {
	t.Helper()
	own := ""
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 && parts[1] == "memory" {
			own = parts[2]
		}
	}
	f.Close()
	root := memoryHierarchy(t)
	dir := filepath.Join(root, own, name)
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for i := 0; ; i++ {
			err := os.Remove(dir)
			if err == nil || os.IsNotExist(err) || i == 100 {
				if err != nil && !os.IsNotExist(err) {
					t.Errorf("remove cgroup %s: %v", dir, err)
				}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	return dir
}

// serverInCgroup moves a server that testenv started (and so the children
// it forks later, PostgreSQL's backends) into a test cgroup of its own
// named unit, waits until the collector resolves that cgroup, and stops the
// server before the cgroup is removed. It returns the workload labels the
// server's series carry. Counted in the test's own cgroup instead, a
// server's side would take in every other server of its kind in that
// cgroup: other packages' tests start redis-server and postgres at the same
// time, in the same (root) cgroup under CI.
func serverInCgroup(t *testing.T, env *testEnv, p *testenv.Process, unit string) map[string]string {
	t.Helper()
	dir := testCgroup(t, unit)
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(p.Pid())), 0o644); err != nil {
		t.Fatalf("move %s into %s: %v", p.Name(), dir, err)
	}
	t.Cleanup(func() { _ = p.Stop() }) // before testCgroup's removal of dir
	env.knownCgroup(t, dir)
	return map[string]string{"unit": unit}
}

// inCgroup returns a command that runs argv inside the cgroup at dir.
func inCgroup(dir string, argv ...string) *exec.Cmd {
	script := `echo $$ > "$0/cgroup.procs" && exec "$@"`
	return exec.Command("sh", append([]string{"-c", script, dir}, argv...)...)
}

// helperCmd runs a test helper (see runHelper) inside the cgroup at dir.
func helperCmd(t *testing.T, dir, name, arg string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := inCgroup(dir, exe, "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	return cmd
}

func itoa(i int) string { return fmt.Sprint(i) }

// knownCgroup waits until the collector resolves the cgroup at dir (as it
// does once it has read the cgroup's mkdir event, or walked the hierarchy)
// before a test sends traffic from it. Without it a test that counts a
// new cgroup's first requests exactly races the collector: a request event
// read before the mkdir event, just after a walk, is not attributed, and
// the collector then waits a second before it asks again (docs/ebpf.md,
// vigil_ebpf_unresolved_cgroups_total).
func (e *testEnv) knownCgroup(t *testing.T, dir string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	testenv.EventuallyTrue(t, 10*time.Second, "the collector resolves cgroup "+dir, func() bool {
		return e.c.cgroups.Identity(st.Ino).CgroupPath != ""
	})
}

// memoryHierarchy is where the v1 memory cgroup hierarchy is mounted; a
// test that needs it is skipped without it, and fails in CI (which has it).
func memoryHierarchy(t *testing.T) string {
	t.Helper()
	root, memory, err := cgroupMount("/proc", "memory")
	if err != nil || !memory {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no v1 memory cgroup hierarchy: %v", err)
		}
		t.Skipf("needs a v1 memory cgroup hierarchy: %v", err)
	}
	return root
}

// ownWorkload returns the workload labels of the test's own memory cgroup
// (where the servers testenv starts run), once the collector knows it:
// server-side checks name them, so that servers of other sessions on the
// node (their own cgroups) are not counted.
func ownWorkload(t *testing.T, env *testEnv) map[string]string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := ""
	for _, l := range strings.Split(string(b), "\n") {
		if parts := strings.SplitN(l, ":", 3); len(parts) == 3 && parts[1] == "memory" {
			own = parts[2]
		}
	}
	labels := map[string]string{}
	if own == "/" || own == "" {
		// The hierarchy's root: no workload, every label empty.
		for _, n := range workload.LabelNames {
			labels[n] = ""
		}
		return labels
	}
	dir := filepath.Join(memoryHierarchy(t), own)
	env.knownCgroup(t, dir)
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		t.Fatal(err)
	}
	wl := env.c.cgroups.Identity(st.Ino)
	for i, v := range wl.Labels() {
		labels[workload.LabelNames[i]] = v
	}
	return labels
}
