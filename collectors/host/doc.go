// Package host is Vigil's host collector: CPU, memory, load, filesystems,
// disks, network devices, boot time, uname and a few kernel counters, read
// from the node's /proc and /sys (collectors.Settings.Paths) and exposed under
// node_exporter's metric names, label sets, units and help texts, so that the
// node-mixin alerts and the common node dashboards work unchanged.
//
// The figures come from gopsutil v4 wherever it has them, with its
// HOST_PROC/HOST_SYS/HOST_ROOT settings passed through the context (never
// through the process environment). Where gopsutil reports something
// differently from node_exporter (mount sources, /proc/stat counters it does
// not parse, /proc/vmstat) the collector reads the kernel file itself or
// through github.com/prometheus/procfs, node_exporter's own parser; each such
// place says why.
//
// The collector is Linux only; on other systems the package registers
// nothing.
package host
