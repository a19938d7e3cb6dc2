package dashboards

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
)

// The committed JSON is what the generator writes now.
func TestCommittedJSONIsUpToDate(t *testing.T) {
	want, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob("json/*.json")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, f := range files {
		got[filepath.Base(f)] = true
		if _, ok := want[filepath.Base(f)]; !ok {
			t.Errorf("%s is committed but no longer generated; run make generate", f)
		}
	}
	for name, b := range want {
		have, err := os.ReadFile(filepath.Join("json", name))
		if err != nil {
			t.Errorf("%s: %v; run make generate", name, err)
			continue
		}
		if !bytes.Equal(have, b) {
			t.Errorf("json/%s differs from the generator's output; run make generate", name)
		}
	}
	// Deterministic: a second render gives the same bytes.
	again, err := Render()
	if err != nil {
		t.Fatal(err)
	}
	for name := range want {
		if !bytes.Equal(want[name], again[name]) {
			t.Errorf("%s: two renders differ", name)
		}
	}
}

// Every dashboard passes the SDK's strict unmarshal (no unknown or
// missing fields, right types).
func TestStrictUnmarshal(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	files, _ := filepath.Glob("json/*.json")
	if len(files) != len(All()) {
		t.Fatalf("json/ has %d dashboards, the generator makes %d", len(files), len(All()))
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d Dashboard
		if err := d.UnmarshalJSONStrict(raw); err != nil {
			// On success the SDK returns a typed nil (an empty
			// cog.BuildErrors) as a non-nil error value.
			if be, ok := err.(cog.BuildErrors); !ok || len(be) > 0 {
				t.Errorf("%s: strict unmarshal: %v", f, err)
				continue
			}
		}
		if d.Uid == nil || *d.Uid == "" || d.Title == nil {
			t.Errorf("%s: no uid or title", f)
		}
	}
}

// A strict unmarshal that must fail does, so the check above can fail.
func TestStrictUnmarshalRejectsUnknownField(t *testing.T) {
	plugins.RegisterDefaultPlugins()
	raw, err := os.ReadFile("json/node.json")
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Replace(raw, []byte(`"title":`), []byte(`"titel": "x", "title":`), 1)
	var d Dashboard
	err = d.UnmarshalJSONStrict(bad)
	if be, ok := err.(cog.BuildErrors); err == nil || (ok && len(be) == 0) {
		t.Fatal("strict unmarshal accepted an unknown field")
	}
}

// Every PromQL expression parses after the template variables are
// substituted, and every selector is filtered by the cluster and node
// variables (and by namespace where the dashboard has it), so choosing a
// node narrows every panel.
func TestPromQLParses(t *testing.T) {
	qs := committedQueries(t)
	n := 0
	for _, q := range qs {
		if q.Kind != "prometheus" {
			continue
		}
		n++
		s, e, err := parsePromQL(q, nil)
		if err != nil {
			t.Errorf("%s: %v\n%s", q, err, s)
			continue
		}
		vss := selectors(e)
		if len(vss) == 0 {
			t.Errorf("%s: no metric selector in %s", q, s)
		}
		for _, vs := range vss {
			if metricName(vs) == "" {
				t.Errorf("%s: selector without a metric name: %s", q, vs)
			}
			have := map[string]bool{}
			for _, m := range vs.LabelMatchers {
				have[m.Name] = true
			}
			need := []string{"cluster", "instance"}
			switch {
			case strings.Contains(q.Where, `variable "cluster"`):
				need = nil
			case strings.Contains(q.Where, `variable "node"`):
				need = []string{"cluster"}
			}
			if strings.Contains(q.Expr, "$namespace") {
				need = append(need, "namespace")
			}
			for _, l := range need {
				if !have[l] {
					t.Errorf("%s: selector %s has no %s matcher", q, vs, l)
				}
			}
		}
	}
	if n < 50 {
		t.Errorf("only %d Prometheus queries found; the JSON reader is broken", n)
	}
}

// The Loki query is a stream selector whose labels are the ones the logs
// collector puts on streams, and it has a matcher Loki accepts (one that
// does not match the empty string).
func TestLokiQuery(t *testing.T) {
	var found []panelQuery
	for _, q := range committedQueries(t) {
		if q.Kind == "loki" {
			found = append(found, q)
		}
	}
	if len(found) == 0 {
		t.Fatal("no Loki query in any dashboard")
	}
	for _, q := range found {
		s, err := substitute(q.Expr, nil)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		ms, err := promParser.ParseMetricSelector(s)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var names []string
		nonEmpty := false
		for _, m := range ms {
			names = append(names, m.Name)
			if !m.Matches("") {
				nonEmpty = true
			}
		}
		sort.Strings(names)
		if got, want := strings.Join(names, ","), "cluster,namespace,node,pod"; got != want {
			t.Errorf("%s: stream labels %s, want %s", q, got, want)
		}
		if !nonEmpty {
			t.Errorf("%s: every matcher matches the empty string; Loki refuses such a query", q)
		}
	}
}

// The failure ratio panels count the error codes the default dependency
// alerts count: each code list of metrics.go is the one the recording
// rule of its protocol selects in rules/defaults/sources.rules.yml.
func TestProtocolErrorCodesMatchTheRules(t *testing.T) {
	raw, err := os.ReadFile("../rules/defaults/sources.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	for record, sel := range map[string]string{
		"vigil:workload_redis_client_errors:rate1m":    mRedisRequests + `{kind="client",error=~"` + redisServerErrors + `"}`,
		"vigil:workload_postgres_client_errors:rate1m": mPostgresRequests + `{kind="client",error=~"` + postgresServerErrors + `"}`,
		"vigil:workload_dns_client_failures:rate1m":    mDNSRequests + `{kind="client",rcode=~"` + dnsFailures + `"}`,
		"vigil:workload_dns_client_lookups:rate1m":     mDNSRequests + `{kind="client",rcode!="NXDOMAIN"}`,
		"vigil:workload_grpc_client_errors:rate1m":     mGRPCRequests + `{kind="client",code=~"` + grpcServerErrors + `"}`,
	} {
		i := bytes.Index(raw, []byte("record: "+record+"\n"))
		if i < 0 {
			t.Errorf("sources.rules.yml has no recording rule %s", record)
			continue
		}
		rule := raw[i:]
		if j := bytes.Index(rule[1:], []byte("- record: ")); j >= 0 {
			rule = rule[:j+1]
		}
		if !bytes.Contains(rule, []byte(sel)) {
			t.Errorf("%s does not select %s:\n%s", record, sel, rule)
		}
	}
}
