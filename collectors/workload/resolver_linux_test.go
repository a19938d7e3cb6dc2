//go:build linux

package workload

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestParseProcCgroup(t *testing.T) {
	cases := []struct {
		name, in, want, err string
	}{
		{"pure v2", "0::/kubepods.slice/x.scope\n", "/kubepods.slice/x.scope", ""},
		{"hybrid prefers placed v2", "9:name=systemd:/system.slice/a.service\n4:memory:/system.slice/a.service\n0::/system.slice/a.service\n", "/system.slice/a.service", ""},
		{"hybrid v2 root falls back to memory", "4:memory:/kubepods/burstable/podX/abc\n1:cpu:/kubepods/burstable/podX/abc\n0::/\n", "/kubepods/burstable/podX/abc", ""},
		{"v1 co-mounted cpu", "3:cpu,cpuacct:/docker/abc\n9:name=systemd:/system.slice/docker.service\n", "/docker/abc", ""},
		{"v1 systemd only", "9:name=systemd:/user.slice\n", "/user.slice", ""},
		{"root only", "0::/\n", "/", ""},
		{"malformed", "garbage\n", "", "line 1:"},
		{"no usable line", "5:devices:/x\n", "", "no cgroup v2 line"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcCgroup([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Errorf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// The resolver finds a real cgroup2 directory's ID both ways: by handle
// (open_by_handle_at, with CAP_DAC_READ_SEARCH) and by walking the
// hierarchy; an unknown ID is ErrUnknownCgroupID, and a removed cgroup
// still resolves from the cache (its last processes' events come late).
func TestResolverFindsRealCgroupByHandleAndWalk(t *testing.T) {
	testenv.RequireRoot(t, "creating a cgroup")
	v2 := Cgroup2Root("/sys")
	if v2 == "" {
		t.Skip("pure cgroup v1 node: there are no cgroup2 IDs to resolve")
	}
	rel := fmt.Sprintf("/vigil-test-%d/system.slice/resolve.service", rand.Uint64())
	if err := os.MkdirAll(v2+rel, 0o755); err != nil {
		t.Fatal(err)
	}
	top := v2 + rel[:strings.Index(rel[1:], "/")+1]
	t.Cleanup(func() {
		// cgroup directories are removed leaf first, with rmdir.
		for d := v2 + rel; strings.HasPrefix(d, top); d = filepath.Dir(d) {
			_ = os.Remove(d)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(v2+rel, &st); err != nil {
		t.Fatal(err)
	}
	res := NewResolver("/proc", "/sys", nil)
	if p, err := res.openByID(st.Ino); err != nil || p != rel {
		t.Errorf("open by handle: %q, %v", p, err)
	}
	walked := NewResolver("/proc", "/sys", nil)
	walked.mu.Lock()
	err := walked.walkIDs(walked.v2, "", 0)
	p := walked.byID[st.Ino]
	walked.mu.Unlock()
	if err != nil || p != rel {
		t.Errorf("walk: %q, %v", p, err)
	}
	id, err := res.CgroupID(st.Ino)
	if err != nil || id.CgroupPath != rel || id.SystemdUnit != "resolve.service" {
		t.Errorf("CgroupID: %+v, %v", id, err)
	}
	if _, err := res.CgroupID(1 << 62); !errors.Is(err, ErrUnknownCgroupID) {
		t.Errorf("unknown ID: %v", err)
	}
	for d := v2 + rel; strings.HasPrefix(d, top); d = filepath.Dir(d) {
		if err := os.Remove(d); err != nil {
			t.Fatal(err)
		}
	}
	if id, err := res.CgroupID(st.Ino); err != nil || id.CgroupPath != rel {
		t.Errorf("removed cgroup: %+v, %v", id, err)
	}
}
