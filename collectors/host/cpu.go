//go:build linux

package host

import (
	"context"
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/cpu"
)

var (
	cpuSecondsDesc = prometheus.NewDesc("node_cpu_seconds_total",
		"Seconds the CPUs spent in each mode.", []string{"cpu", "mode"}, nil)
	cpuGuestDesc = prometheus.NewDesc("node_cpu_guest_seconds_total",
		"Seconds the CPUs spent in guests (VMs) for each mode.", []string{"cpu", "mode"}, nil)
)

// updateCPU reports the per-CPU lines of /proc/stat. gopsutil divides the
// tick counts by USER_HZ, as node_exporter does; "user" and "nice" still
// include guest time, which is also reported on its own.
func (c *Collector) updateCPU(ctx context.Context, ch chan<- prometheus.Metric) error {
	times, err := cpu.TimesWithContext(ctx, true)
	if err != nil {
		return err
	}
	if len(times) == 0 {
		// gopsutil returns no lines and no error when /proc/stat cannot
		// be read.
		return errors.New("no per-CPU lines in " + c.procPath("stat"))
	}
	for _, t := range times {
		n := strings.TrimPrefix(t.CPU, "cpu")
		for _, m := range []struct {
			mode string
			v    float64
		}{
			{"user", t.User}, {"nice", t.Nice}, {"system", t.System}, {"idle", t.Idle},
			{"iowait", t.Iowait}, {"irq", t.Irq}, {"softirq", t.Softirq}, {"steal", t.Steal},
		} {
			ch <- prometheus.MustNewConstMetric(cpuSecondsDesc, prometheus.CounterValue, m.v, n, m.mode)
		}
		ch <- prometheus.MustNewConstMetric(cpuGuestDesc, prometheus.CounterValue, t.Guest, n, "user")
		ch <- prometheus.MustNewConstMetric(cpuGuestDesc, prometheus.CounterValue, t.GuestNice, n, "nice")
	}
	return nil
}
