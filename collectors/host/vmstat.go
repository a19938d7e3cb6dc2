//go:build linux

package host

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// updateVMStat reports the /proc/vmstat fields that vmstat.fields selects
// as node_vmstat_<field>, untyped, as node_exporter does. The file is read
// here: gopsutil reads only six of its fields, scaled by an assumed 4 KiB
// page, and not oom_kill.
func (c *Collector) updateVMStat(_ context.Context, ch chan<- prometheus.Metric) error {
	path := c.procPath("vmstat")
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		name, value, ok := bytes.Cut(sc.Bytes(), []byte{' '})
		if !ok {
			return fmt.Errorf("%s:%d: want \"name value\", got %q", path, line, sc.Text())
		}
		if !c.vmstatFields.Match(name) {
			continue
		}
		v, err := strconv.ParseFloat(string(bytes.TrimSpace(value)), 64)
		if err != nil {
			return fmt.Errorf("%s:%d: %s: %w", path, line, name, err)
		}
		ch <- prometheus.MustNewConstMetric(c.vmstatDesc(string(name)), prometheus.UntypedValue, v)
	}
	return sc.Err()
}

func (c *Collector) vmstatDesc(field string) *prometheus.Desc {
	c.mu.Lock()
	defer c.mu.Unlock()
	d, ok := c.vmstatDescs[field]
	if !ok {
		d = prometheus.NewDesc("node_vmstat_"+field, "/proc/vmstat information field "+field+".", nil, nil)
		c.vmstatDescs[field] = d
	}
	return d
}
