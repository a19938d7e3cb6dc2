//go:build linux

package host

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/disk"
)

var diskLabels = []string{"device"}

var (
	diskReadsCompletedDesc = prometheus.NewDesc("node_disk_reads_completed_total",
		"The total number of reads completed successfully.", diskLabels, nil)
	diskReadsMergedDesc = prometheus.NewDesc("node_disk_reads_merged_total",
		"The total number of reads merged.", diskLabels, nil)
	diskReadBytesDesc = prometheus.NewDesc("node_disk_read_bytes_total",
		"The total number of bytes read successfully.", diskLabels, nil)
	diskReadTimeDesc = prometheus.NewDesc("node_disk_read_time_seconds_total",
		"The total number of seconds spent by all reads.", diskLabels, nil)
	diskWritesCompletedDesc = prometheus.NewDesc("node_disk_writes_completed_total",
		"The total number of writes completed successfully.", diskLabels, nil)
	diskWritesMergedDesc = prometheus.NewDesc("node_disk_writes_merged_total",
		"The number of writes merged.", diskLabels, nil)
	diskWrittenBytesDesc = prometheus.NewDesc("node_disk_written_bytes_total",
		"The total number of bytes written successfully.", diskLabels, nil)
	diskWriteTimeDesc = prometheus.NewDesc("node_disk_write_time_seconds_total",
		"This is the total number of seconds spent by all writes.", diskLabels, nil)
	diskIONowDesc = prometheus.NewDesc("node_disk_io_now",
		"The number of I/Os currently in progress.", diskLabels, nil)
	diskIOTimeDesc = prometheus.NewDesc("node_disk_io_time_seconds_total",
		"Total seconds spent doing I/Os.", diskLabels, nil)
	diskIOTimeWeightedDesc = prometheus.NewDesc("node_disk_io_time_weighted_seconds_total",
		"The weighted # of seconds spent doing I/Os.", diskLabels, nil)
)

// updateDiskstats reports /proc/diskstats for every device not excluded by
// disk.device_exclude. gopsutil already converts sectors to bytes (512-byte
// sectors, as the kernel counts them); times are milliseconds. gopsutil
// skips devices whose counters are all zero (never used since boot), which
// node_exporter would report as zeros. The discard and flush columns
// (kernel 4.18+ / 5.5+) are not read by gopsutil and are not reported.
func (c *Collector) updateDiskstats(ctx context.Context, ch chan<- prometheus.Metric) error {
	stats, err := disk.IOCountersWithContext(ctx)
	if err != nil {
		return err
	}
	const ms = 1e-3
	for name, s := range stats {
		if matches(c.diskExclude, name) {
			continue
		}
		for _, m := range []struct {
			d *prometheus.Desc
			t prometheus.ValueType
			v float64
		}{
			{diskReadsCompletedDesc, prometheus.CounterValue, float64(s.ReadCount)},
			{diskReadsMergedDesc, prometheus.CounterValue, float64(s.MergedReadCount)},
			{diskReadBytesDesc, prometheus.CounterValue, float64(s.ReadBytes)},
			{diskReadTimeDesc, prometheus.CounterValue, float64(s.ReadTime) * ms},
			{diskWritesCompletedDesc, prometheus.CounterValue, float64(s.WriteCount)},
			{diskWritesMergedDesc, prometheus.CounterValue, float64(s.MergedWriteCount)},
			{diskWrittenBytesDesc, prometheus.CounterValue, float64(s.WriteBytes)},
			{diskWriteTimeDesc, prometheus.CounterValue, float64(s.WriteTime) * ms},
			{diskIONowDesc, prometheus.GaugeValue, float64(s.IopsInProgress)},
			{diskIOTimeDesc, prometheus.CounterValue, float64(s.IoTime) * ms},
			{diskIOTimeWeightedDesc, prometheus.CounterValue, float64(s.WeightedIO) * ms},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, m.t, m.v, name)
		}
	}
	return nil
}
