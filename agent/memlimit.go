package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/alecthomas/units"
)

// global.memory_limit: the Go runtime's soft memory limit (GOMEMLIMIT),
// under which the garbage collector collects more often instead of letting
// the heap grow to GOGC's target (docs/cost.md).
const (
	// MemoryLimitAuto derives the limit from the memory limit of the
	// agent's own cgroup (a container's or a systemd unit's): a share of
	// it, memoryLimitShare; no cgroup limit, no soft limit.
	MemoryLimitAuto = "auto"
	// MemoryLimitOff sets no soft limit.
	MemoryLimitOff = "off"
	// minMemoryLimit is the smallest size accepted: the agent's live heap
	// at idle is about 10 MiB, and a limit under it makes the collector
	// run back to back (Go caps it at about half the CPU).
	minMemoryLimit = 16 << 20
	// memoryLimitShare is the share of the cgroup's limit given to the Go
	// runtime with auto: the cgroup also counts what the runtime does not
	// (the executable's pages, the eBPF ring buffers, page cache).
	memoryLimitShare = 0.8
)

// validateMemoryLimit checks global.memory_limit.
func validateMemoryLimit(v string) error {
	switch v {
	case MemoryLimitAuto, MemoryLimitOff:
		return nil
	}
	n, err := units.ParseBase2Bytes(v)
	if err != nil {
		return fmt.Errorf("want auto, off or a size such as 48MiB, got %q", v)
	}
	if n < minMemoryLimit {
		return fmt.Errorf("%s is below the smallest accepted limit, 16MiB", v)
	}
	return nil
}

// memoryLimit resolves global.memory_limit to bytes (math.MaxInt64: no
// limit) and says where it came from. cgroupLimit returns the agent's
// cgroup memory limit (0: none).
func memoryLimit(setting string, cgroupLimit func() (int64, error)) (int64, string, error) {
	switch setting {
	case MemoryLimitOff:
		return math.MaxInt64, "global.memory_limit: off", nil
	case MemoryLimitAuto, "":
		limit, err := cgroupLimit()
		if err != nil {
			return math.MaxInt64, "no cgroup memory limit read", err
		}
		if limit <= 0 {
			return math.MaxInt64, "no cgroup memory limit", nil
		}
		return int64(float64(limit) * memoryLimitShare), fmt.Sprintf("%.0f%% of the cgroup memory limit %d", memoryLimitShare*100, limit), nil
	}
	n, err := units.ParseBase2Bytes(setting)
	if err != nil {
		return math.MaxInt64, "", err
	}
	return int64(n), "global.memory_limit", nil
}

// applyMemoryLimit sets the Go runtime's soft memory limit from cfg,
// unless GOMEMLIMIT is set in the environment (it wins, as GOGC does).
func (a *Agent) applyMemoryLimit(cfg *Config) {
	if os.Getenv("GOMEMLIMIT") != "" {
		a.logger.Info("memory limit from the GOMEMLIMIT environment variable", "bytes", debug.SetMemoryLimit(-1))
		return
	}
	limit, source, err := memoryLimit(cfg.Global.MemoryLimit, func() (int64, error) {
		return cgroupMemoryLimit("/proc/self/cgroup", "/sys/fs/cgroup")
	})
	if err != nil {
		a.logger.Warn("no memory limit set: cannot read the agent's cgroup memory limit", "err", err)
	}
	debug.SetMemoryLimit(limit)
	if limit == math.MaxInt64 {
		a.logger.Info("no Go memory limit", "global.memory_limit", cfg.Global.MemoryLimit, "reason", source)
		return
	}
	a.logger.Info("Go memory limit set", "bytes", limit, "from", source)
}

// noCgroupLimit is the smallest value a cgroup v1 memory.limit_in_bytes
// holds for "no limit" (the page-rounded largest int64 is 2^63-4096).
const noCgroupLimit = 1 << 62

// cgroupMemoryLimit returns the smallest memory limit on the path of the
// calling process's memory cgroup, from it up to the hierarchy's root, as
// procCgroup (/proc/self/cgroup) names it under root (/sys/fs/cgroup):
// cgroup v2's memory.max, or the v1 memory controller's
// memory.limit_in_bytes. A directory missing on the way (a container
// whose own cgroup is mounted as the hierarchy's root) is passed over. It
// returns 0 when no limit is set.
func cgroupMemoryLimit(procCgroup, root string) (int64, error) {
	f, err := os.Open(procCgroup)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var v1, v2 string
	found1, found2 := false, false
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10)) // a few lines
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2, found2 = parts[2], true
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1, found1 = parts[2], true
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("%s: %w", procCgroup, err)
	}
	switch {
	case found1:
		return smallestLimit(filepath.Join(root, "memory"), v1, "memory.limit_in_bytes")
	case found2:
		dir := root
		if _, err := os.Stat(filepath.Join(root, "unified")); err == nil {
			dir = filepath.Join(root, "unified") // hybrid: v1 controllers, v2 beside them
		}
		return smallestLimit(dir, v2, "memory.max")
	}
	return 0, nil
}

// smallestLimit reads file in dir/cg and each of its ancestors up to dir.
func smallestLimit(dir, cg, file string) (int64, error) {
	var limit int64
	for p := path.Clean(cg); ; p = path.Dir(p) {
		b, err := os.ReadFile(filepath.Join(dir, p, file))
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return 0, err
		default:
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil || n < 0 {
					return 0, fmt.Errorf("%s: not a byte count: %q", filepath.Join(dir, p, file), s)
				}
				if n < noCgroupLimit && (limit == 0 || n < limit) {
					limit = n
				}
			}
		}
		if p == "/" {
			return limit, nil
		}
	}
}
