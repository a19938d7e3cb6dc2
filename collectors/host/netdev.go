//go:build linux

package host

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/shirou/gopsutil/v4/net"
)

var netLabels = []string{"device"}

func netDesc(stat string) *prometheus.Desc {
	return prometheus.NewDesc("node_network_"+stat+"_total", "Network device statistic "+stat+".", netLabels, nil)
}

var (
	netReceiveBytesDesc    = netDesc("receive_bytes")
	netReceivePacketsDesc  = netDesc("receive_packets")
	netReceiveErrsDesc     = netDesc("receive_errs")
	netReceiveDropDesc     = netDesc("receive_drop")
	netReceiveFifoDesc     = netDesc("receive_fifo")
	netTransmitBytesDesc   = netDesc("transmit_bytes")
	netTransmitPacketsDesc = netDesc("transmit_packets")
	netTransmitErrsDesc    = netDesc("transmit_errs")
	netTransmitDropDesc    = netDesc("transmit_drop")
	netTransmitFifoDesc    = netDesc("transmit_fifo")
)

// updateNetdev reports <procfs>/net/dev, the network namespace of the
// agent (run it with hostNetwork, as node_exporter, to see the node's
// interfaces). The columns have node_exporter's meaning: drop includes
// missed, fifo is the FIFO overrun count. The frame, compressed, multicast,
// colls and carrier columns are not read by gopsutil and are not reported.
func (c *Collector) updateNetdev(ctx context.Context, ch chan<- prometheus.Metric) error {
	stats, err := net.IOCountersWithContext(ctx, true)
	if err != nil {
		return err
	}
	for _, s := range stats {
		if matches(c.netExclude, s.Name) {
			continue
		}
		for _, m := range []struct {
			d *prometheus.Desc
			v uint64
		}{
			{netReceiveBytesDesc, s.BytesRecv},
			{netReceivePacketsDesc, s.PacketsRecv},
			{netReceiveErrsDesc, s.Errin},
			{netReceiveDropDesc, s.Dropin},
			{netReceiveFifoDesc, s.Fifoin},
			{netTransmitBytesDesc, s.BytesSent},
			{netTransmitPacketsDesc, s.PacketsSent},
			{netTransmitErrsDesc, s.Errout},
			{netTransmitDropDesc, s.Dropout},
			{netTransmitFifoDesc, s.Fifoout},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v), s.Name)
		}
	}
	return nil
}
