//go:build linux

package ebpf

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCgroupMountPrefersWholeHierarchy: inside a DaemonSet pod the runtime
// mounts the container's own cgroup at /sys/fs/cgroup/memory (mountinfo
// root /kubepods/…/<id>), listed before the host's hierarchy the pod mounts
// at /host/sys/fs/cgroup; the collector must walk the host's (root "/"),
// or no pod's events name their workload.
func TestCgroupMountPrefersWholeHierarchy(t *testing.T) {
	const mountinfo = `1200 1100 0:60 / / ro,relatime - overlay overlay rw
1210 1200 0:31 /vigil-node-1/kubepods/besteffort/pod1/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
1211 1200 0:29 /vigil-node-1/kubepods/besteffort/pod1/abc /sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw
1220 1200 0:31 / /host/sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory
1221 1200 0:29 / /host/sys/fs/cgroup/unified ro,nosuid - cgroup2 cgroup2 rw
`
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "self", "mountinfo"), []byte(mountinfo), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		hierarchy, want string
		memory          bool
	}{
		{"auto", "/host/sys/fs/cgroup/memory", true},
		{"memory", "/host/sys/fs/cgroup/memory", true},
		{"unified", "/host/sys/fs/cgroup/unified", false},
	} {
		root, memory, err := cgroupMount(proc, c.hierarchy)
		if err != nil || root != c.want || memory != c.memory {
			t.Errorf("cgroupMount(%s) = %q, %v, %v; want %q, %v", c.hierarchy, root, memory, err, c.want, c.memory)
		}
	}
}
