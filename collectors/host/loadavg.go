//go:build linux

package host

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/load"
)

var (
	load1Desc  = prometheus.NewDesc("node_load1", "1m load average.", nil, nil)
	load5Desc  = prometheus.NewDesc("node_load5", "5m load average.", nil, nil)
	load15Desc = prometheus.NewDesc("node_load15", "15m load average.", nil, nil)
)

// updateLoadavg reports /proc/loadavg.
func (c *Collector) updateLoadavg(ctx context.Context, ch chan<- prometheus.Metric) error {
	avg, err := load.AvgWithContext(ctx)
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(load1Desc, prometheus.GaugeValue, avg.Load1)
	ch <- prometheus.MustNewConstMetric(load5Desc, prometheus.GaugeValue, avg.Load5)
	ch <- prometheus.MustNewConstMetric(load15Desc, prometheus.GaugeValue, avg.Load15)
	return nil
}
