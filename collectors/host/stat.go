//go:build linux

package host

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	intrDesc = prometheus.NewDesc("node_intr_total",
		"Total number of interrupts serviced.", nil, nil)
	contextSwitchesDesc = prometheus.NewDesc("node_context_switches_total",
		"Total number of context switches.", nil, nil)
	forksDesc = prometheus.NewDesc("node_forks_total",
		"Total number of forks.", nil, nil)
	bootTimeDesc = prometheus.NewDesc("node_boot_time_seconds",
		"Node boot time, in unixtime.", nil, nil)
	procsRunningDesc = prometheus.NewDesc("node_procs_running",
		"Number of processes in runnable state.", nil, nil)
	procsBlockedDesc = prometheus.NewDesc("node_procs_blocked",
		"Number of processes blocked waiting for I/O to complete.", nil, nil)
)

// updateStat reports the system-wide counters of /proc/stat. They come from
// prometheus/procfs rather than gopsutil: gopsutil has no interrupt count,
// its load.Misc lists every process in /proc on each call, and its BootTime
// probes the virtualisation system and, inside a container, derives boot
// time from /proc/uptime instead of the kernel's btime.
func (c *Collector) updateStat(_ context.Context, ch chan<- prometheus.Metric) error {
	s, err := c.proc.Stat()
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(intrDesc, prometheus.CounterValue, float64(s.IRQTotal))
	ch <- prometheus.MustNewConstMetric(contextSwitchesDesc, prometheus.CounterValue, float64(s.ContextSwitches))
	ch <- prometheus.MustNewConstMetric(forksDesc, prometheus.CounterValue, float64(s.ProcessCreated))
	ch <- prometheus.MustNewConstMetric(bootTimeDesc, prometheus.GaugeValue, float64(s.BootTime))
	ch <- prometheus.MustNewConstMetric(procsRunningDesc, prometheus.GaugeValue, float64(s.ProcessesRunning))
	ch <- prometheus.MustNewConstMetric(procsBlockedDesc, prometheus.GaugeValue, float64(s.ProcessesBlocked))
	return nil
}
