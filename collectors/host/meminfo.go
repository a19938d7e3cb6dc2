//go:build linux

package host

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/mem"
)

// meminfoDescs caches one Desc per /proc/meminfo field, named and described
// as node_exporter does: node_memory_<Field>_bytes for sizes ("(" and ")"
// become "_"), node_memory_<Field> for page counts.
var (
	meminfoDescsMu sync.Mutex
	meminfoDescs   = map[string]*prometheus.Desc{}
)

func meminfoDesc(field string) *prometheus.Desc {
	meminfoDescsMu.Lock()
	defer meminfoDescsMu.Unlock()
	d, ok := meminfoDescs[field]
	if !ok {
		d = prometheus.NewDesc("node_memory_"+field, "Memory information field "+field+".", nil, nil)
		meminfoDescs[field] = d
	}
	return d
}

// updateMeminfo reports /proc/meminfo. gopsutil reports a fixed set of
// fields (the ones below); fields the kernel does not have read as 0, so the
// 32-bit-only HighTotal/HighFree/LowTotal/LowFree are left out. gopsutil
// adds SReclaimable to Cached (as free(1) does); node_exporter reports the
// kernel's Cached, so it is subtracted again.
func (c *Collector) updateMeminfo(ctx context.Context, ch chan<- prometheus.Metric) error {
	vm, err := mem.VirtualMemoryWithContext(ctx)
	if err != nil {
		return err
	}
	ex, err := mem.NewExLinux().VirtualMemoryWithContext(ctx)
	if err != nil {
		return err
	}
	fields := []struct {
		name string
		v    uint64
	}{
		{"MemTotal_bytes", vm.Total},
		{"MemFree_bytes", vm.Free},
		{"MemAvailable_bytes", vm.Available},
		{"Buffers_bytes", vm.Buffers},
		{"Cached_bytes", vm.Cached - vm.Sreclaimable},
		{"SwapCached_bytes", vm.SwapCached},
		{"Active_bytes", vm.Active},
		{"Inactive_bytes", vm.Inactive},
		{"Active_anon_bytes", ex.ActiveAnon},
		{"Inactive_anon_bytes", ex.InactiveAnon},
		{"Active_file_bytes", ex.ActiveFile},
		{"Inactive_file_bytes", ex.InactiveFile},
		{"Unevictable_bytes", ex.Unevictable},
		{"SwapTotal_bytes", vm.SwapTotal},
		{"SwapFree_bytes", vm.SwapFree},
		{"Dirty_bytes", vm.Dirty},
		{"Writeback_bytes", vm.WriteBack},
		{"AnonHugePages_bytes", vm.AnonHugePages},
		{"Mapped_bytes", vm.Mapped},
		{"Shmem_bytes", vm.Shared},
		{"Slab_bytes", vm.Slab},
		{"SReclaimable_bytes", vm.Sreclaimable},
		{"SUnreclaim_bytes", vm.Sunreclaim},
		{"KernelStack_bytes", ex.KernelStack},
		{"PageTables_bytes", vm.PageTables},
		{"WritebackTmp_bytes", vm.WriteBackTmp},
		{"CommitLimit_bytes", vm.CommitLimit},
		{"Committed_AS_bytes", vm.CommittedAS},
		{"VmallocTotal_bytes", vm.VmallocTotal},
		{"VmallocUsed_bytes", vm.VmallocUsed},
		{"VmallocChunk_bytes", vm.VmallocChunk},
		{"Percpu_bytes", ex.Percpu},
		{"HugePages_Total", vm.HugePagesTotal},
		{"HugePages_Free", vm.HugePagesFree},
		{"HugePages_Rsvd", vm.HugePagesRsvd},
		{"HugePages_Surp", vm.HugePagesSurp},
		{"Hugepagesize_bytes", vm.HugePageSize},
	}
	for _, f := range fields {
		ch <- prometheus.MustNewConstMetric(meminfoDesc(f.name), prometheus.GaugeValue, float64(f.v))
	}
	return nil
}
