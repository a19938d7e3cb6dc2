//go:build linux

package host

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// asPrometheus lets the test registries and testutil gather a Collector.
type asPrometheus struct{ c *Collector }

func (asPrometheus) Describe(chan<- *prometheus.Desc) {}

func (a asPrometheus) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Update(context.Background(), ch)
}
