package rules

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql/parser"
)

func TestInlineRecords(t *testing.T) {
	rec := func(s string) parser.Expr {
		e, err := Parser.ParseExpr(s)
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	records := map[string]parser.Expr{
		"vigil:5xx:rate2m": rec(`sum by (pod) (rate(vigil_http_requests_total{status_class="5xx"}[2m]))`),
		"vigil:all:rate2m": rec(`sum by (pod) (rate(vigil_http_requests_total[2m]))`),
		"vigil:ratio":      rec(`vigil:5xx:rate2m / vigil:all:rate2m`),
	}
	got, err := inlineRecords(`vigil:ratio > 0.05 and vigil:all:rate2m > 0.1`, records)
	if err != nil {
		t.Fatal(err)
	}
	want := `((sum by (pod) (rate(vigil_http_requests_total{status_class="5xx"}[2m]))) / (sum by (pod) (rate(vigil_http_requests_total[2m])))) > 0.05 and (sum by (pod) (rate(vigil_http_requests_total[2m]))) > 0.1`
	if got != want {
		t.Errorf("inlined:\n%s\nwant\n%s", got, want)
	}
	if _, err := inlineRecords(`vigil:ratio{pod="a"} > 1`, records); err == nil || !strings.Contains(err.Error(), "with matchers") {
		t.Errorf("matchers on a recorded series: %v", err)
	}
	if _, err := inlineRecords(`rate(vigil:all:rate2m[5m]) > 1`, records); err == nil || !strings.Contains(err.Error(), "range over the recorded series") {
		t.Errorf("range over a recorded series: %v", err)
	}
}

// for: over a series of evaluations: a run shorter than for: never fires;
// a gap ends a run; the alert carries the series' and the rule's labels.
func TestFiringSpans(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	s := RangeSeries{Labels: map[string]string{"__name__": "x", "pod": "web-a"}}
	add := func(from, to int) {
		for i := from; i <= to; i++ {
			s.Times = append(s.Times, t0.Add(time.Duration(i)*10*time.Second))
			s.Values = append(s.Values, 1)
		}
	}
	add(0, 3)   // 30 s: shorter than for: 1m
	add(10, 20) // 100 s: fires at 60 s into it, ends after 20
	add(30, 40) // still firing at the end
	as := firingSpans("Broken", map[string]string{"severity": "critical"}, map[string]string{"summary": "s"}, time.Minute, 10*time.Second, s)
	if len(as) != 2 {
		t.Fatalf("%d alerts, want 2: %+v", len(as), as)
	}
	if !as[0].StartsAt.Equal(t0.Add(160*time.Second)) || !as[0].EndsAt.Equal(t0.Add(210*time.Second)) {
		t.Errorf("first: %s – %s", as[0].StartsAt.Sub(t0), as[0].EndsAt.Sub(t0))
	}
	if !as[1].StartsAt.Equal(t0.Add(360*time.Second)) || !as[1].EndsAt.IsZero() {
		t.Errorf("second: %s – %v", as[1].StartsAt.Sub(t0), as[1].EndsAt)
	}
	l := as[0].Labels
	if l["alertname"] != "Broken" || l["pod"] != "web-a" || l["severity"] != "critical" || l["__name__"] != "" || as[0].Annotations["summary"] != "s" {
		t.Errorf("labels %v annotations %v", l, as[0].Annotations)
	}
}
