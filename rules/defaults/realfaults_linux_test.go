package defaults_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestDefaultAlertsOnRealFaults runs the real agent (go build ./cmd/vigil)
// with its default rules over real faults on this machine and waits for
// the default alerts to fire from what its collectors read:
//
//   - a service whose working set sits at its memory limit while page cache
//     churns: VigilWorkloadMemoryAtLimit;
//   - a service spinning under a 10 % CPU quota: VigilWorkloadCPUThrottled;
//   - a service at its open-files limit: VigilWorkloadFileDescriptorsExhausted;
//   - a real ext4 image on a loop device, filled: VigilNodeFilesystemAlmostFull;
//   - a service that reads HTTP requests and answers none (the test sends
//     them): VigilWorkloadNotAnswering (eBPF);
//   - a service calling a dependency that answers after 1.5 s:
//     VigilWorkloadDependencySlow with that destination (eBPF);
//
// and that a quiet service beside them raises none of these. The fault
// suite (faults/) runs the same kinds as pods on the real node with the
// policy's actions; this is the signal-to-alert half, in the agent as
// shipped.
func TestDefaultAlertsOnRealFaults(t *testing.T) {
	testenv.RequireRoot(t, "creating cgroups and mounting a loop device")
	if testing.Short() {
		t.Skip("-short: builds and runs the agent for minutes")
	}
	tag := fmt.Sprintf("%08x", rand.Uint32())
	cg := newCgroups(t, "/vigil-alerts-"+tag+"/system.slice")
	unit := func(kind string) string { return "vigil-alerts-" + kind + "-" + tag + ".service" }

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cg.run(unit("memsit"), 128<<20, 0, exe, helperEnv+"=memsit:113:48:"+t.TempDir())
	cg.run(unit("busy"), 64<<20, 10000, "sh", "", "-c", "while :; do :; done")
	cg.run(unit("fdleak"), 64<<20, 0, exe, helperEnv+"=fdleak:256")
	cg.run(unit("quiet"), 64<<20, 0, "sleep", "", "1000")
	mnt := fillLoopFS(t)

	// The hung service prints its address; the test keeps calling it.
	hungAddr := filepath.Join(t.TempDir(), "addr")
	cg.run(unit("hung"), 64<<20, 0, exe, helperEnv+"=hung:"+hungAddr)
	var hung string
	testenv.Eventually(t, 30*time.Second, 100*time.Millisecond, "the hung service listening", func(context.Context) error {
		b, err := os.ReadFile(hungAddr)
		if err != nil || !strings.HasSuffix(string(b), "\n") {
			return fmt.Errorf("no address yet: %v", err)
		}
		hung = strings.TrimSpace(string(b))
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	callerDone := make(chan struct{})
	defer func() { cancel(); <-callerDone }()
	go func() {
		defer close(callerDone)
		cl := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
		for ctx.Err() == nil {
			if resp, err := cl.Get("http://" + hung + "/work"); err == nil {
				resp.Body.Close()
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	// A slow dependency served by the test, called by a service.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The handler returns at once when the test ends, and the cleanup waits
	// for it: a handler still sleeping after the test is a leaked goroutine.
	stopSlow := make(chan struct{})
	slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(1500 * time.Millisecond):
			_, _ = w.Write([]byte("ok"))
		case <-stopSlow:
		case <-r.Context().Done():
		}
	})}
	go func() { _ = slow.Serve(ln) }()
	t.Cleanup(func() {
		close(stopSlow)
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		if err := slow.Shutdown(sctx); err != nil {
			_ = slow.Close()
		}
	})
	cg.run(unit("caller"), 64<<20, 0, exe, helperEnv+"=caller:http://"+ln.Addr().String()+"/dep")

	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(cfg, []byte(`server:
  listen_address: "`+addr+`"
collectors:
  host: {enabled: true}
  cgroup: {enabled: true}
  ebpf: {enabled: true}
  logs: {enabled: false}
  kube: {enabled: false}
rules:
  evaluation_interval: 1s
  storage_dir: `+filepath.Join(dir, "tsdb")+`
`), 0o644); err != nil {
		t.Fatal(err)
	}
	startAgent(t, cfg, filepath.Join(dir, "vigil.log"))

	want := map[string]map[string]string{
		"VigilWorkloadMemoryAtLimit":            {"unit": unit("memsit")},
		"VigilWorkloadCPUThrottled":             {"unit": unit("busy")},
		"VigilWorkloadFileDescriptorsExhausted": {"unit": unit("fdleak")},
		"VigilNodeFilesystemAlmostFull":         {"mountpoint": mnt, "fstype": "ext4"},
		"VigilWorkloadNotAnswering":             {"unit": unit("hung")},
		"VigilWorkloadDependencySlow":           {"unit": unit("caller"), "destination": ln.Addr().String()},
	}
	// The eBPF signals are decided on evidence (docs/detection.md): their
	// alerts fire from the evidence detector before the rule files' for:
	// has passed, with the evidence in their annotations.
	byEvidence := map[string]bool{"VigilWorkloadNotAnswering": true, "VigilWorkloadDependencySlow": true}
	sources := map[string]string{}
	start := time.Now()
	seen := map[string]time.Duration{}
	defer func() {
		if t.Failed() {
			t.Logf("fired before the failure: %v (sources %v); waited for %d alerts", seen, sources, len(want))
		}
	}()
	var last []alert
	testenv.Eventually(t, 6*time.Minute, 2*time.Second, "the default alerts firing", func(ctx context.Context) error {
		alerts, err := firing(ctx, "http://"+addr)
		if err != nil {
			return err
		}
		last = alerts
		for name, labels := range want {
			if _, ok := seen[name]; ok {
				continue
			}
			for _, a := range alerts {
				if a.Labels["alertname"] == name && a.State == "firing" && has(a.Labels, labels) {
					seen[name] = time.Since(start).Round(time.Second)
					if sources[name] == "" || a.Source == "evidence" {
						sources[name] = a.Source
					}
					if a.Source == "evidence" && (a.Annotations["evidence_bad"] == "" || a.Annotations["evidence_bad"] == "0") {
						t.Errorf("%s from evidence without its evidence: %v", name, a.Annotations)
					}
				}
			}
		}
		if len(seen) < len(want) {
			return fmt.Errorf("firing so far: %v", seen)
		}
		return nil
	})
	for _, a := range last {
		if a.Labels["unit"] == unit("quiet") {
			t.Errorf("the quiet service raised %s", a.Labels["alertname"])
		}
		n := a.Labels["alertname"]
		if l, ok := want[n]; ok && a.State == "firing" && !has(a.Labels, l) && strings.Contains(a.Labels["unit"]+a.Labels["mountpoint"], tag) {
			t.Errorf("%s fired for another test fault: %v", n, a.Labels)
		}
	}
	for name := range byEvidence {
		if sources[name] != "evidence" {
			t.Errorf("%s first fired from %q, want the evidence detector", name, sources[name])
		}
	}
	t.Logf("firing after (from agent start; the rule files' alerts include their for:): %v; sources %v", seen, sources)
}

// helperEnv makes the test binary a fault process (see TestMain).
const helperEnv = "VIGIL_DEFAULTS_FAULT"

type alert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	Source      string            `json:"source"`
}

