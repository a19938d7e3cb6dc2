//go:build linux

package dashboards

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// usedMetrics returns every metric name the dashboards' PromQL reads,
// with the queries that read it.
func usedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for _, q := range committedQueries(t) {
		if q.Kind != "prometheus" {
			continue
		}
		_, e, err := parsePromQL(q, nil)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		for _, vs := range selectors(e) {
			n := metricName(vs)
			used[n] = append(used[n], q.String())
		}
	}
	return used
}

// value returns the sum of the samples of metric whose labels include
// match, from the agent's /metrics.
func (la *liveAgent) value(t *testing.T, metric string, match map[string]string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + la.addr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, m := range fams[metric].GetMetric() {
		lbl := map[string]string{}
		for _, lp := range m.GetLabel() {
			lbl[lp.GetName()] = lp.GetValue()
		}
		ok := true
		for k, v := range match {
			ok = ok && lbl[k] == v
		}
		if ok {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
		}
	}
	return sum
}

// activity drives what only happens on events: an OOM kill, a dry-run
// remediation, a real one (exec /bin/true), and one vetoed by a guard
// (maintenance).
func (la *liveAgent) activity(t *testing.T) {
	t.Helper()
	la.oomKill(t)
	if la.has["ebpf"] {
		// The Redis, PostgreSQL, DNS and gRPC panels' data is the workload's own
		// (other processes on this machine may talk to a Redis too):
		// its client requests, with each kind of error it causes.
		for _, c := range []struct {
			metric string
			labels map[string]string
		}{
			{"vigil_redis_requests_total", map[string]string{"error": "none"}},
			{"vigil_redis_requests_total", map[string]string{"error": "WRONGTYPE", "command": "GET"}},
			{"vigil_redis_requests_total", map[string]string{"error": "OOM", "command": "SET"}},
			{"vigil_postgres_requests_total", map[string]string{"error": "none"}},
			{"vigil_postgres_requests_total", map[string]string{"error": "42"}},
			{"vigil_postgres_requests_total", map[string]string{"error": "57"}},
			{"vigil_dns_requests_total", map[string]string{"rcode": "NOERROR", "qtype": "AAAA"}},
			{"vigil_dns_requests_total", map[string]string{"rcode": "NXDOMAIN"}},
			{"vigil_dns_requests_total", map[string]string{"rcode": "REFUSED"}},
			{"vigil_dns_requests_total", map[string]string{"rcode": "timeout"}},
			{"vigil_grpc_requests_total", map[string]string{"code": "OK"}},
			{"vigil_grpc_requests_total", map[string]string{"code": "UNAVAILABLE"}},
		} {
			c.labels["unit"], c.labels["kind"] = unitName, "client"
			testenv.EventuallyTrue(t, 2*time.Minute, fmt.Sprintf("%s%v from the workload", c.metric, c.labels), func() bool {
				return la.value(t, c.metric, c.labels) >= 1
			})
		}
	}
	if !la.has["rules"] || !la.has["healing"] || !la.has["logs"] {
		return
	}
	testenv.EventuallyTrue(t, 3*time.Minute, "a dry-run remediation", func() bool {
		return la.value(t, "vigil_remediations_total", map[string]string{"policy": "e2e-dry-run", "result": "dry_run"}) >= 1
	})
	// A harmless real action (exec /bin/true): its duration is recorded.
	testenv.EventuallyTrue(t, 3*time.Minute, "a successful remediation", func() bool {
		return la.value(t, "vigil_remediations_total", map[string]string{"policy": "e2e-act", "result": "success"}) >= 1
	})
	// Maintenance on, then the log line that fires the second alert:
	// its action is vetoed by the maintenance guard.
	writeFile(t, filepath.Join(la.dir, "maintenance"), "dashboards e2e test\n")
	writeFile(t, la.podLog+".trigger", "")
	testenv.EventuallyTrue(t, 3*time.Minute, "a remediation vetoed by the maintenance guard", func() bool {
		return la.value(t, "vigil_remediation_vetoes_total", map[string]string{"policy": "e2e-veto", "guard": "maintenance"}) >= 1
	})
}

// TestLiveAgent runs the agent and a workload doing real work, then checks
// the dashboards against it: every metric name they read is on the
// agent's /metrics, and (TestLiveAgent/panels) every panel returns data
// in a real Prometheus scraping the agent.
func TestLiveAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts the agent, a workload and Prometheus")
	}
	vl := testenv.StartVictoriaLogs(t)
	la := startLiveAgent(t, vl.LokiPushURL())
	la.activity(t)

	t.Run("metrics exported", func(t *testing.T) {
		used := usedMetrics(t)
		var names []string
		for n := range used {
			names = append(names, n)
		}
		sort.Strings(names)
		// Metrics appear as the workload's activity reaches them: poll
		// until every name of a component the binary has is there.
		var have map[string]bool
		absent := func() []string {
			var out []string
			for _, n := range names {
				if !have[n] && la.has[componentOf(n)] || componentOf(n) == "agent" && !have[n] {
					out = append(out, n)
				}
			}
			return out
		}
		deadline := time.Now().Add(3 * time.Minute)
		for {
			var err error
			have, err = la.scrape()
			if err != nil {
				t.Fatal(err)
			}
			if len(absent()) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		for _, n := range absent() {
			t.Errorf("%s (component %s) is not on the agent's /metrics; read by:\n  %s", n, componentOf(n), strings.Join(used[n], "\n  "))
		}
		reportMissingComponents(t, la, names, used)
		t.Logf("%d metric names checked against /metrics", len(names))
	})

	t.Run("panels", func(t *testing.T) { testPanelsReturnData(t, la) })
	t.Run("logs panel", func(t *testing.T) { testLogsPanel(t, la, vl) })
}

// reportMissingComponents fails (CI=true) or skips naming every metric
// and panel that cannot be checked because its component is not compiled
// into the binary yet.
func reportMissingComponents(t *testing.T, la *liveAgent, names []string, used map[string][]string) {
	t.Helper()
	if len(la.missing) == 0 {
		return
	}
	var b strings.Builder
	for _, n := range names {
		if c := componentOf(n); !la.has[c] && c != "agent" {
			fmt.Fprintf(&b, "%s (component %s), read by:\n  %s\n", n, c, strings.Join(used[n], "\n  "))
		}
	}
	msg := fmt.Sprintf("components not compiled into vigil: %s; these metrics cannot be checked:\n%s", strings.Join(la.missing, ", "), b.String())
	if os.Getenv("CI") == "true" {
		t.Error(msg)
		return
	}
	t.Skip(msg)
}
