package healing

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdPrivateSocketNeedsNoCapability is the evidence behind
// docs/security.md, "Capabilities at run time": uid 0 holding only the
// capabilities vigil run keeps (BPF, PERFMON, DAC_READ_SEARCH), and then
// none at all, with no_new_privs, restarts a unit through systemd's private
// socket (systemctl as root uses it, as the systemd actuators do with
// healing.systemd.address: unix:path=/run/systemd/private).
func TestSystemdPrivateSocketNeedsNoCapability(t *testing.T) {
	for _, tool := range []string{"nsenter", "setpriv", "systemctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	startSystemd(t, map[string]string{"app.service": "[Unit]\nDefaultDependencies=no\n[Service]\nExecStart=/bin/sleep infinity\n"})
	// The namespace's systemd: the process named systemd, not PID 1 here,
	// whose root has the private socket.
	pid := ""
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == "1" {
			continue
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		if _, err := os.Stat("/proc/" + e.Name() + "/root/run/systemd/private"); err == nil && strings.TrimSpace(string(b)) == "systemd" {
			pid = e.Name()
		}
	}
	if pid == "" {
		t.Fatal("the test's systemd is not found")
	}
	mainPID := ""
	for _, bounding := range []string{"-all,+bpf,+perfmon,+dac_read_search", "-all"} {
		cmd := exec.Command("nsenter", "-t", pid, "-p", "-m", "--",
			"setpriv", "--inh-caps=-all", "--bounding-set="+bounding, "--no-new-privs", "--",
			"/bin/sh", "-c", "grep -E '^Cap(Eff|Bnd)' /proc/self/status; systemctl restart app.service && systemctl show -p MainPID --value app.service")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bounding set %s: %v\n%s", bounding, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		got := lines[len(lines)-1]
		if got == "0" || got == mainPID {
			t.Fatalf("bounding set %s: main PID %s → %s, not restarted\n%s", bounding, mainPID, got, out)
		}
		t.Logf("bounding set %s: restarted (main PID %s)\n%s", bounding, got, out)
		mainPID = got
	}
}
