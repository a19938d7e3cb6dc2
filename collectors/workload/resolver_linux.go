//go:build linux

package workload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ErrUnknownCgroupID is returned by Resolver.CgroupID when no cgroup in the
// cgroup2 hierarchy has the ID (it was removed before it was first looked
// up, or the ID is from another hierarchy).
var ErrUnknownCgroupID = errors.New("unknown cgroup ID")

// ErrNoCgroup2 is returned by Resolver.CgroupID on a node without a cgroup2
// hierarchy (pure cgroup v1), where cgroup IDs name nothing Vigil can see.
var ErrNoCgroup2 = errors.New("no cgroup2 hierarchy on this node")

// Resolver maps a process or a cgroup2 ID to its cgroup path and workload
// identity. The eBPF collectors use it to label what they see in the
// kernel, so their signals carry the same identity as the cgroup metrics.
// It is safe for concurrent use.
type Resolver struct {
	procfs   string
	v2       string // cgroup2 root directory, "" when there is none
	enricher Enricher

	mu       sync.Mutex
	byID     map[uint64]string // cgroup ID -> path relative to the v2 root
	lastWalk time.Time

	// noHandles is set once open_by_handle_at was refused (the process
	// lacks CAP_DAC_READ_SEARCH): lookups go straight to the walk.
	noHandles atomic.Bool
}

// idCacheSize bounds the ID cache; when full it is emptied and refilled on
// demand. Cgroup IDs are 64-bit and never reused while the system runs, so
// an entry never goes stale: a removed cgroup keeps resolving to the path
// it had, which is what events from its last processes need.
const idCacheSize = 16384

// walkEvery rate-limits the fallback walk of the whole hierarchy when an ID
// misses the cache and cannot be opened by handle.
const walkEvery = time.Second

// NewResolver returns a resolver reading <procfs>/<pid>/cgroup and the
// cgroup2 hierarchy found under <sysfs>/fs/cgroup (Cgroup2Root). Empty
// paths mean /proc and /sys; enricher may be nil.
func NewResolver(procfs, sysfs string, enricher Enricher) *Resolver {
	if procfs == "" {
		procfs = "/proc"
	}
	if sysfs == "" {
		sysfs = "/sys"
	}
	return &Resolver{procfs: procfs, v2: Cgroup2Root(sysfs), enricher: enricher, byID: map[uint64]string{}}
}

// UsesHandles reports whether lookups by cgroup ID still try
// open_by_handle_at; false once it was refused (CAP_DAC_READ_SEARCH
// missing) and lookups walk the hierarchy instead.
func (r *Resolver) UsesHandles() bool { return !r.noHandles.Load() }

// PID returns the cgroup path and identity of a process, from
// /proc/<pid>/cgroup. The cgroup v2 line ("0::<path>") is preferred; when
// it is missing or names the root (a hybrid node whose container runtime
// only placed the process in v1 controllers), the v1 memory, then cpu,
// cpuacct and name=systemd lines are used.
func (r *Resolver) PID(pid int) (Identity, error) {
	file := r.procfs + "/" + strconv.Itoa(pid) + "/cgroup"
	data, err := os.ReadFile(file)
	if err != nil {
		return Identity{}, err
	}
	p, err := parseProcCgroup(data)
	if err != nil {
		return Identity{}, fmt.Errorf("%s: %w", file, err)
	}
	return r.identity(p), nil
}

// parseProcCgroup picks the cgroup path from the content of
// /proc/<pid>/cgroup ("hierarchy-ID:controller-list:path" per line).
func parseProcCgroup(data []byte) (string, error) {
	const (
		prioV2 = iota
		prioMemory
		prioCPU
		prioCPUAcct
		prioSystemd
		prioV2Root
		prioNone
	)
	best, bestPrio := "", prioNone
	for n, line := range bytes.Split(data, []byte{'\n'}) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		parts := bytes.SplitN(line, []byte{':'}, 3)
		if len(parts) != 3 || len(parts[2]) == 0 || parts[2][0] != '/' {
			return "", fmt.Errorf("line %d: want \"hierarchy-ID:controllers:/path\", got %.40q", n+1, line)
		}
		p := string(parts[2])
		prio := prioNone
		if string(parts[0]) == "0" && len(parts[1]) == 0 {
			prio = prioV2
			if p == "/" {
				prio = prioV2Root
			}
		} else {
			for _, ctl := range strings.Split(string(parts[1]), ",") {
				switch ctl {
				case "memory":
					prio = min(prio, prioMemory)
				case "cpu":
					prio = min(prio, prioCPU)
				case "cpuacct":
					prio = min(prio, prioCPUAcct)
				case "name=systemd":
					prio = min(prio, prioSystemd)
				}
			}
		}
		if prio < bestPrio {
			best, bestPrio = p, prio
		}
	}
	if bestPrio == prioNone {
		return "", errors.New("no cgroup v2 line and no memory, cpu, cpuacct or name=systemd line")
	}
	return best, nil
}

