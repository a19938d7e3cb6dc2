package textfile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-agent/vigil/agent/agenttest"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// Files of the differential test, by scenario. Names are sorted as the
// collectors read them.
var scenarios = []struct {
	name  string
	files map[string]string
	// wantError is node_textfile_scrape_error in Vigil.
	wantError float64
	// debianAgrees says Debian's node_exporter 1.5.0 reports the same
	// node_textfile_scrape_error. Where it does not, Vigil follows current
	// node_exporter (help text) or flags a conflict node_exporter leaves
	// to its registry (which drops the series or family silently).
	debianAgrees bool
	// missingDir points both at a directory that does not exist.
	missingDir bool
}{
	{
		name: "good",
		files: map[string]string{
			"a.prom": "# HELP tf_jobs_total Jobs run.\n# TYPE tf_jobs_total counter\ntf_jobs_total{job=\"backup\"} 3\ntf_jobs_total{job=\"rotate\",host=\"x\"} 5\n" +
				"# TYPE tf_last_success_seconds gauge\ntf_last_success_seconds 1.7e9\n",
			"b.prom": "# HELP tf_duration_seconds Duration.\n# TYPE tf_duration_seconds histogram\n" +
				"tf_duration_seconds_bucket{le=\"1\"} 1\ntf_duration_seconds_bucket{le=\"10\"} 3\ntf_duration_seconds_bucket{le=\"+Inf\"} 4\n" +
				"tf_duration_seconds_sum 25.5\ntf_duration_seconds_count 4\n" +
				"# TYPE tf_latency summary\ntf_latency{quantile=\"0.5\"} 0.2\ntf_latency{quantile=\"0.9\"} 0.7\ntf_latency_sum 10\ntf_latency_count 30\n" +
				"tf_untyped{a=\"1\"} 42\n",
			// A family without HELP in two files: "Metric read from" both.
			"c.prom":     "tf_shared{file=\"c\"} 1\n",
			"d.prom":     "tf_shared{file=\"d\"} 2\n",
			"notes.txt":  "not read: wrong suffix {{{\n",
			"e.prom.tmp": "not read either\n",
		},
		wantError: 0, debianAgrees: true,
	},
	{
		name: "bad",
		files: map[string]string{
			"a.prom":       "tf_ok 1\n",
			"b.prom":       "tf_broken{ 1\n",
			"c.prom":       "tf_ts 1 1700000000000\n",
			"d.prom":       "# TYPE tf_bad_type gauge\ntf_bad_type{le=\"x\"} not-a-number\n",
			"empty.prom":   "",
			"partial.prom": "tf_partial_good 1\ntf_partial_bad{\n",
		},
		wantError: 1, debianAgrees: true,
	},
	{
		name: "conflicts",
		files: map[string]string{
			"a.prom": "# HELP tf_dup Dup.\n# TYPE tf_dup gauge\ntf_dup{x=\"1\"} 1\n" +
				"# HELP tf_help First help.\ntf_help 1\n" +
				"# TYPE tf_type gauge\ntf_type 1\n",
			// The same series again, other help, other type: each dropped.
			"b.prom": "# HELP tf_dup Dup.\n# TYPE tf_dup gauge\ntf_dup{x=\"1\"} 9\ntf_dup{x=\"2\"} 2\n" +
				"# HELP tf_help Second help.\ntf_help{other=\"1\"} 2\n" +
				"# TYPE tf_type counter\ntf_type{other=\"1\"} 2\n",
		},
		wantError: 1, debianAgrees: false,
	},
	{name: "missing directory", missingDir: true, wantError: 1, debianAgrees: true},
}

