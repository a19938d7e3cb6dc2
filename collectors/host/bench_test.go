//go:build linux

package host

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"
)

// BenchmarkScrape measures one full Update on this machine's real /proc,
// /sys and mounts with the default configuration.
func BenchmarkScrape(b *testing.B) {
	c, err := New(NewConfig(), collectors.Settings{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	ch := make(chan prometheus.Metric, 4096)
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Update(ctx, ch); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(ch)), "samples/op")
		for len(ch) > 0 {
			<-ch
		}
	}
}
