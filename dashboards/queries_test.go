package dashboards

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// panelQuery is one query read back from the committed JSON: a panel
// target, an annotation or a template variable.
type panelQuery struct {
	Dashboard string // file name
	Where     string // "panel <title> [refId]", "annotation <name>", "variable <name>"
	Kind      string // "prometheus" or "loki"
	Expr      string // as written in the dashboard
	Instant   bool
}

func (q panelQuery) String() string { return q.Dashboard + ": " + q.Where }

// committedQueries reads every query of every committed dashboard.
func committedQueries(t testing.TB) []panelQuery {
	t.Helper()
	files, err := filepath.Glob("json/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in json/: %v", err)
	}
	sort.Strings(files)
	var out []panelQuery
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Type    string `json:"type"`
				Title   string `json:"title"`
				Targets []struct {
					RefID      string `json:"refId"`
					Expr       string `json:"expr"`
					Instant    bool   `json:"instant"`
					Datasource struct {
						Type string `json:"type"`
					} `json:"datasource"`
				} `json:"targets"`
			} `json:"panels"`
			Annotations struct {
				List []struct {
					Name       string `json:"name"`
					Expr       string `json:"expr"`
					Datasource struct {
						Type string `json:"type"`
					} `json:"datasource"`
				} `json:"list"`
			} `json:"annotations"`
			Templating struct {
				List []struct {
					Type  string `json:"type"`
					Name  string `json:"name"`
					Query any    `json:"query"`
				} `json:"list"`
			} `json:"templating"`
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		name := filepath.Base(f)
		for _, p := range d.Panels {
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("%s: panel %q has no query", name, p.Title)
			}
			for _, tg := range p.Targets {
				out = append(out, panelQuery{Dashboard: name, Where: fmt.Sprintf("panel %q [%s]", p.Title, tg.RefID),
					Kind: tg.Datasource.Type, Expr: tg.Expr, Instant: tg.Instant})
			}
		}
		for _, a := range d.Annotations.List {
			out = append(out, panelQuery{Dashboard: name, Where: fmt.Sprintf("annotation %q", a.Name), Kind: a.Datasource.Type, Expr: a.Expr})
		}
		for _, v := range d.Templating.List {
			if v.Type != "query" {
				continue
			}
			s, ok := v.Query.(string)
			if !ok {
				t.Fatalf("%s: variable %s: query is %T, want a string", name, v.Name, v.Query)
			}
			out = append(out, panelQuery{Dashboard: name, Where: fmt.Sprintf("variable %q", v.Name), Kind: "prometheus", Expr: s, Instant: true})
		}
	}
	return out
}

// grafanaVars are the values Grafana's built-in variables stand for when
// the tests run a query.
var grafanaVars = map[string]string{
	"$__rate_interval": "1m",
	"$__interval":      "15s",
	"$__range":         "5m",
}

var varRef = regexp.MustCompile(`\$\{?(__[a-z_]+|[a-z]+)\}?`)

// substitute replaces every template variable in expr: Grafana's own by
// grafanaVars, the dashboards' by values[name] (AllValues when absent).
// An unknown variable is an error.
func substitute(expr string, values map[string]string) (string, error) {
	var bad []string
	s := varRef.ReplaceAllStringFunc(expr, func(m string) string {
		name := strings.Trim(m, "${}")
		if v, ok := grafanaVars["$"+name]; ok {
			return v
		}
		if v, ok := values[name]; ok {
			return v
		}
		if v, ok := AllValues[name]; ok {
			return v
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unknown template variables %v", bad)
	}
	return s, nil
}

var (
	labelValuesRe = regexp.MustCompile(`(?s)^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)
	queryResultRe = regexp.MustCompile(`(?s)^query_result\((.*)\)$`)
)

// promQL returns the PromQL a Grafana Prometheus query runs: a panel's
// expression as is; for a variable, the series of label_values(series,
// label) or the expression inside query_result(…).
func promQL(q panelQuery) string {
	if m := labelValuesRe.FindStringSubmatch(q.Expr); m != nil {
		return m[1]
	}
	if m := queryResultRe.FindStringSubmatch(q.Expr); m != nil {
		return m[1]
	}
	return q.Expr
}

var promParser = parser.NewParser(parser.Options{})

// parsePromQL substitutes the variables and parses the result.
func parsePromQL(q panelQuery, values map[string]string) (string, parser.Expr, error) {
	s, err := substitute(promQL(q), values)
	if err != nil {
		return "", nil, err
	}
	e, err := promParser.ParseExpr(s)
	return s, e, err
}

// selectors returns every vector selector of e.
func selectors(e parser.Expr) []*parser.VectorSelector {
	var out []*parser.VectorSelector
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs)
		}
		return nil
	})
	return out
}

// metricName is the __name__ a selector asks for ("" when it has none).
func metricName(vs *parser.VectorSelector) string {
	if vs.Name != "" {
		return vs.Name
	}
	for _, m := range vs.LabelMatchers {
		if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}
