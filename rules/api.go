package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promrules "github.com/prometheus/prometheus/rules"
)

// The JSON shapes below are those of Prometheus's HTTP API
// (/api/v1/rules, /api/v1/alerts, /api/v1/query), so existing tools can
// read Vigil's rule state.

type apiResponse struct {
	Status    string `json:"status"`
	Data      any    `json:"data,omitempty"`
	ErrorType string `json:"errorType,omitempty"`
	Error     string `json:"error,omitempty"`
}

type apiAlert struct {
	Labels          map[string]string `json:"labels"`
	Annotations     map[string]string `json:"annotations"`
	State           string            `json:"state"`
	ActiveAt        *time.Time        `json:"activeAt,omitempty"`
	KeepFiringSince *time.Time        `json:"keepFiringSince,omitempty"`
	Value           string            `json:"value"`
	// Source is Vigil's addition: rule, alertmanager or event.
	Source string `json:"source,omitempty"`
}

type apiRuleGroup struct {
	Name           string    `json:"name"`
	File           string    `json:"file"`
	Rules          []any     `json:"rules"`
	Interval       float64   `json:"interval"`
	Limit          int       `json:"limit"`
	EvaluationTime float64   `json:"evaluationTime"`
	LastEvaluation time.Time `json:"lastEvaluation"`
	// QueryEndpoint is Vigil's addition: the remote endpoint the group
	// queries, empty for the local TSDB.
	QueryEndpoint string `json:"queryEndpoint,omitempty"`
}

