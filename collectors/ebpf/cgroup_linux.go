//go:build linux

package ebpf

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-agent/vigil/collectors/cgroup"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// resolver maps the cgroup IDs the kernel programs report to workload
// identities; unknown IDs give an empty identity.
type resolver interface {
	Identity(id uint64) workload.Identity
}

// unifiedResolver resolves cgroup2 IDs with the cgroup collector's resolver
// (open by kernfs handle, then a walk), shared with the cgroup metrics.
type unifiedResolver struct{ r *cgroup.Resolver }

func (u unifiedResolver) Identity(id uint64) workload.Identity {
	if id == 0 {
		return workload.Identity{}
	}
	wl, err := u.r.CgroupID(id)
	if err != nil {
		return workload.Identity{}
	}
	return wl
}

// nowResolver is a resolver that can look an ID up without throttling.
type nowResolver interface {
	IdentityNow(id uint64) workload.Identity
}

// identityNow resolves with IdentityNow when r has it (see cgroupResolver).
func identityNow(r resolver, id uint64) workload.Identity {
	if n, ok := r.(nowResolver); ok {
		return n.IdentityNow(id)
	}
	return r.Identity(id)
}

// noResolver is used when no cgroup hierarchy is usable.
type noResolver struct{}

func (noResolver) Identity(uint64) workload.Identity { return workload.Identity{} }

// cgroupResolver maps the cgroup IDs of the v1 memory hierarchy (which the
// cgroup collector's resolver does not cover: it knows cgroup2 IDs only) the kernel programs report to
// workload identities. A cgroup's ID is its kernfs node ID, which is also
// the inode number of its directory, so the hierarchy is walked and indexed
// by inode; a miss re-walks it at most once per minWalkInterval.
type cgroupResolver struct {
	root     string // mount point of the hierarchy
	enricher workload.Enricher

	mu       sync.Mutex
	paths    map[uint64]string
	ids      map[uint64]workload.Identity
	lastWalk time.Time
}

const (
	minWalkInterval = 50 * time.Millisecond
	maxCachedIDs    = 8192
)

func newCgroupResolver(root string, enricher workload.Enricher) *cgroupResolver {
	return &cgroupResolver{root: root, enricher: enricher, paths: map[uint64]string{}, ids: map[uint64]workload.Identity{}}
}

// Identity returns the workload identity of cgroup id; unknown IDs (0, or
// a cgroup removed before it was seen) give an empty identity.
func (r *cgroupResolver) Identity(id uint64) workload.Identity { return r.identity(id, false) }

// IdentityNow is Identity for rare events that must be attributed (process
// exits, OOM kills): an unknown ID re-walks the hierarchy even when a walk
// just happened, so that a cgroup made a moment ago is found.
func (r *cgroupResolver) IdentityNow(id uint64) workload.Identity { return r.identity(id, true) }

func (r *cgroupResolver) identity(id uint64, force bool) workload.Identity {
	if r == nil || id == 0 {
		return workload.Identity{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if wl, ok := r.ids[id]; ok {
		return wl
	}
	p, ok := r.paths[id]
	if !ok && (force || time.Since(r.lastWalk) >= minWalkInterval) {
		r.walk()
		p, ok = r.paths[id]
	}
	if !ok {
		return workload.Identity{}
	}
	wl := workload.FromCgroupPath(p)
	if r.enricher != nil {
		r.enricher.Enrich(&wl)
	}
	if len(r.ids) >= maxCachedIDs {
		clear(r.ids)
	}
	r.ids[id] = wl
	return wl
}

// walk re-indexes the hierarchy. Cgroups that disappeared are forgotten.
func (r *cgroupResolver) walk() {
	r.lastWalk = time.Now()
	paths := make(map[uint64]string, len(r.paths))
	_ = filepath.WalkDir(r.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		rel, err := filepath.Rel(r.root, p)
		if err != nil {
			return nil
		}
		paths[st.Ino] = filepath.Clean("/" + rel)
		return nil
	})
	r.paths = paths
}

// cgroupMount finds where the chosen hierarchy is mounted: "unified" is
// the cgroup2 mount, "memory" the v1 memory controller; "auto" picks the
// unified hierarchy when no v1 memory hierarchy is mounted. It returns the
// mount point and whether it is the v1 memory hierarchy.
func cgroupMount(procFS, hierarchy string) (string, bool, error) {
	f, err := os.Open(filepath.Join(procFS, "self", "mountinfo"))
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	var unified, memory string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/memory rw,… shared:1 - cgroup cgroup rw,memory
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mnt := unescapeMount(pf[4])
		switch qf[0] {
		case "cgroup2":
			if unified == "" {
				unified = mnt
			}
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if o == "memory" && memory == "" {
					memory = mnt
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, err
	}
	switch {
	case hierarchy == "unified" && unified != "":
		return unified, false, nil
	case hierarchy == "memory" && memory != "":
		return memory, true, nil
	case hierarchy == "auto" && memory != "":
		return memory, true, nil
	case hierarchy == "auto" && unified != "":
		return unified, false, nil
	}
	return "", false, fmt.Errorf("no %s cgroup hierarchy is mounted", hierarchy)
}

func unescapeMount(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