// CgroupID returns the cgroup path and identity of a cgroup2 ID: the inode
// number of the cgroup's directory in the cgroup2 hierarchy, which is what
// bpf_get_current_cgroup_id() and bpf_skb_cgroup_id() return. Lookups are
// cached. On a miss the cgroup is opened by its kernfs file handle
// (open_by_handle_at, needs CAP_DAC_READ_SEARCH; see HandleLookup), and
// failing that the hierarchy is walked (at most once a second).
func (r *Resolver) CgroupID(id uint64) (Identity, error) {
	if r.v2 == "" {
		return Identity{}, ErrNoCgroup2
	}
	r.mu.Lock()
	p, ok := r.byID[id]
	r.mu.Unlock()
	if !ok {
		var err error
		p, err = r.lookupID(id)
		if err != nil {
			return Identity{}, err
		}
	}
	return r.identity(p), nil
}

func (r *Resolver) identity(p string) Identity {
	id := FromCgroupPath(p)
	if r.enricher != nil {
		r.enricher.Enrich(&id)
	}
	return id
}

func (r *Resolver) remember(id uint64, p string) {
	if len(r.byID) >= idCacheSize {
		clear(r.byID)
	}
	r.byID[id] = p
}

// HandleLookup reports whether cgroup IDs can be opened by their kernfs
// handle, by opening the hierarchy's root that way: nil when they can, else
// why not (for example "operation not permitted (CAP_DAC_READ_SEARCH
// missing)"), in which case CgroupID resolves by walking the hierarchy
// only, at most once a second, and does not try handles again.
func (r *Resolver) HandleLookup() error {
	if r.v2 == "" {
		return ErrNoCgroup2
	}
	var st unix.Stat_t
	if err := unix.Stat(r.v2, &st); err != nil {
		return &os.PathError{Op: "stat", Path: r.v2, Err: err}
	}
	_, err := r.openByID(st.Ino)
	return err
}

func (r *Resolver) lookupID(id uint64) (string, error) {
	if !r.noHandles.Load() {
		if p, err := r.openByID(id); err == nil {
			r.mu.Lock()
			r.remember(id, p)
			r.mu.Unlock()
			return p, nil
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.byID[id]; ok {
		return p, nil
	}
	if time.Since(r.lastWalk) < walkEvery {
		return "", fmt.Errorf("%w %d (hierarchy walked less than %s ago)", ErrUnknownCgroupID, id, walkEvery)
	}
	r.lastWalk = time.Now()
	if err := r.walkIDs(r.v2, "", 0); err != nil {
		return "", err
	}
	if p, ok := r.byID[id]; ok {
		return p, nil
	}
	return "", fmt.Errorf("%w %d", ErrUnknownCgroupID, id)
}

// fileIDKernfs is the kernel's FILEID_KERNFS handle type: a kernfs node
// (every cgroup2 directory is one) encoded by its 64-bit ID.
const fileIDKernfs = 0xfe

// openByID opens the cgroup directory with the given ID through its file
// handle and reads its path back from /proc/self/fd.
func (r *Resolver) openByID(id uint64) (string, error) {
	mfd, err := unix.Open(r.v2, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(mfd)
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(fileIDKernfs, b[:]), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if errors.Is(err, unix.EPERM) {
		r.noHandles.Store(true)
		return "", fmt.Errorf("open_by_handle_at: %w (CAP_DAC_READ_SEARCH missing)", err)
	}
	if err != nil {
		return "", fmt.Errorf("open_by_handle_at: %w", err)
	}
	defer unix.Close(fd)
	target, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	root, err := filepath.EvalSymlinks(r.v2)
	if err != nil {
		return "", err
	}
	rel, ok := strings.CutPrefix(target, root)
	if !ok || (rel != "" && rel[0] != '/') {
		return "", fmt.Errorf("cgroup %d opened as %q, outside %s", id, target, root)
	}
	if rel == "" {
		rel = "/"
	}
	return rel, nil
}

// walkIDs records the ID (inode) of every directory below dir. r.mu is held.
func (r *Resolver) walkIDs(dir, rel string, depth int) error {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		if depth == 0 {
			return fmt.Errorf("walking cgroup2 hierarchy: %w", &os.PathError{Op: "stat", Path: dir, Err: err})
		}
		return nil
	}
	p := rel
	if p == "" {
		p = "/"
	}
	r.remember(st.Ino, p)
	if depth >= MaxCgroupDepth {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // removed meanwhile
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = r.walkIDs(dir+"/"+e.Name(), rel+"/"+e.Name(), depth+1)
		}
	}
	return nil
}
