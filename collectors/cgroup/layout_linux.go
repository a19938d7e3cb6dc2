//go:build linux

package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// Layout names how the cgroup hierarchies are mounted on the node.
type Layout string

// The layouts Vigil understands.
const (
	// LayoutV2 is the unified hierarchy alone, mounted at /sys/fs/cgroup
	// (recent systemd, most Kubernetes nodes today).
	LayoutV2 Layout = "v2"
	// LayoutHybrid is v1 controllers under /sys/fs/cgroup/<controller> plus
	// a cgroup2 mount without controllers (usually /sys/fs/cgroup/unified).
	// Metrics come from the v1 controllers; cgroup IDs from the cgroup2 mount.
	LayoutHybrid Layout = "hybrid"
	// LayoutV1 is v1 controllers only.
	LayoutV1 Layout = "v1"
)

// layout is what detectLayout found: the directories to read from.
type layout struct {
	kind Layout
	// v2 is the cgroup2 hierarchy's root directory, or "" when there is
	// none (pure v1).
	v2 string
	// cpu, cpuacct and memory are the v1 controllers' root directories,
	// "" when absent. cpu and cpuacct are the same directory when the two
	// are co-mounted ("cpu,cpuacct").
	cpu, cpuacct, memory string
}

// primary returns the hierarchy walked to find cgroups: the unified one on
// v2, otherwise the v1 memory controller (then cpuacct, then cpu), since in
// v1 a container has the same relative path in every controller.
func (l layout) primary() string {
	switch {
	case l.kind == LayoutV2:
		return l.v2
	case l.memory != "":
		return l.memory
	case l.cpuacct != "":
		return l.cpuacct
	}
	return l.cpu
}

var errNoCgroups = errors.New("no cgroup hierarchy found")

// detectLayout inspects <sysfs>/fs/cgroup. A cgroup.controllers file at
// the top means pure v2. Otherwise the v1 controllers are looked up by the
// file each one owns (so "cpu,cpuacct" co-mounts and their usual "cpu" and
// "cpuacct" symlinks both work), and a cgroup2 mount beside them (systemd
// names it "unified") makes the layout hybrid.
func detectLayout(sysfs string) (layout, error) {
	root := filepath.Join(sysfs, "fs", "cgroup")
	v2 := workload.Cgroup2Root(sysfs)
	if v2 == root {
		return layout{kind: LayoutV2, v2: root}, nil
	}
	var l layout
	l.cpu = findController(root, "cpu.cfs_quota_us", "cpu", "cpu,cpuacct", "cpuacct,cpu")
	l.cpuacct = findController(root, "cpuacct.usage", "cpuacct", "cpu,cpuacct", "cpuacct,cpu")
	l.memory = findController(root, "memory.usage_in_bytes", "memory")
	if l.cpu == "" && l.cpuacct == "" && l.memory == "" {
		return layout{}, fmt.Errorf("%w under %s: neither cgroup.controllers (v2) nor a cpu, cpuacct or memory controller directory (v1)", errNoCgroups, root)
	}
	l.kind = LayoutV1
	if v2 != "" {
		l.kind, l.v2 = LayoutHybrid, v2
	}
	return l, nil
}

// findController returns the first of names under root that holds marker.
func findController(root, marker string, names ...string) string {
	for _, n := range names {
		d := filepath.Join(root, n)
		if exists(filepath.Join(d, marker)) {
			return d
		}
	}
	return ""
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
