//go:build linux

package host

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

var (
	timeDesc = prometheus.NewDesc("node_time_seconds",
		"System time in seconds since epoch (1970).", nil, nil)
	timeZoneDesc = prometheus.NewDesc("node_time_zone_offset_seconds",
		"System time zone offset in seconds.", []string{"time_zone"}, nil)

	timexOffsetDesc = prometheus.NewDesc("node_timex_offset_seconds",
		"Time offset in between local system and reference clock.", nil, nil)
	timexFreqDesc = prometheus.NewDesc("node_timex_frequency_adjustment_ratio",
		"Local clock frequency adjustment.", nil, nil)
	timexMaxErrorDesc = prometheus.NewDesc("node_timex_maxerror_seconds",
		"Maximum error in seconds.", nil, nil)
	timexEstErrorDesc = prometheus.NewDesc("node_timex_estimated_error_seconds",
		"Estimated error in seconds.", nil, nil)
	timexStatusDesc = prometheus.NewDesc("node_timex_status",
		"Value of the status array bits.", nil, nil)
	timexConstantDesc = prometheus.NewDesc("node_timex_loop_time_constant",
		"Phase-locked loop time constant.", nil, nil)
	timexTickDesc = prometheus.NewDesc("node_timex_tick_seconds",
		"Seconds between clock ticks.", nil, nil)
	timexSyncDesc = prometheus.NewDesc("node_timex_sync_status",
		"Is clock synchronized to a reliable server (1 = yes, 0 = no).", nil, nil)
)

// updateTime reports the wall clock and its time zone.
func (c *Collector) updateTime(_ context.Context, ch chan<- prometheus.Metric) error {
	now := time.Now()
	zone, offset := now.Zone()
	ch <- prometheus.MustNewConstMetric(timeDesc, prometheus.GaugeValue, float64(now.UnixNano())/1e9)
	ch <- prometheus.MustNewConstMetric(timeZoneDesc, prometheus.GaugeValue, float64(offset), zone)
	return nil
}

// Kernel constants of adjtimex(2).
const (
	timeError  = 5      // TIME_ERROR: clock not synchronised
	staNano    = 0x2000 // STA_NANO: offsets in nanoseconds, not microseconds
	ppm16frac  = 1e6 * 65536
	microsInS  = 1e6
	nanosInS   = 1e9
	timexModes = 0 // read only
)

// updateTimex reports the kernel's clock discipline state (adjtimex(2) in
// read-only mode), which the node-mixin's clock skew alerts read.
func (c *Collector) updateTimex(_ context.Context, ch chan<- prometheus.Metric) error {
	tx := unix.Timex{Modes: timexModes}
	status, err := unix.Adjtimex(&tx)
	if err != nil {
		if errors.Is(err, os.ErrPermission) {
			return errNoData
		}
		return err
	}
	sync := 1.0
	if status == timeError {
		sync = 0
	}
	div := microsInS
	if tx.Status&staNano != 0 {
		div = nanosInS
	}
	ch <- prometheus.MustNewConstMetric(timexSyncDesc, prometheus.GaugeValue, sync)
	ch <- prometheus.MustNewConstMetric(timexOffsetDesc, prometheus.GaugeValue, float64(tx.Offset)/div)
	ch <- prometheus.MustNewConstMetric(timexFreqDesc, prometheus.GaugeValue, 1+float64(tx.Freq)/ppm16frac)
	ch <- prometheus.MustNewConstMetric(timexMaxErrorDesc, prometheus.GaugeValue, float64(tx.Maxerror)/microsInS)
	ch <- prometheus.MustNewConstMetric(timexEstErrorDesc, prometheus.GaugeValue, float64(tx.Esterror)/microsInS)
	ch <- prometheus.MustNewConstMetric(timexStatusDesc, prometheus.GaugeValue, float64(tx.Status))
	ch <- prometheus.MustNewConstMetric(timexConstantDesc, prometheus.GaugeValue, float64(tx.Constant))
	ch <- prometheus.MustNewConstMetric(timexTickDesc, prometheus.GaugeValue, float64(tx.Tick)/microsInS)
	return nil
}
