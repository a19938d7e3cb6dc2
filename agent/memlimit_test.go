package agent

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

func TestValidateMemoryLimit(t *testing.T) {
	for v, ok := range map[string]bool{
		"auto": true, "off": true, "48MiB": true, "16MiB": true, "1GiB": true,
		"15MiB": false, "0": false, "lots": false, "": false, "-48MiB": false, "48 MiB of it": false,
	} {
		cfg := defaultConfig()
		cfg.Global.MemoryLimit = v
		err := cfg.Validate()
		if (err == nil) != ok {
			t.Errorf("memory_limit %q: err %v, want ok=%v", v, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "global.memory_limit: ") {
			t.Errorf("memory_limit %q: error %q does not name the field", v, err)
		}
	}
	if got := defaultConfig().Global.MemoryLimit; got != MemoryLimitAuto {
		t.Errorf("default memory_limit %q, want auto", got)
	}
	cfg, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Global.MemoryLimit != MemoryLimitAuto {
		t.Errorf("embedded default configuration: memory_limit %q, want auto", cfg.Global.MemoryLimit)
	}
}

func TestMemoryLimitResolves(t *testing.T) {
	cg := func(n int64, err error) func() (int64, error) { return func() (int64, error) { return n, err } }
	for _, c := range []struct {
		setting string
		cgroup  func() (int64, error)
		want    int64
		err     bool
	}{
		{"auto", cg(512<<20, nil), 512 << 20 * 8 / 10, false},
		{"auto", cg(0, nil), math.MaxInt64, false},
		{"auto", cg(0, errors.New("unreadable")), math.MaxInt64, true},
		{"off", cg(512<<20, nil), math.MaxInt64, false},
		{"48MiB", cg(512<<20, nil), 48 << 20, false},
	} {
		got, source, err := memoryLimit(c.setting, c.cgroup)
		if got != c.want || (err != nil) != c.err || source == "" {
			t.Errorf("%s: limit %d (%q), err %v; want %d, err %v", c.setting, got, source, err, c.want, c.err)
		}
	}
}

// A real process in a real cgroup v1 memory hierarchy: the smallest limit
// on its path counts (its parent's here), and one without a limit has none.
func TestCgroupMemoryLimitRealV1(t *testing.T) {
	root := "/sys/fs/cgroup"
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	if _, err := os.Stat(filepath.Join(root, "memory", "memory.limit_in_bytes")); err != nil {
		t.Skip("no cgroup v1 memory hierarchy here")
	}
	parent := filepath.Join(root, "memory", fmt.Sprintf("vigil-memlimit-test-%d", os.Getpid()))
	child := filepath.Join(parent, "child")
	if err := os.MkdirAll(child, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.Remove(child)
		_ = os.Remove(parent)
	})
	write := func(p, v string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(child, "cgroup.procs"), strconv.Itoa(cmd.Process.Pid))
	procCgroup := fmt.Sprintf("/proc/%d/cgroup", cmd.Process.Pid)

	got, err := cgroupMemoryLimit(procCgroup, root)
	if err != nil || got != 0 {
		t.Errorf("no limit set: %d, %v; want 0", got, err)
	}
	write(filepath.Join(parent, "memory.limit_in_bytes"), strconv.Itoa(300<<20))
	write(filepath.Join(child, "memory.limit_in_bytes"), strconv.Itoa(400<<20))
	if got, err := cgroupMemoryLimit(procCgroup, root); err != nil || got != 300<<20 {
		t.Errorf("parent 300 MiB, child 400 MiB: %d, %v; want %d", got, err, 300<<20)
	}
	write(filepath.Join(child, "memory.limit_in_bytes"), strconv.Itoa(200<<20))
	if got, err := cgroupMemoryLimit(procCgroup, root); err != nil || got != 200<<20 {
		t.Errorf("parent 300 MiB, child 200 MiB: %d, %v; want %d", got, err, 200<<20)
	}
	// The process moves back to the root: no limit on its path.
	write(filepath.Join(root, "memory", "cgroup.procs"), strconv.Itoa(cmd.Process.Pid))
	if got, err := cgroupMemoryLimit(procCgroup, root); err != nil || got != 0 {
		t.Errorf("back in the root: %d, %v; want 0", got, err)
	}
}

// cgroup v2 (this machine mounts its memory controller in v1 only, so a
// fabricated tree): memory.max "max" is no limit, the smallest number on
// the path counts, a directory missing on the way (a container's own
// cgroup mounted as the root) is passed over, a hybrid host's v2 tree is
// under unified/, and garbage is an error naming the file.
func TestCgroupMemoryLimitFakeV2(t *testing.T) {
	dir := t.TempDir()
	file := func(p, content string) string {
		t.Helper()
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	proc := file("proc-cgroup", "0::/kubepods/pod1/c1\n")
	file("fs/memory.max", "max\n") // a container's own cgroup as the root
	file("fs/kubepods/memory.max", "max\n")
	file("fs/kubepods/pod1/c1/memory.max", "268435456\n")
	if got, err := cgroupMemoryLimit(proc, filepath.Join(dir, "fs")); err != nil || got != 256<<20 {
		t.Errorf("v2: %d, %v; want %d", got, err, 256<<20)
	}
	file("fs/kubepods/pod1/c1/memory.max", "max\n")
	if got, err := cgroupMemoryLimit(proc, filepath.Join(dir, "fs")); err != nil || got != 0 {
		t.Errorf("v2 all max: %d, %v; want 0", got, err)
	}
	file("fs/memory.max", "134217728\n")
	if got, err := cgroupMemoryLimit(proc, filepath.Join(dir, "fs")); err != nil || got != 128<<20 {
		t.Errorf("v2 limit at the root only: %d, %v; want %d", got, err, 128<<20)
	}
	file("hybrid/unified/x/memory.max", "100663296\n")
	proc2 := file("proc-cgroup2", "1:name=systemd:/x\n0::/x\n")
	if got, err := cgroupMemoryLimit(proc2, filepath.Join(dir, "hybrid")); err != nil || got != 96<<20 {
		t.Errorf("hybrid: %d, %v; want %d", got, err, 96<<20)
	}
	bad := file("fs/kubepods/memory.max", "lots\n")
	if _, err := cgroupMemoryLimit(proc, filepath.Join(dir, "fs")); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("garbage in %s: err %v", bad, err)
	}
	if _, err := cgroupMemoryLimit(filepath.Join(dir, "missing"), dir); err == nil {
		t.Error("a missing cgroup file gives no error")
	}
}

// applyMemoryLimit sets the runtime's soft limit, off clears it, and
// GOMEMLIMIT in the environment wins.
func TestApplyMemoryLimit(t *testing.T) {
	orig := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(orig) })
	a := &Agent{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	cfg := defaultConfig()
	t.Setenv("GOMEMLIMIT", "")

	cfg.Global.MemoryLimit = "48MiB"
	a.applyMemoryLimit(cfg)
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Errorf("48MiB: runtime limit %d", got)
	}
	cfg.Global.MemoryLimit = MemoryLimitOff
	a.applyMemoryLimit(cfg)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("off: runtime limit %d", got)
	}
	t.Setenv("GOMEMLIMIT", "100MiB")
	cfg.Global.MemoryLimit = "48MiB"
	a.applyMemoryLimit(cfg)
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Errorf("with GOMEMLIMIT set the configured limit was applied: %d", got)
	}
}
