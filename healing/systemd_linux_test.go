package healing

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// startSystemd boots a real systemd (Debian's /lib/systemd/systemd) as PID
// 1 of its own PID, mount and cgroup namespaces, with only the given units
// (in /run/systemd/system) and a target that pulls in nothing. Its cgroup
// trees are fresh mounts rooted in a cgroup made for the test, so nothing
// of the host's is touched. It returns the D-Bus address of systemd's
// private socket, reached through /proc/<pid>/root.
func startSystemd(t *testing.T, units map[string]string) string {
	t.Helper()
	const bin = "/lib/systemd/systemd"
	if _, err := os.Stat(bin); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("systemd is not installed (%v); hack/apt/healing.txt lists it", err)
		}
		t.Skipf("systemd is not installed: %v", err)
	}
	testenv.RequireRoot(t, "systemd tests (namespaces and cgroups)")
	dir := t.TempDir()
	unitDir := filepath.Join(dir, "units")
	os.MkdirAll(unitDir, 0o755)
	units["vigil-test.target"] = "[Unit]\nDescription=Vigil test target\nDefaultDependencies=no\n"
	for name, text := range units {
		if err := os.WriteFile(filepath.Join(unitDir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A cgroup of our own in both hierarchies systemd uses.
	cg := fmt.Sprintf("vigil-systemd-test-%d", os.Getpid())
	var cgDirs []string
	for _, h := range []string{"/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(h); err == nil {
			d := filepath.Join(h, cg)
			if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
			cgDirs = append(cgDirs, d)
		}
	}
	script := fmt.Sprintf(`set -e
for d in %s; do echo $$ > "$d/cgroup.procs"; done
exec unshare --cgroup --fork --pid --mount --mount-proc --propagation private /bin/sh -c '
set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/system
cp %s/* /run/systemd/system/
mount -t tmpfs tmpfs /etc/systemd/system
mount -t tmpfs tmpfs /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
exec env container=vigil-test %s --system --unit=vigil-test.target --log-target=console
'`, strings.Join(cgDirs, " "), unitDir, bin)
	cmd := exec.Command("/bin/sh", "-c", script)
	logf, _ := os.Create(filepath.Join(dir, "systemd.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Killing the namespace's PID 1 kills everything in it.
		for _, pid := range childPIDs(cmd.Process.Pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		logf.Close()
		deadline := time.Now().Add(30 * time.Second)
		for _, d := range cgDirs {
			for removeTree(d) != nil && time.Now().Before(deadline) {
				time.Sleep(100 * time.Millisecond)
			}
			if err := removeTree(d); err != nil {
				t.Errorf("cannot remove the test cgroup %s: %v", d, err)
			}
		}
	})
	var sock string
	var sdPID int
	deadline := time.Now().Add(60 * time.Second)
	for {
		// sh execs unshare, whose forked child execs systemd.
		for _, pid := range childPIDs(cmd.Process.Pid) {
			p := fmt.Sprintf("/proc/%d/root/run/systemd/private", pid)
			if _, err := os.Stat(p); err == nil {
				sock, sdPID = p, pid
			}
		}
		if sock != "" {
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "systemd.log"))
			t.Fatalf("systemd did not come up: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// systemd hangs up on peers outside its PID namespace (it cannot
	// see their PID), so a relay started inside it, the test binary
	// itself, carries the D-Bus bytes unchanged. On a real host the agent
	// shares systemd's namespace and connects directly.
	relay := filepath.Join(dir, "systemd.sock")
	pc := exec.Command("nsenter", "-t", fmt.Sprint(sdPID), "-m", "-p", os.Args[0])
	pc.Env = append(os.Environ(), "VIGIL_TEST_UNIX_PROXY="+relay+"=/run/systemd/private")
	pc.Stdout, pc.Stderr = logf, logf
	if err := pc.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Process.Kill(); pc.Wait() })
	addr := "unix:path=" + relay
	// Wait until the manager answers.
	for {
		c, err := systemdDialer(addr, true)(context.Background())
		if err == nil {
			_, err = c.GetManagerProperty("Version")
			c.Close()
			if err == nil {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("systemd does not answer on %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func childPIDs(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		var n int
		fmt.Sscan(f, &n)
		out = append(out, n)
	}
	return out
}

// removeTree removes a cgroup directory and its children, deepest first.
func removeTree(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var last error
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
			last = err
		}
	}
	return last
}

func unitProp(t *testing.T, addr, unit, prop string) string {
	t.Helper()
	c, err := systemdDialer(addr, true)(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	iface := "Unit"
	if prop == "MainPID" {
		iface = "Service"
	}
	p, err := c.GetUnitTypePropertiesContext(context.Background(), unit, iface)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(p[prop])
}

func TestSystemdActuatorsAgainstRealSystemd(t *testing.T) {
	addr := startSystemd(t, map[string]string{
		"app.service":     "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep infinity\n",
		"broken.service":  "[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/false\n",
		"worker@.service": "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep infinity\n",
	})
	h := startEngine(t, `
dry_run: false
systemd: {address: "`+addr+`", direct: true}
policies:
  routes:
    - name: restart
      matchers: ['alertname="UnitDown"']
      steps: [{action: systemd_restart, params: {unit: "{{.unit}}", units: ["app.service", "broken.service"], timeout: 30s}}]
    - name: reset
      matchers: ['alertname="UnitFailed"']
      steps: [{action: systemd_reset_failed, params: {unit: "{{.unit}}", units: ["broken.service"]}}]
    - name: scale
      matchers: ['alertname="QueueDeep"']
      cooldown: 0s
      steps: [{action: systemd_scale, params: {template: "worker@.service", max: "2", step: "{{.step}}", min: "0"}}]
`)
	// restart: a stopped unit starts; a running one gets a new main PID.
	h.fire(map[string]string{"alertname": "UnitDown", "unit": "app.service", "n": "1"})
	recs := h.settle()
	if results(recs) != "success" || unitProp(t, addr, "app.service", "ActiveState") != "active" {
		t.Fatalf("records:%s state=%s", dump(recs), unitProp(t, addr, "app.service", "ActiveState"))
	}
	pid1 := unitProp(t, addr, "app.service", "MainPID")
	h.fire(map[string]string{"alertname": "UnitDown", "unit": "app.service", "n": "2"})
	h.settle()
	if pid2 := unitProp(t, addr, "app.service", "MainPID"); pid2 == pid1 || pid2 == "0" {
		t.Fatalf("main PID %s → %s: not restarted", pid1, pid2)
	}
	// A hostile alert naming a unit outside the policy's units is vetoed:
	// the unit exists here (an instance of worker@.service) and stays down.
	h.fire(map[string]string{"alertname": "UnitDown", "unit": "worker@7.service"})
	recs = h.settle()
	if r := recs[len(recs)-1]; r.Result != ResultVetoed || r.Guard != GuardAllowList || !strings.Contains(r.Reason, `"worker@7.service" is outside`) {
		t.Fatalf("hostile unit:%s", dump(recs))
	}
	if s := unitProp(t, addr, "worker@7.service", "ActiveState"); s == "active" || s == "activating" {
		t.Fatalf("worker@7.service is %s after a vetoed restart", s)
	}
	// A restart that fails is a failed action.
	h.fire(map[string]string{"alertname": "UnitDown", "unit": "broken.service"})
	recs = h.settle()
	if r := recs[len(recs)-1]; r.Result != ResultFailed || !strings.Contains(r.Reason, "job failed") {
		t.Fatalf("restart of a failing unit:%s", dump(recs))
	}
	if s := unitProp(t, addr, "broken.service", "ActiveState"); s != "failed" {
		t.Fatalf("broken.service is %s", s)
	}
	// reset-failed clears it.
	h.fire(map[string]string{"alertname": "UnitFailed", "unit": "broken.service"})
	recs = h.settle()
	if r := recs[len(recs)-1]; r.Result != ResultSuccess || unitProp(t, addr, "broken.service", "ActiveState") != "inactive" {
		t.Fatalf("reset-failed:%s", dump(recs))
	}
	// scale: 0 → 1 → 2, then refused at the bound; then down.
	for i, step := range []string{"1", "1", "1", "-1"} {
		h.fire(map[string]string{"alertname": "QueueDeep", "step": step, "i": fmt.Sprint(i)})
		h.settle()
	}
	recs = h.settle()
	got := results(recs[len(recs)-4:])
	if got != "success success failed success" {
		t.Fatalf("scale results %q%s", got, dump(recs))
	}
	if s := unitProp(t, addr, "worker@1.service", "ActiveState"); s != "active" {
		t.Errorf("worker@1 is %s", s)
	}
	if s := unitProp(t, addr, "worker@2.service", "ActiveState"); s == "active" {
		t.Errorf("worker@2 is still %s after the step down", s)
	}
	if !strings.Contains(recs[len(recs)-2].Reason, "has 2 instances, the bound of [0, 2]") {
		t.Errorf("bound reason: %q", recs[len(recs)-2].Reason)
	}
}

// Keep the import used when the file is built alone.
var _ = sdbus.Property{}
