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

	"github.com/vigil-agent/vigil/collectors/workload"
)

// resolver maps the cgroup IDs the kernel programs report to workload
// identities; unknown IDs give an empty identity.
type resolver interface {
	Identity(id uint64) workload.Identity
}

// unifiedResolver resolves cgroup2 IDs with the cgroup collector's resolver
// (open by kernfs handle, then a walk), shared with the cgroup metrics.
// Cgroups the kernel reported at mkdir (see knownCgroups) are resolved
// from that record first: open by handle and the walk both fail once the
// cgroup is removed.
type unifiedResolver struct {
	r        *workload.Resolver
	enricher workload.Enricher

	mu    sync.Mutex
	known *knownCgroups
}

func newUnifiedResolver(r *workload.Resolver, enricher workload.Enricher) *unifiedResolver {
	return &unifiedResolver{r: r, enricher: enricher, known: newKnownCgroups(maxKnownCgroups, removedCgroupGrace)}
}

func (u *unifiedResolver) Identity(id uint64) workload.Identity {
	if id == 0 {
		return workload.Identity{}
	}
	u.mu.Lock()
	p, ok := u.known.lookup(id)
	u.mu.Unlock()
	if ok {
		wl := workload.FromCgroupPath(p)
		if u.enricher != nil {
			u.enricher.Enrich(&wl)
		}
		return wl
	}
	wl, err := u.r.CgroupID(id)
	if err != nil {
		return workload.Identity{}
	}
	return wl
}

func (u *unifiedResolver) cgroupCreated(id uint64, path string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.known.add(id, path, time.Now(), nil)
}

func (u *unifiedResolver) cgroupRemoved(id uint64) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.known.remove(id, time.Now(), nil)
}

// noResolver is used when no cgroup hierarchy is usable.
type noResolver struct{}

func (noResolver) Identity(uint64) workload.Identity { return workload.Identity{} }

// cgroupResolver maps the cgroup IDs of the v1 memory hierarchy (which the
// cgroup collector's resolver does not cover: it knows cgroup2 IDs only) the kernel programs report to
// workload identities. Cgroups created while the agent runs are known from
// the kernel's mkdir events (see knownCgroups), which arrive before any
// event of a process inside them. For older cgroups the hierarchy is walked:
// a cgroup's ID is its kernfs node ID, which is also the inode number of its
// directory, so the walk indexes directories by inode; a miss re-walks it
// at most once per minWalkInterval.
type cgroupResolver struct {
	root     string // mount point of the hierarchy
	enricher workload.Enricher

	mu       sync.Mutex
	known    *knownCgroups
	paths    map[uint64]string
	ids      map[uint64]workload.Identity
	lastWalk time.Time
}

const (
	minWalkInterval = 50 * time.Millisecond
	maxCachedIDs    = 8192
)

func newCgroupResolver(root string, enricher workload.Enricher) *cgroupResolver {
	return &cgroupResolver{root: root, enricher: enricher, paths: map[uint64]string{}, ids: map[uint64]workload.Identity{},
		known: newKnownCgroups(maxKnownCgroups, removedCgroupGrace)}
}

// Identity returns the workload identity of cgroup id; unknown IDs (0, or
// a cgroup removed before it was seen) give an empty identity.
func (r *cgroupResolver) Identity(id uint64) workload.Identity {
	if r == nil || id == 0 {
		return workload.Identity{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if wl, ok := r.ids[id]; ok {
		return wl
	}
	p, ok := r.known.lookup(id)
	if !ok {
		p, ok = r.paths[id]
	}
	if !ok && time.Since(r.lastWalk) >= minWalkInterval {
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
	if !named(wl) {
		return wl // asked again: the kube collector may not have listed the pod yet
	}
	if len(r.ids) >= maxCachedIDs {
		clear(r.ids)
	}
	r.ids[id] = wl
	return wl
}

// named reports whether an identity is complete enough to be cached: a
// pod's identity must carry the pod's name. Right after the agent starts,
// its programs see events before the kube collector has listed the node's
// pods; an identity cached then would leave that pod's series without
// namespace, pod and container for good.
func named(wl workload.Identity) bool {
	return wl.PodUID == "" || wl.Pod != ""
}

// resolved reports whether series labelled with wl may be cached by the
// request readers: the identity is named, and its cgroup was found. A new
// cgroup's first request can be read before its mkdir event (on the other
// ring); cached, its empty labels would stay for seriesCacheTTL.
func resolved(wl workload.Identity) bool {
	return named(wl) && wl.CgroupPath != ""
}

func (r *cgroupResolver) cgroupCreated(id uint64, path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known.add(id, path, time.Now(), r.forget)
}

func (r *cgroupResolver) cgroupRemoved(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.known.remove(id, time.Now(), r.forget)
}

// forget drops the cached identity of a cgroup removed long enough ago
// (see removedCgroupGrace). r.mu is held.
func (r *cgroupResolver) forget(id uint64) { delete(r.ids, id) }

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
//
// A mount of the whole hierarchy (mountinfo root "/") is preferred over a
// mount of a part of it: in a container the runtime mounts the container's
// own cgroup at /sys/fs/cgroup/<controller> (root
// "/kubepods/…/<container id>"), listed before the host's hierarchy
// mounted by the DaemonSet at /host/sys/fs/cgroup; paths relative to the
// container's cgroup would name no workload.
func cgroupMount(procFS, hierarchy string) (string, bool, error) {
	f, err := os.Open(filepath.Join(procFS, "self", "mountinfo"))
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	var unified, memory string
	var unifiedWhole, memoryWhole bool
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
		mnt, whole := unescapeMount(pf[4]), pf[3] == "/"
		switch qf[0] {
		case "cgroup2":
			if unified == "" || whole && !unifiedWhole {
				unified, unifiedWhole = mnt, whole
			}
		case "cgroup":
			for _, o := range strings.Split(qf[2], ",") {
				if o == "memory" && (memory == "" || whole && !memoryWhole) {
					memory, memoryWhole = mnt, whole
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
