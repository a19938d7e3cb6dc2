//go:build linux

package workload

import (
	"os"
	"path/filepath"
)

// MaxCgroupDepth bounds every walk of a cgroup hierarchy (the resolver's
// and the cgroup collector's); real layouts are at most about 8 levels
// deep.
const MaxCgroupDepth = 32

// Cgroup2Root returns the cgroup2 hierarchy's root directory under
// <sysfs>/fs/cgroup: the top itself on a pure v2 node (it holds
// cgroup.controllers), the "unified" mount beside the v1 controllers on a
// hybrid node (systemd's name), or "" on a pure v1 node. Cgroup IDs (the
// eBPF collector's) name directories of this hierarchy; the cgroup
// collector's layout detection starts from it too.
func Cgroup2Root(sysfs string) string {
	root := filepath.Join(sysfs, "fs", "cgroup")
	for _, d := range []string{root, filepath.Join(root, "unified")} {
		if _, err := os.Stat(filepath.Join(d, "cgroup.controllers")); err == nil {
			return d
		}
	}
	return ""
}