type apiAlertingRule struct {
	State          string            `json:"state"`
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Duration       float64           `json:"duration"`
	KeepFiringFor  float64           `json:"keepFiringFor"`
	Labels         map[string]string `json:"labels"`
	Annotations    map[string]string `json:"annotations"`
	Alerts         []apiAlert        `json:"alerts"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError,omitempty"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
	Type           string            `json:"type"`
}

type apiRecordingRule struct {
	Name           string            `json:"name"`
	Query          string            `json:"query"`
	Labels         map[string]string `json:"labels,omitempty"`
	Health         string            `json:"health"`
	LastError      string            `json:"lastError,omitempty"`
	EvaluationTime float64           `json:"evaluationTime"`
	LastEvaluation time.Time         `json:"lastEvaluation"`
	Type           string            `json:"type"`
}

func writeJSON(w http.ResponseWriter, code int, v apiResponse) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func formatValue(v float64) string { return strconv.FormatFloat(v, 'e', -1, 64) }

func ruleAlerts(ar *promrules.AlertingRule) []apiAlert {
	out := []apiAlert{}
	for _, a := range ar.ActiveAlerts() {
		aa := apiAlert{
			Labels:      a.Labels.Map(),
			Annotations: a.Annotations.Map(),
			State:       a.State.String(),
			ActiveAt:    &a.ActiveAt,
			Value:       formatValue(a.Value),
			Source:      string(SourceRule),
		}
		if !a.KeepFiringSince.IsZero() {
			aa.KeepFiringSince = &a.KeepFiringSince
		}
		out = append(out, aa)
	}
	return out
}

// serveRules answers GET /api/v1/rules[?type=alert|record][&exclude_alerts=true].
func (e *Engine) serveRules(w http.ResponseWriter, r *http.Request) {
	typ := r.URL.Query().Get("type")
	if typ != "" && typ != "alert" && typ != "record" {
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: fmt.Sprintf("type: want alert or record, got %q", typ)})
		return
	}
	exclude := r.URL.Query().Get("exclude_alerts") == "true"
	remote := e.remote.Load()
	groups := []apiRuleGroup{}
	for _, g := range e.manager.RuleGroups() {
		ag := apiRuleGroup{
			Name: g.Name(), File: g.File(), Rules: []any{}, Interval: g.Interval().Seconds(), Limit: g.Limit(),
			EvaluationTime: g.GetEvaluationTime().Seconds(), LastEvaluation: g.GetLastEvaluation(),
		}
		if ep := remote.forGroup(g.Name()); ep != nil {
			ag.QueryEndpoint = ep.cfg.Name
		}
		for _, rl := range g.Rules() {
			lastErr := ""
			if err := rl.LastError(); err != nil {
				lastErr = err.Error()
			}
			switch rule := rl.(type) {
			case *promrules.AlertingRule:
				if typ == "record" {
					continue
				}
				ar := apiAlertingRule{
					State: rule.State().String(), Name: rule.Name(), Query: rule.Query().String(),
					Duration: rule.HoldDuration().Seconds(), KeepFiringFor: rule.KeepFiringFor().Seconds(),
					Labels: rule.Labels().Map(), Annotations: rule.Annotations().Map(),
					Health: string(rule.Health()), LastError: lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(), LastEvaluation: rule.GetEvaluationTimestamp(),
					Type: "alerting",
				}
				if !exclude {
					ar.Alerts = ruleAlerts(rule)
				}
				ag.Rules = append(ag.Rules, ar)
			case *promrules.RecordingRule:
				if typ == "alert" {
					continue
				}
				ag.Rules = append(ag.Rules, apiRecordingRule{
					Name: rule.Name(), Query: rule.Query().String(), Labels: rule.Labels().Map(),
					Health: string(rule.Health()), LastError: lastErr,
					EvaluationTime: rule.GetEvaluationDuration().Seconds(), LastEvaluation: rule.GetEvaluationTimestamp(),
					Type: "recording",
				})
			}
		}
		if typ != "" && len(ag.Rules) == 0 {
			continue
		}
		groups = append(groups, ag)
	}
	writeJSON(w, http.StatusOK, apiResponse{Status: "success", Data: map[string]any{"groups": groups}})
}

// ActiveAlerts returns every active alert: rule alerts (pending and
// firing), alerts received from Alertmanager and event alerts.
func (e *Engine) activeAlerts() []apiAlert {
	out := []apiAlert{}
	for _, ar := range e.manager.AlertingRules() {
		out = append(out, ruleAlerts(ar)...)
	}
	for _, a := range append(append(e.pub.firing(SourceAlertmanager), e.events.activeAlerts()...), e.evidence.activeAlerts()...) {
		at := a.StartsAt
		out = append(out, apiAlert{Labels: a.Labels, Annotations: a.Annotations, State: "firing", ActiveAt: &at, Value: formatValue(1), Source: string(a.Source)})
	}
	sort.Slice(out, func(i, j int) bool {
		return labels.Compare(labels.FromMap(out[i].Labels), labels.FromMap(out[j].Labels)) < 0
	})
	return out
}

// serveAlerts answers GET /api/v1/alerts.
func (e *Engine) serveAlerts(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, apiResponse{Status: "success", Data: map[string]any{"alerts": e.activeAlerts()}})
}

// serveQuery answers an instant query against the local TSDB
// (GET or POST /api/v1/query?query=…[&time=…]), for debugging rules.
//
// It runs on its own engine, bounded by rules.query_api (max samples,
// timeout, concurrent queries), and answers 404 when the API is off.
func (e *Engine) serveQuery(w http.ResponseWriter, r *http.Request) {
	if !e.cfg.Load().QueryAPI.Enabled {
		writeJSON(w, http.StatusNotFound, apiResponse{Status: "error", ErrorType: "unavailable", Error: "the query API is off (rules.query_api.enabled)"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: err.Error()})
		return
	}
	qs := r.Form.Get("query")
	if qs == "" {
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: "query: missing"})
		return
	}
	ts := time.Now()
	if t := r.Form.Get("time"); t != "" {
		f, err := strconv.ParseFloat(t, 64)
		if err != nil {
			tt, perr := time.Parse(time.RFC3339Nano, t)
			if perr != nil {
				writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: fmt.Sprintf("time: cannot parse %q", t)})
				return
			}
			ts = tt
		} else {
			sec, frac := math.Modf(f)
			ts = time.Unix(int64(sec), int64(frac*1e9))
		}
	}
	if expr, err := Parser.ParseExpr(qs); err == nil {
		if err := CheckQuerySteps(expr, e.cfg.Load().EvaluationInterval); err != nil {
			e.queryRefused.WithLabelValues("max_samples").Inc()
			writeJSON(w, http.StatusUnprocessableEntity, apiResponse{Status: "error", ErrorType: "execution", Error: err.Error()})
			return
		}
	}
	q, err := e.queryEngine.NewInstantQuery(r.Context(), e.storage, nil, qs, ts)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: err.Error()})
		return
	}
	defer q.Close()
	res := q.Exec(r.Context())
	if res.Err != nil {
		code, typ := http.StatusUnprocessableEntity, "execution"
		var tooMany promql.ErrTooManySamples
		var timeout promql.ErrQueryTimeout
		var canceled promql.ErrQueryCanceled
		switch {
		case errors.As(res.Err, &tooMany):
			e.queryRefused.WithLabelValues("max_samples").Inc()
		case errors.As(res.Err, &timeout), errors.As(res.Err, &canceled), errors.Is(res.Err, context.DeadlineExceeded):
			// Out of time, running or waiting for a slot
			// (max_concurrency); a client that hung up lands here too.
			code, typ = http.StatusServiceUnavailable, "timeout"
			e.queryRefused.WithLabelValues("timeout").Inc()
		}
		writeJSON(w, code, apiResponse{Status: "error", ErrorType: typ, Error: res.Err.Error()})
		return
	}
	type sample struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	var data map[string]any
	switch v := res.Value.(type) {
	case promql.Vector:
		out := make([]sample, 0, len(v))
		for _, s := range v {
			out = append(out, sample{Metric: s.Metric.Map(), Value: [2]any{float64(s.T) / 1000, strconv.FormatFloat(s.F, 'f', -1, 64)}})
		}
		data = map[string]any{"resultType": "vector", "result": out}
	case promql.Scalar:
		data = map[string]any{"resultType": "scalar", "result": [2]any{float64(v.T) / 1000, strconv.FormatFloat(v.V, 'f', -1, 64)}}
	default:
		writeJSON(w, http.StatusBadRequest, apiResponse{Status: "error", ErrorType: "bad_data", Error: "only instant vector and scalar results are supported here, got " + string(res.Value.Type())})
		return
	}
	writeJSON(w, http.StatusOK, apiResponse{Status: "success", Data: data})
}
