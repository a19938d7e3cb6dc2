//go:build linux

package ebpf

import (
	"bufio"
	"container/list"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// Cgroup events (bpf/cgroup.h): the kernel reports every cgroup created in
// and removed from the hierarchy workloads are identified by, on the same
// ring buffer as the process events. A cgroup's mkdir is always read before
// the exec and exit events of the processes inside it, so a container that
// crashes at start is attributed even when its runtime has removed the
// cgroup before user space reads the exit.

type cgroupEvent = vigilVigilCgroupEvent

var cgroupEventSize = binary.Size(cgroupEvent{})

// Kinds of cgroup events, as in bpf/cgroup.h.
const (
	cgroupMkdir = 1
	cgroupRmdir = 2
)

const (
	// maxKnownCgroups bounds the cgroups remembered from mkdir events; past
	// it the least recently used one is forgotten (and falls back to the
	// walk while its directory exists).
	maxKnownCgroups = 16384
	// removedCgroupGrace is how long a removed cgroup is still resolved:
	// events of its last processes may still be queued, on the HTTP ring
	// or in a series cache, when the rmdir is read.
	removedCgroupGrace = 30 * time.Second
)

// cgroupTracker is a resolver that learns cgroups from the kernel's mkdir
// and rmdir events.
type cgroupTracker interface {
	cgroupCreated(id uint64, path string)
	cgroupRemoved(id uint64)
}

// handleCgroup records a created or removed cgroup. A truncated path is
// not recorded: the walk finds the cgroup while it exists.
func (h *handlers) handleCgroup(e *cgroupEvent) {
	tr, ok := h.cgroups.(cgroupTracker)
	if !ok {
		return
	}
	switch e.Kind {
	case cgroupMkdir:
		if e.Truncated != 0 || e.CgroupId == 0 || int(e.PathLen) > len(e.Path) {
			return
		}
		p := cString(e.Path[:e.PathLen])
		if p == "" || p[0] != '/' {
			return
		}
		tr.cgroupCreated(e.CgroupId, p)
	case cgroupRmdir:
		tr.cgroupRemoved(e.CgroupId)
	}
}

func cString(b []int8) string {
	out := make([]byte, len(b))
	for i, c := range b {
		if c == 0 {
			return string(out[:i])
		}
		out[i] = byte(c)
	}
	return string(out)
}

// countingResolver counts the lookups that give no cgroup path: a cgroup
// removed before it was seen (and created before the agent started, or
// whose mkdir event was lost), or ID 0 (the kernel could not read it).
type countingResolver struct {
	resolver
	unresolved prometheus.Counter
}

func (c countingResolver) Identity(id uint64) workload.Identity {
	wl := c.resolver.Identity(id)
	if wl.CgroupPath == "" {
		c.unresolved.Inc()
	}
	return wl
}

func (c countingResolver) cgroupCreated(id uint64, path string) {
	if tr, ok := c.resolver.(cgroupTracker); ok {
		tr.cgroupCreated(id, path)
	}
}

func (c countingResolver) cgroupRemoved(id uint64) {
	if tr, ok := c.resolver.(cgroupTracker); ok {
		tr.cgroupRemoved(id)
	}
}

// knownCgroup is one cgroup reported by a mkdir event.
type knownCgroup struct {
	id      uint64
	path    string
	removed time.Time // zero while the cgroup exists
}

// knownCgroups maps cgroup IDs to paths as the kernel reported them at
// mkdir. It holds at most max entries, evicting the least recently used. A
// removed cgroup is kept for grace after its rmdir was read, so that events
// still queued for it resolve, then expired lazily (on later mkdirs and
// rmdirs). Cgroup IDs are not reused while the system runs. Not safe for
// concurrent use: the owning resolver locks it.
type knownCgroups struct {
	max     int
	grace   time.Duration
	entries map[uint64]*list.Element
	lru     list.List // of *knownCgroup, most recently used first
	removed list.List // of *knownCgroup, in removal order (oldest first)
	rmElems map[uint64]*list.Element
}

func newKnownCgroups(max int, grace time.Duration) *knownCgroups {
	return &knownCgroups{max: max, grace: grace, entries: map[uint64]*list.Element{}, rmElems: map[uint64]*list.Element{}}
}

func (k *knownCgroups) len() int { return len(k.entries) }

// lookup returns the path of cgroup id.
func (k *knownCgroups) lookup(id uint64) (string, bool) {
	el, ok := k.entries[id]
	if !ok {
		return "", false
	}
	k.lru.MoveToFront(el)
	return el.Value.(*knownCgroup).path, true
}

// add records a created cgroup. forget, when not nil, is called with the
// ID of every entry dropped to make room or expired.
func (k *knownCgroups) add(id uint64, path string, now time.Time, forget func(uint64)) {
	k.expire(now, forget)
	if el, ok := k.entries[id]; ok {
		c := el.Value.(*knownCgroup)
		c.path = path
		k.lru.MoveToFront(el)
		return
	}
	for len(k.entries) >= k.max {
		k.drop(k.lru.Back().Value.(*knownCgroup).id, forget)
	}
	k.entries[id] = k.lru.PushFront(&knownCgroup{id: id, path: path})
}

// remove marks cgroup id as removed; it is dropped grace later.
func (k *knownCgroups) remove(id uint64, now time.Time, forget func(uint64)) {
	k.expire(now, forget)
	el, ok := k.entries[id]
	if !ok {
		return
	}
	c := el.Value.(*knownCgroup)
	if !c.removed.IsZero() {
		return
	}
	c.removed = now
	k.rmElems[id] = k.removed.PushBack(c)
}

// expire drops the cgroups removed more than grace before now.
func (k *knownCgroups) expire(now time.Time, forget func(uint64)) {
	for el := k.removed.Front(); el != nil; el = k.removed.Front() {
		c := el.Value.(*knownCgroup)
		if now.Sub(c.removed) < k.grace {
			return
		}
		k.drop(c.id, forget)
	}
}

func (k *knownCgroups) drop(id uint64, forget func(uint64)) {
	if el, ok := k.entries[id]; ok {
		k.lru.Remove(el)
		delete(k.entries, id)
	}
	if el, ok := k.rmElems[id]; ok {
		k.removed.Remove(el)
		delete(k.rmElems, id)
	}
	if forget != nil {
		forget(id)
	}
}

// cgroupHierarchyID returns the ID the kernel gives the hierarchy the
// resolver uses (the first field of /proc/<pid>/cgroup lines): 0 for the
// unified hierarchy, the memory controller's hierarchy from /proc/cgroups
// for the v1 memory hierarchy.
func cgroupHierarchyID(procFS string, memory bool) (int32, error) {
	if !memory {
		return 0, nil
	}
	file := filepath.Join(procFS, "cgroups")
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		// #subsys_name	hierarchy	num_cgroups	enabled
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "memory" {
			continue
		}
		id, err := strconv.ParseInt(fields[1], 10, 32)
		if err != nil || id <= 0 {
			return 0, fmt.Errorf("%s:%d: memory hierarchy: want a positive number, got %q", file, n, fields[1])
		}
		return int32(id), nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s: no memory controller line", file)
}
