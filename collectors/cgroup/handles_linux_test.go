//go:build linux

package cgroup

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// handleHelperEnv makes the test binary resolve one cgroup2 ID (the
// variable's value) and print what it found instead of running tests.
const handleHelperEnv = "VIGIL_CGROUP_TEST_RESOLVE_ID"

// handleHelper is the child process of TestCgroupIDWithoutDACReadSearch.
func handleHelper(idText string) int {
	id, err := strconv.ParseUint(idText, 10, 64)
	if err != nil {
		fmt.Println("bad ID:", err)
		return 2
	}
	r := newResolver(settingsFor("/sys").Paths, nil)
	fmt.Printf("handles: %v\n", r.HandleLookup())
	wl, err := r.CgroupID(id)
	if err != nil {
		fmt.Println("resolve:", err)
		return 1
	}
	fmt.Printf("path: %s\nhandle tried again: %v\n", wl.CgroupPath, r.UsesHandles())
	return 0
}

// TestCgroupIDWithoutDACReadSearch resolves a real cgroup2 ID in a child
// process running as root without CAP_DAC_READ_SEARCH (the DaemonSet's
// set): open_by_handle_at is refused and said so, and the ID is still
// resolved, by walking the hierarchy. With the capability the handle
// works.
func TestCgroupIDWithoutDACReadSearch(t *testing.T) {
	r := newRealCgroups(t)
	if r.l.v2 == "" {
		t.Skip("pure cgroup v1 node: there are no cgroup2 IDs to resolve")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("setpriv (util-linux) is needed to drop capabilities: %v", err)
	}
	svc := "/vigil-test-" + randHex(8) + "/system.slice/handles.service"
	r.mkdir(svc)
	var st unix.Stat_t
	if err := unix.Stat(r.l.v2+svc, &st); err != nil {
		t.Fatal(err)
	}
	if err := newResolver(settingsFor("/sys").Paths, nil).HandleLookup(); err != nil {
		t.Fatalf("HandleLookup as root with every capability: %v", err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const set = "-all,+bpf,+perfmon"
	cmd := exec.Command(setpriv, "--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--reuid=0", "--", exe)
	cmd.Env = append(os.Environ(), handleHelperEnv+"="+strconv.FormatUint(st.Ino, 10))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("resolver without CAP_DAC_READ_SEARCH: %v\n%s", err, out)
	}
	for _, want := range []string{
		"handles: open_by_handle_at: operation not permitted (CAP_DAC_READ_SEARCH missing)",
		"path: " + svc + "\n",
		"handle tried again: false",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}
