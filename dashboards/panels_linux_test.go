//go:build linux

package dashboards

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// e2eCluster is the cluster label the test's scrape configuration sets
// (in production it comes from Prometheus's external labels at the
// global view, or from a target label).
const e2eCluster = "e2e"

// testPanelsReturnData starts a real Prometheus scraping the agent, with
// the instance label set to the node name and a cluster label, and runs
// every panel's, annotation's and variable's query with the variables set
// to this cluster and node: each must return data.
func testPanelsReturnData(t *testing.T, la *liveAgent) {
	scrape := fmt.Sprintf(`scrape_configs:
  - job_name: vigil
    scrape_interval: 1s
    scrape_timeout: 1s
    static_configs:
      - targets: [%q]
        labels: {cluster: %q}
    relabel_configs:
      - target_label: instance
        replacement: %q
`, la.addr, e2eCluster, la.node)
	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{ExtraConfig: scrape})
	values := map[string]string{VarCluster: e2eCluster, VarNode: regexp.QuoteMeta(la.node)}

	// The longest window any panel uses is [$__range] (5m in the test) and
	// [1m]: a rate needs two samples in its window, so the first queries
	// wait for a few scrapes.
	prom.WaitForQuery(t, 2*time.Minute, `up{job="vigil"} == 1`, func(s []testenv.Sample) bool { return len(s) > 0 })

	type pending struct {
		q    panelQuery
		expr string
	}
	var todo, blocked []pending
	for _, q := range committedQueries(t) {
		if q.Kind != "prometheus" {
			continue
		}
		s, e, err := parsePromQL(q, values)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		missing := ""
		for _, vs := range selectors(e) {
			if c := componentOf(metricName(vs)); c != "agent" && !la.has[c] {
				missing = c
			}
		}
		if missing != "" {
			blocked = append(blocked, pending{q, missing})
			continue
		}
		if strings.HasPrefix(q.Where, "annotation") {
			// Grafana runs an annotation query over the dashboard's
			// whole range; so does this subquery.
			s = "max_over_time((" + s + ")[15m:5s])"
		}
		todo = append(todo, pending{q, s})
	}
	// Label each variable must yield (a non-empty value) in the results.
	varLabel := map[string]string{
		`variable "cluster"`: "cluster", `variable "node"`: "instance", `variable "workload"`: "workload",
	}
	deadline := time.Now().Add(4 * time.Minute)
	ok := map[int]bool{}
	var lastErr = map[int]string{}
	for {
		for i, p := range todo {
			if ok[i] {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			res, err := prom.Query(ctx, p.expr)
			cancel()
			switch {
			case err != nil:
				lastErr[i] = err.Error()
			case len(res) == 0:
				lastErr[i] = "no data"
			default:
				ok[i] = true
				for where, lbl := range varLabel {
					if strings.HasSuffix(p.q.Where, where) && !hasLabelValue(res, lbl) {
						ok[i], lastErr[i] = false, "no series with a non-empty "+lbl+" label"
					}
				}
			}
		}
		if len(ok) == len(todo) || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for i, p := range todo {
		if !ok[i] {
			t.Errorf("%s: %s\n%s", p.q, lastErr[i], p.expr)
		}
	}
	t.Logf("%d of %d queries returned data", len(ok), len(todo))
	if len(blocked) > 0 {
		var lines []string
		for _, p := range blocked {
			lines = append(lines, fmt.Sprintf("%s (needs %s)", p.q, p.expr))
		}
		sort.Strings(lines)
		testenv.Unavailable(t, "%s", fmt.Sprintf("%d queries read components not compiled into vigil (%s):\n%s",
			len(blocked), strings.Join(la.missing, ", "), strings.Join(lines, "\n")))
	}
}

func hasLabelValue(res []testenv.Sample, label string) bool {
	for _, s := range res {
		if s.Metric[label] != "" {
			return true
		}
	}
	return false
}

// testLogsPanel checks the Loki logs panel against the lines the agent
// shipped. VictoriaLogs takes Loki pushes but has no LogQL API (and Loki
// itself is AGPL, not used here), so the panel's stream selector, with
// the variables set to this cluster and node, runs as the equivalent
// LogsQL stream filter.
func testLogsPanel(t *testing.T, la *liveAgent, vl *testenv.VictoriaLogs) {
	if !la.has["logs"] {
		testenv.Unavailable(t, "%s", "the logs collector is not compiled into vigil")
	}
	sel, err := substitute(LogsQuery, map[string]string{VarCluster: e2eCluster, VarNode: regexp.QuoteMeta(la.node)})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := promParser.ParseMetricSelector(sel)
	if err != nil {
		t.Fatal(err)
	}
	var filters []string
	for _, m := range ms {
		filters = append(filters, fmt.Sprintf("%s%s%q", m.Name, m.Type, m.Value))
	}
	logsql := "_stream:{" + strings.Join(filters, ",") + "}"
	var got []map[string]any
	testenv.EventuallyTrue(t, 3*time.Minute, "the logs panel's streams have lines in VictoriaLogs ("+logsql+")", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = vl.Flush(ctx)
		got, err = vl.Query(ctx, logsql)
		return err == nil && len(got) > 0
	})
	pods := map[string]bool{}
	for _, e := range got {
		if s, ok := e["pod"].(string); ok {
			pods[s] = true
		}
	}
	if !pods[podName] {
		t.Errorf("no line of pod %s among %d lines for %s (pods %v)", podName, len(got), logsql, pods)
	}
}