// The differential test: Debian's node_exporter (prometheus-node-exporter,
// textfile collector only) and an in-process Vigil agent with the textfile
// collector read the same directory; every tf_* and node_textfile_* family
// must have the same HELP, TYPE, series and values, and
// node_textfile_scrape_error must agree except where documented.
func TestDifferentialNodeExporter(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts node_exporter")
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, body := range sc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if sc.missingDir {
				dir = filepath.Join(dir, "missing")
			}
			ne := testenv.StartNodeExporter(t, "--collector.disable-defaults", "--collector.textfile",
				"--collector.textfile.directory="+dir)
			vigil := startVigil(t, dir)
			want := textfileFamilies(scrape(t, ne.URL+"/metrics"))
			got := textfileFamilies(scrape(t, vigil))

			neErr := want["node_textfile_scrape_error"]
			delete(want, "node_textfile_scrape_error")
			vErr := got["node_textfile_scrape_error"]
			delete(got, "node_textfile_scrape_error")
			if v := gaugeValue(vErr); v != sc.wantError {
				t.Errorf("Vigil node_textfile_scrape_error = %v, want %v", v, sc.wantError)
			}
			if sc.debianAgrees && gaugeValue(neErr) != gaugeValue(vErr) {
				t.Errorf("node_textfile_scrape_error: node_exporter %v, Vigil %v", gaugeValue(neErr), gaugeValue(vErr))
			}
			if !sc.debianAgrees {
				t.Logf("node_textfile_scrape_error: Debian's node_exporter %v, Vigil %v (Vigil flags the conflict)", gaugeValue(neErr), gaugeValue(vErr))
			}
			names := map[string]bool{}
			for n := range want {
				names[n] = true
			}
			for n := range got {
				names[n] = true
			}
			if len(want) < 1 && !sc.missingDir {
				t.Fatalf("node_exporter exposed too little to compare: %v", want)
			}
			for n := range names {
				w, g := want[n], got[n]
				switch {
				case w == nil:
					t.Errorf("%s: only Vigil exposes it: %s", n, render(g))
				case g == nil:
					t.Errorf("%s: only node_exporter exposes it: %s", n, render(w))
				case render(w) != render(g):
					t.Errorf("%s differs\nnode_exporter: %s\nVigil:         %s", n, render(w), render(g))
				}
			}
		})
	}
}

// textfileFamilies keeps the families the test wrote and the collector's own.
func textfileFamilies(all map[string]*dto.MetricFamily) map[string]*dto.MetricFamily {
	out := map[string]*dto.MetricFamily{}
	for n, f := range all {
		if strings.HasPrefix(n, "tf_") || strings.HasPrefix(n, "node_textfile_") {
			out[n] = f
		}
	}
	return out
}

func gaugeValue(f *dto.MetricFamily) float64 {
	if f == nil || len(f.Metric) != 1 {
		return -1
	}
	return f.Metric[0].GetGauge().GetValue()
}

// render writes a family's HELP, TYPE and series (labels sorted, empty
// labels dropped as Prometheus stores them) as one comparable string.
func render(f *dto.MetricFamily) string {
	var lines []string
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			if l.GetValue() != "" {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
		}
		sort.Strings(ls)
		var v string
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			v = fmt.Sprint(m.GetCounter().GetValue())
		case dto.MetricType_GAUGE:
			v = fmt.Sprint(m.GetGauge().GetValue())
		case dto.MetricType_UNTYPED:
			v = fmt.Sprint(m.GetUntyped().GetValue())
		case dto.MetricType_SUMMARY:
			v = fmt.Sprint(m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum(), m.GetSummary().GetQuantile())
		case dto.MetricType_HISTOGRAM:
			v = fmt.Sprint(m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), m.GetHistogram().GetBucket())
		}
		lines = append(lines, "{"+strings.Join(ls, ",")+"} "+v)
	}
	sort.Strings(lines)
	return fmt.Sprintf("HELP %q TYPE %s %s", f.GetHelp(), f.GetType(), strings.Join(lines, "; "))
}

// startVigil runs an agent whose only collector is the textfile collector
// on dir, configured as a user would, and returns its /metrics URL.
func startVigil(t *testing.T, dir string) string {
	t.Helper()
	return agenttest.Start(t, fmt.Sprintf(
		"server:\n  listen_address: 127.0.0.1:0\ncollectors:\n  textfile:\n    directories: [%q]\n", dir))
}

func get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, err
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	b, err := get(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("parse %s: %v", url, err)
	}
	return fams
}
