//go:build linux

package host

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

var unameDesc = prometheus.NewDesc("node_uname_info",
	"Labeled system information as provided by the uname system call.",
	[]string{"sysname", "release", "version", "machine", "nodename", "domainname"}, nil)

// updateUname reports uname(2) of the agent's UTS namespace (the node's
// when the agent runs with hostPID/host UTS, as node_exporter would).
// gopsutil's host.Info has neither the domain name nor the version string.
func (c *Collector) updateUname(_ context.Context, ch chan<- prometheus.Metric) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(unameDesc, prometheus.GaugeValue, 1,
		unix.ByteSliceToString(u.Sysname[:]),
		unix.ByteSliceToString(u.Release[:]),
		unix.ByteSliceToString(u.Version[:]),
		unix.ByteSliceToString(u.Machine[:]),
		unix.ByteSliceToString(u.Nodename[:]),
		unix.ByteSliceToString(u.Domainname[:]))
	return nil
}
