//go:build linux

package host

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	filefdAllocatedDesc = prometheus.NewDesc("node_filefd_allocated",
		"File descriptor statistics: allocated.", nil, nil)
	filefdMaximumDesc = prometheus.NewDesc("node_filefd_maximum",
		"File descriptor statistics: maximum.", nil, nil)
	conntrackEntriesDesc = prometheus.NewDesc("node_nf_conntrack_entries",
		"Number of currently allocated flow entries for connection tracking.", nil, nil)
	conntrackLimitDesc = prometheus.NewDesc("node_nf_conntrack_entries_limit",
		"Maximum size of connection tracking table.", nil, nil)
)

// updateFilefd reports <procfs>/sys/fs/file-nr ("allocated unused maximum"),
// which the node-mixin's file descriptor alert reads.
func (c *Collector) updateFilefd(_ context.Context, ch chan<- prometheus.Metric) error {
	path := c.procPath("sys", "fs", "file-nr")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	f := strings.Fields(string(data))
	if len(f) != 3 {
		return fmt.Errorf("%s: want 3 numbers, got %q", path, strings.TrimSpace(string(data)))
	}
	allocated, err1 := strconv.ParseFloat(f[0], 64)
	maximum, err2 := strconv.ParseFloat(f[2], 64)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	ch <- prometheus.MustNewConstMetric(filefdAllocatedDesc, prometheus.GaugeValue, allocated)
	ch <- prometheus.MustNewConstMetric(filefdMaximumDesc, prometheus.GaugeValue, maximum)
	return nil
}

// updateConntrack reports the connection tracking table's fill level; a
// host without the nf_conntrack module has neither file and reports nothing.
func (c *Collector) updateConntrack(_ context.Context, ch chan<- prometheus.Metric) error {
	count, err := readNumber(c.procPath("sys", "net", "netfilter", "nf_conntrack_count"))
	if errors.Is(err, fs.ErrNotExist) {
		return errNoData
	}
	if err != nil {
		return err
	}
	limit, err := readNumber(c.procPath("sys", "net", "netfilter", "nf_conntrack_max"))
	if err != nil {
		return err
	}
	ch <- prometheus.MustNewConstMetric(conntrackEntriesDesc, prometheus.GaugeValue, count)
	ch <- prometheus.MustNewConstMetric(conntrackLimitDesc, prometheus.GaugeValue, limit)
	return nil
}

func readNumber(path string) (float64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(string(data)), 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}
