//go:build linux

package ebpf

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestMissingBPFCapsIn(t *testing.T) {
	for _, c := range []struct {
		eff  uint64
		want string
	}{
		{0, "CAP_BPF and CAP_PERFMON"},
		{1 << capPerfmon, "CAP_BPF"},
		{1 << capBPF, "CAP_PERFMON"},
		{1<<capBPF | 1<<capPerfmon, ""},
		{1 << capSysAdmin, ""}, // CAP_SYS_ADMIN covers both
	} {
		if got := missingBPFCapsIn(c.eff); got != c.want {
			t.Errorf("missingBPFCapsIn(%#x) = %q, want %q", c.eff, got, c.want)
		}
	}
}

func TestKernelReleaseAndMemlock(t *testing.T) {
	for _, c := range []struct {
		release string
		want    [2]int
		memlock bool
	}{
		{"6.18.0-1-amd64", [2]int{6, 18}, false},
		{"5.11.0", [2]int{5, 11}, false},
		{"5.10.0-28-cloud-amd64", [2]int{5, 10}, true},
		{"4.19.0+", [2]int{4, 19}, true},
		{"5.4", [2]int{5, 4}, true},
	} {
		got, err := kernelRelease(c.release)
		if err != nil || got != c.want {
			t.Errorf("kernelRelease(%q) = %v, %v; want %v", c.release, got, err, c.want)
			continue
		}
		if m := needsMemlock(got); m != c.memlock {
			t.Errorf("needsMemlock(%v) = %v, want %v", got, m, c.memlock)
		}
	}
	if _, err := kernelRelease("x"); err == nil {
		t.Error(`kernelRelease("x") succeeded`)
	}
}

func TestTracefsCandidates(t *testing.T) {
	got := strings.Join(tracefsCandidates("/host/sys/"), " ")
	want := "/sys/kernel/tracing /sys/kernel/debug/tracing /host/sys/kernel/tracing /host/sys/kernel/debug/tracing"
	if got != want {
		t.Errorf("tracefsCandidates(/host/sys/) = %s, want %s", got, want)
	}
	if got := tracefsCandidates("/sys"); len(got) != len(tracefsDirs) {
		t.Errorf("tracefsCandidates(/sys) = %v, want %v", got, tracefsDirs)
	}
}

// TestCapabilityDegradation runs the collector in a child process (the
// test binary as the "unprivileged" helper) as root with a reduced
// capability set, as the DaemonSet runs it: CAP_BPF and CAP_PERFMON alone
// load every program the fully privileged agent loads, and without either
// nothing is loaded, Start still succeeds and the log names the missing
// capability.
func TestCapabilityDegradation(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop capabilities: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	loadedRE := regexp.MustCompile(`loaded=(\d+) of=`)
	run := func(t *testing.T, caps string) (int, string) {
		t.Helper()
		var cmd *exec.Cmd
		if caps == "all" {
			cmd = exec.Command(exe, "-test.run=^$", "-")
		} else {
			set := "-all"
			if caps != "" {
				set = "-all,+" + strings.ReplaceAll(caps, ",", ",+")
			}
			cmd = exec.Command(setpriv, "--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set,
				"--reuid=0", "--", exe, "-test.run=^$", "-")
		}
		cmd.Env = append(os.Environ(), helperEnv+"=unprivileged")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("collector with capabilities %q: %v\n%s", caps, err, out)
		}
		m := loadedRE.FindStringSubmatch(string(out))
		if m == nil {
			t.Fatalf("collector with capabilities %q printed no count:\n%s", caps, out)
		}
		n, _ := strconv.Atoi(m[1])
		return n, string(out)
	}
	full, _ := run(t, "all")
	if full == 0 {
		t.Fatal("no program loads with every capability")
	}
	t.Run("bpf,perfmon", func(t *testing.T) {
		if n, out := run(t, "bpf,perfmon"); n != full {
			t.Errorf("with CAP_BPF and CAP_PERFMON %d programs loaded, with every capability %d:\n%s", n, full, out)
		}
	})
	for _, c := range []struct{ caps, missing string }{
		{"perfmon,sys_ptrace,dac_read_search", "CAP_BPF"},
		{"bpf,sys_ptrace,dac_read_search", "CAP_PERFMON"},
		{"", "CAP_BPF and CAP_PERFMON"},
	} {
		t.Run("without "+c.missing, func(t *testing.T) {
			n, out := run(t, c.caps)
			if n != 0 {
				t.Errorf("%d programs loaded without %s", n, c.missing)
			}
			if !strings.Contains(out, "eBPF programs cannot be loaded: "+c.missing+" missing") ||
				!strings.Contains(out, "permission denied ("+c.missing+" missing)") {
				t.Errorf("log does not name %s as missing:\n%s", c.missing, out)
			}
		})
	}
}

// TestTracefsUnderHostSysfs runs the collector in a child process with a
// mount namespace of its own where, as in the DaemonSet's pod, tracefs is
// not at /sys/kernel/tracing (nor under /sys/kernel/debug) but the host's
// /sys, with its tracefs, is mounted elsewhere (the pod's /host/sys): the
// collector finds tracefs there and attaches the syscall HTTP programs,
// which need it, without mounting anything.
func TestTracefsUnderHostSysfs(t *testing.T) {
	testenv.RequireRoot(t, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatalf("unshare (util-linux) is needed for a private mount namespace: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	hostSys := t.TempDir()
	script := `set -e
mount --rbind /sys "$1"
umount -l /sys/kernel/debug 2>/dev/null || true
umount -l /sys/kernel/tracing 2>/dev/null || true
if [ -e /sys/kernel/tracing/events ]; then echo "tracefs still at /sys/kernel/tracing"; exit 1; fi
[ -e "$1/kernel/tracing/events" ] || mount -t tracefs tracefs "$1/kernel/tracing"
exec "$2" -test.run='^$' "$1"`
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "sh", "-c", script, "sh", hostSys, exe)
	cmd.Env = append(os.Environ(), helperEnv+"=tracefs-under-sysfs")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("collector with tracefs under %s: %v\n%s", hostSys, err, out)
	}
	want := fmt.Sprintf("tracefs=%s/kernel/tracing syscall_programs=7 of=7", hostSys)
	if !strings.Contains(string(out), want) {
		t.Errorf("child output lacks %q:\n%s", want, out)
	}
}

// tracefsUnderSysfs is the helper for TestTracefsUnderHostSysfs: sysfs is
// where the host's /sys is mounted.
func tracefsUnderSysfs(sysfs string) error {
	cfg := NewConfig()
	cfg.HTTPHook = "syscalls"
	cfg.MountTracefs = false
	cfg.Programs = ProgramsConfig{HTTP: true}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	caps := discoverIn(cfg, sysfs, log)
	o, err := load(loadOptions{cfg: cfg, cgroupHierarchy: -1}, caps, log)
	if err != nil {
		return err
	}
	defer o.close()
	loaded, of := 0, 0
	for _, p := range programs {
		if p.httpHook == "syscalls" {
			of++
			if o.links[p.name] != nil {
				loaded++
			}
		}
	}
	fmt.Printf("tracefs=%s syscall_programs=%d of=%d\n", caps.tracefsDir, loaded, of)
	return nil
}