func firing(ctx context.Context, base string) ([]alert, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/alerts", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []alert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Data.Alerts, nil
}

func has(got, want map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// cgroups creates services' cgroups under parent in every hierarchy of
// this machine (cgroup v2, or the v1 cpu, cpuacct and memory controllers
// plus a cgroup2 mount) and removes them at cleanup.
type cgroups struct {
	t       *testing.T
	v2      bool
	roots   []string
	parent  string
	created []string
	procs   []*exec.Cmd
}

func newCgroups(t *testing.T, parent string) *cgroups {
	c := &cgroups{t: t, parent: parent}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		c.v2, c.roots = true, []string{"/sys/fs/cgroup"}
	} else {
		for _, d := range []string{"cpu", "cpuacct", "memory", "unified"} {
			p := "/sys/fs/cgroup/" + d
			if real, err := filepath.EvalSymlinks(p); err == nil && !contains(c.roots, real) {
				c.roots = append(c.roots, real)
			}
		}
	}
	t.Cleanup(c.cleanup)
	return c
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (c *cgroups) mkdir(rel string) {
	cur := ""
	for _, p := range strings.Split(strings.Trim(rel, "/"), "/") {
		cur += "/" + p
		made := false
		for _, r := range c.roots {
			if err := os.Mkdir(r+cur, 0o755); err == nil {
				made = true
			} else if !errors.Is(err, os.ErrExist) {
				c.t.Fatal(err)
			}
		}
		if made {
			c.created = append(c.created, cur)
		}
		if c.v2 && cur != rel {
			c.write("/sys/fs/cgroup"+cur, "cgroup.subtree_control", "+cpu +memory")
		}
	}
}

func (c *cgroups) write(dir, file, v string) {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// run starts argv (with env, "" for none) in the service's cgroup with a
// memory limit and, if quotaUS > 0, a CPU quota of quotaUS per 100ms, and
// returns the process (a shell that execs argv, so it is argv's process).
// Running a unit again after its process ended starts it in the same
// cgroup: a service restart.
func (c *cgroups) run(unit string, mem int64, quotaUS int, name, env string, args ...string) *exec.Cmd {
	rel := c.parent + "/" + unit
	c.mkdir(rel)
	m := strconv.FormatInt(mem, 10)
	if c.v2 {
		c.write("/sys/fs/cgroup"+rel, "memory.max", m)
		c.write("/sys/fs/cgroup"+rel, "memory.swap.max", "0")
		if quotaUS > 0 {
			c.write("/sys/fs/cgroup"+rel, "cpu.max", strconv.Itoa(quotaUS)+" 100000")
		}
	} else {
		c.write("/sys/fs/cgroup/memory"+rel, "memory.limit_in_bytes", m)
		if _, err := os.Stat("/sys/fs/cgroup/memory" + rel + "/memory.memsw.limit_in_bytes"); err == nil {
			c.write("/sys/fs/cgroup/memory"+rel, "memory.memsw.limit_in_bytes", m)
		}
		if quotaUS > 0 {
			c.write("/sys/fs/cgroup/cpu"+rel, "cpu.cfs_period_us", "100000")
			c.write("/sys/fs/cgroup/cpu"+rel, "cpu.cfs_quota_us", strconv.Itoa(quotaUS))
		}
	}
	var script strings.Builder
	for _, r := range c.roots {
		fmt.Fprintf(&script, "echo $$ > %q && ", r+rel+"/cgroup.procs")
	}
	script.WriteString(`exec "$@"`)
	cmd := exec.Command("sh", append([]string{"-c", script.String(), "sh", name}, args...)...)
	if env != "" {
		cmd.Env = append(os.Environ(), env)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.procs = append(c.procs, cmd)
	return cmd
}

func (c *cgroups) cleanup() {
	for _, p := range c.procs {
		_ = p.Process.Kill()
		_ = p.Wait()
	}
	for i := len(c.created) - 1; i >= 0; i-- {
		for _, r := range c.roots {
			var err error
			for range 100 {
				if err = unix.Rmdir(r + c.created[i]); err != unix.EBUSY {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil && err != unix.ENOENT {
				c.t.Errorf("removing test cgroup %s: %v", r+c.created[i], err)
			}
		}
	}
}

// fillLoopFS mounts a 32 MiB ext4 image on a loop device and fills it to
// within 64 KiB; it returns the mount point.
func fillLoopFS(t *testing.T) string {
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	run("mkfs.ext4", "-q", "-F", "-m", "0", img)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { run("umount", "-d", mnt) })
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for n := int(st.Bavail)*int(st.Bsize)/len(buf) - 1; n > 0; n-- {
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return mnt
}

// faultHelper runs one fault in this process, forever:
//
//	memsit:<anonMiB>:<fileMiB>:<dir>  hold anonMiB of touched memory and
//	                                  read a fileMiB file in a loop
//	fdleak:<limit>                    lower the soft RLIMIT_NOFILE to limit
//	                                  and open /dev/null until EMFILE
//	hung:<addrfile>                   read HTTP requests, answer none
//	caller:<url>                      GET url in a loop
//	proto:<kind>:<target>             a Redis, PostgreSQL or DNS client
//	                                  (protofaults_linux_test.go)
//
// or one of the soak's healthy but noisy services (soak_linux_test.go),
// until SIGTERM, after which it stops gracefully and exits 0:
//
//	soakserve:<kind>:<port>[:<url>]   an HTTP server (lowerror, slowburst,
//	                                  clean, or frontend calling url)
//	soakload:<rate>:<statsfile>:<url> GET url rate times a second
func faultHelper(spec string) int {
	f := strings.Split(spec, ":")
	switch f[0] {
	case "soakserve":
		if len(f) < 3 {
			return 2
		}
		return soakServe(f[1], f[2], strings.Join(f[3:], ":"))
	case "soakload":
		if len(f) < 4 {
			return 2
		}
		rate, err := strconv.Atoi(f[1])
		if err != nil || rate < 1 {
			return 2
		}
		return soakLoad(rate, f[2], strings.Join(f[3:], ":"))
	case "proto":
		if len(f) < 3 {
			return 2
		}
		return protoFault(f[1], strings.Join(f[2:], ":"))
	case "memsit":
		anon, _ := strconv.Atoi(f[1])
		size, _ := strconv.Atoi(f[2])
		hold := make([]byte, anon<<20)
		for i := 0; i < len(hold); i += 4096 {
			hold[i] = 1
		}
		p := filepath.Join(f[3], "churn")
		buf := make([]byte, 1<<20)
		w, err := os.Create(p)
		if err != nil {
			return 1
		}
		for range size {
			_, _ = w.Write(buf)
		}
		w.Close()
		for {
			r, err := os.Open(p)
			if err != nil {
				return 1
			}
			for {
				if _, err := r.Read(buf); err != nil {
					break
				}
			}
			r.Close()
			runtime.KeepAlive(hold)
		}
	case "hung":
		ln, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return 1
		}
		if err := os.WriteFile(f[1], []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			return 1
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			go func() { // read, never answer, never close
				b := make([]byte, 4096)
				for {
					if _, err := c.Read(b); err != nil {
						return
					}
				}
			}()
		}
	case "caller":
		url := strings.Join(f[1:], ":")
		cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			if resp, err := cl.Get(url); err == nil {
				resp.Body.Close()
			}
		}
	case "fdleak":
		limit, _ := strconv.ParseUint(f[1], 10, 64)
		var rl unix.Rlimit
		if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) != nil {
			return 1
		}
		rl.Cur = limit
		if unix.Setrlimit(unix.RLIMIT_NOFILE, &rl) != nil {
			return 1
		}
		for {
			if _, err := unix.Open("/dev/null", unix.O_RDONLY, 0); err != nil {
				break
			}
		}
		for {
			time.Sleep(time.Hour)
		}
	}
	return 2
}
