package main

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestPrometheusScrapesTheAgent runs the agent with its embedded default
// configuration, exactly as `make run` does, and has a real Prometheus
// scrape it: the target is up and host series are queryable with PromQL.
func TestPrometheusScrapesTheAgent(t *testing.T) {
	_, url, logBuf := startVigil(t, "run", "--web.listen-address", "127.0.0.1:0")
	target := strings.TrimPrefix(url, "http://")
	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets: []string{target},
		ScrapeJobs:    []string{"vigil"},
	})

	prom.WaitForQuery(t, 60*time.Second, `up{job="vigil"} == 1`, func(s []testenv.Sample) bool { return len(s) == 1 })
	for _, q := range []string{
		`node_load1{job="vigil"}`,
		`sum by (mode) (rate(node_cpu_seconds_total{job="vigil"}[30s]))`,
		`node_memory_MemAvailable_bytes{job="vigil"} / node_memory_MemTotal_bytes{job="vigil"}`,
		`node_filesystem_size_bytes{job="vigil",mountpoint="/"}`,
		`vigil_collector_success{job="vigil",collector="host"} == 1`,
		`vigil_collector_success{job="vigil",collector="cgroup"} == 1`,
	} {
		got := prom.WaitForQuery(t, 60*time.Second, q, func(s []testenv.Sample) bool { return len(s) > 0 })
		t.Logf("%s -> %d series, first %v", q, len(got), got[0].Value)
	}
	if t.Failed() {
		t.Logf("agent log:\n%s", logBuf.String())
	}
}
