package healing

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// metrics are the engine's self-metrics.
type metrics struct {
	remediations *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	alertToAct   *prometheus.HistogramVec
	vetoes       *prometheus.CounterVec
	auditErrors  *prometheus.CounterVec
	alerts       prometheus.Counter
	paused       prometheus.Gauge
	enrichments  *prometheus.CounterVec
	gatesOpened  prometheus.Counter
	gateErrors   *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		remediations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_remediations_total",
			Help: "Remediation decisions by policy, action and result (success, failed, vetoed, dry_run, pending_approval, resolved, unresolved, skipped).",
		}, []string{"policy", "action", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_remediation_duration_seconds",
			Help:    "Time an actuator took to act (its API calls), by policy and action.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"policy", "action"}),
		alertToAct: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vigil_remediation_alert_to_action_seconds",
			Help:    "Time from an alert's start to the action decided for it (taken, failed or dry-run), by policy and action.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"policy", "action"}),
		vetoes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_remediation_vetoes_total",
			Help: "Actions a guard stopped, by policy and guard.",
		}, []string{"policy", "guard"}),
		auditErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_healing_audit_errors_total",
			Help: "Audit records that could not be delivered to a sink (event, span).",
		}, []string{"sink"}),
		alerts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_healing_alerts_received_total",
			Help: "Alerts the healing engine received from the alert stream.",
		}),
		enrichments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_healing_enrichments_total",
			Help: "Kubernetes lookups that add labels to alerts before matching, by lookup (owner, dependency) and result (found, not_found, cached, error).",
		}, []string{"lookup", "result"}),
		gatesOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_healing_readiness_gates_opened_total",
			Help: "Readiness gates (healing.kubernetes.readiness_condition) this agent opened: new pods of its node that declare the gate got the condition True.",
		}),
		gateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_healing_readiness_gate_errors_total",
			Help: "Failures of the readiness-gate opener, by stage: watch (listing or watching this node's pods; retried) and open (writing a pod's condition; retried, conflicts not counted).",
		}, []string{"stage"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_healing_paused",
			Help: "Whether remediation is paused through the API (1) or not (0).",
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, stage := range []string{"watch", "open"} {
		m.gateErrors.WithLabelValues(stage)
	}
	for _, c := range []prometheus.Collector{m.remediations, m.duration, m.alertToAct, m.vetoes, m.auditErrors, m.alerts, m.paused, m.enrichments, m.gatesOpened, m.gateErrors} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// auditor sends every record to its sinks: the log, the metrics, the
// history (API and SSE), a Kubernetes Event on the target and a span.
type auditor struct {
	logger  *slog.Logger
	m       *metrics
	history *History
	traces  consumer.Traces
	env     *Env

	// vetoEvents are the veto Events written in the last
	// vetoEventWindow, by what makes a repeat the same: a veto decided
	// again every repeat_interval (a long maintenance window, a
	// dependency down for hours) adds to the count of the Event written
	// first, as client-go's event recorder aggregates, instead of writing
	// one Event a minute.
	eventsMu   sync.Mutex
	vetoEvents map[vetoEventKey]*vetoEvent
}

// vetoEventKey is what makes a veto Event a repeat of another.
type vetoEventKey struct {
	namespace, kind, name, message string
}

// vetoEvent is a veto Event written: its name, count and last time.
type vetoEvent struct {
	name  string
	count int32
	last  time.Time
}

const (
	// vetoEventWindow is how long a veto Event takes repeats (the API
	// server keeps Events an hour by default).
	vetoEventWindow = 30 * time.Minute
	// maxVetoEvents bounds the veto Events remembered; past it the
	// oldest are forgotten (their repeats write new Events).
	maxVetoEvents = 512
)

func newIncidentID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (a *auditor) record(ctx context.Context, r Record, start time.Time) Record {
	return a.recordWith(ctx, r, start, nil)
}

// recordWith is record with a hook run as the record is stored.
func (a *auditor) recordWith(ctx context.Context, r Record, start time.Time, hook func(Record)) Record {
	r.At = time.Now()
	r = a.history.AddWith(r, hook)
	a.m.remediations.WithLabelValues(r.Policy, r.Action, string(r.Result)).Inc()
	if r.Result == ResultVetoed {
		a.m.vetoes.WithLabelValues(r.Policy, r.Guard).Inc()
	}
	if (r.taken() || r.Result == ResultDryRun || r.Result == ResultShadow) && !r.AlertStartsAt.IsZero() {
		a.m.alertToAct.WithLabelValues(r.Policy, r.Action).Observe(max(0, r.At.Sub(r.AlertStartsAt).Seconds()))
	}
	attrs := []any{"id", r.ID, "incident", r.Incident, "policy", r.Policy, "step", r.Step, "action", r.Action,
		"target", r.Target.String(), "alert", r.Alert, "result", string(r.Result)}
	if r.Guard != "" {
		attrs = append(attrs, "guard", r.Guard)
	}
	if r.Reason != "" {
		attrs = append(attrs, "reason", r.Reason)
	}
	if r.RunbookURL != "" {
		attrs = append(attrs, "runbook_url", r.RunbookURL)
	}
	if r.Duration > 0 {
		attrs = append(attrs, "duration_seconds", r.Duration)
	}
	level := slog.LevelInfo
	switch r.Result {
	case ResultFailed, ResultUnresolved:
		level = slog.LevelWarn
	case ResultSkipped:
		level = slog.LevelDebug
	}
	a.logger.Log(ctx, level, "remediation "+string(r.Result), attrs...)
	a.span(ctx, r, start)
	// Skipped decisions are another agent's to record on the object.
	if r.Result != ResultSkipped {
		a.event(ctx, r)
	}
	return r
}

func (a *auditor) span(ctx context.Context, r Record, start time.Time) {
	if a.traces == nil {
		return
	}
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", "vigil")
	rs.Resource().Attributes().PutStr("host.name", r.Node)
	ss := rs.ScopeSpans().AppendEmpty()
	ss.Scope().SetName("github.com/vigil-agent/vigil/healing")
	sp := ss.Spans().AppendEmpty()
	var tid pcommon.TraceID
	if b, err := hex.DecodeString(r.Incident); err == nil && len(b) == 16 {
		copy(tid[:], b)
	}
	var sid pcommon.SpanID
	_, _ = rand.Read(sid[:])
	sp.SetTraceID(tid)
	sp.SetSpanID(sid)
	sp.SetName("remediation " + r.Action)
	sp.SetKind(ptrace.SpanKindInternal)
	if start.IsZero() {
		start = r.At
	}
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(r.At))
	at := sp.Attributes()
	at.PutInt("vigil.record.id", int64(r.ID))
	at.PutStr("vigil.policy", r.Policy)
	at.PutInt("vigil.step", int64(r.Step))
	at.PutStr("vigil.action", r.Action)
	at.PutStr("vigil.target", r.Target.String())
	at.PutStr("vigil.result", string(r.Result))
	at.PutStr("vigil.alert", r.Alert)
	at.PutStr("vigil.alert.fingerprint", r.Fingerprint)
	at.PutBool("vigil.dry_run", r.DryRun)
	if r.Guard != "" {
		at.PutStr("vigil.guard", r.Guard)
	}
	if r.Reason != "" {
		at.PutStr("vigil.reason", r.Reason)
	}
	if r.RunbookURL != "" {
		at.PutStr("vigil.runbook_url", r.RunbookURL)
	}
	if r.Target.Namespace != "" {
		at.PutStr("k8s.namespace.name", r.Target.Namespace)
	}
	if r.Result == ResultFailed || r.Result == ResultUnresolved {
		sp.Status().SetCode(ptrace.StatusCodeError)
		sp.Status().SetMessage(r.Reason)
	} else {
		sp.Status().SetCode(ptrace.StatusCodeOk)
	}
	if err := a.traces.ConsumeTraces(ctx, td); err != nil {
		a.m.auditErrors.WithLabelValues("span").Inc()
		a.logger.Warn("cannot export remediation span", "err", err)
	}
}

// event writes a Kubernetes Event on the target object: reason
// Remediation<Result>, the policy, action, guard and runbook in the
// message.
func (a *auditor) event(ctx context.Context, r Record) {
	env := a.env
	if env == nil || env.Kube == nil || !r.Target.Kubernetes() {
		return
	}
	ns := r.Target.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault
	}
	typ := corev1.EventTypeNormal
	if r.Result == ResultFailed || r.Result == ResultUnresolved || r.Result == ResultVetoed {
		typ = corev1.EventTypeWarning
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "policy %s step %d: %s %s", r.Policy, r.Step, r.Action, r.Result)
	if r.Guard != "" {
		fmt.Fprintf(&msg, " by guard %s", r.Guard)
	}
	if r.Reason != "" {
		fmt.Fprintf(&msg, ": %s", r.Reason)
	}
	if r.RunbookURL != "" {
		fmt.Fprintf(&msg, " (runbook: %s)", r.RunbookURL)
	}
	text := msg.String()
	if len(text) > 1000 {
		text = text[:1000]
	}
	now := metav1.NewTime(r.At)
	apiVersion := "v1"
	switch r.Target.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		apiVersion = "apps/v1"
	}
	reason := "Remediation"
	for _, w := range strings.Split(string(r.Result), "_") {
		reason += strings.ToUpper(w[:1]) + w[1:]
	}
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "vigil-", Namespace: ns,
			Annotations: map[string]string{"vigil.dev/record-id": fmt.Sprint(r.ID), "vigil.dev/incident": r.Incident}},
		InvolvedObject: corev1.ObjectReference{Kind: r.Target.Kind, Namespace: r.Target.Namespace, Name: r.Target.Name, APIVersion: apiVersion},
		Reason:         reason,
		Message:        text,
		Type:           typ,
		Source:         corev1.EventSource{Component: "vigil", Host: r.Node},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		ReportingController: "vigil.dev/healing",
		ReportingInstance:   env.Identity,
		Action:              r.Action,
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var key vetoEventKey
	if r.Result == ResultVetoed {
		key = vetoEventKey{ns, r.Target.Kind, r.Target.Name, text}
		if a.repeatVetoEvent(ctx, key, r) {
			return
		}
	}
	// One attempt: the record is already in the log, metrics and span; an
	// unreachable API server must not hold the engine up.
	created, err := env.Kube.Events(ns).Create(ctx, ev, metav1.CreateOptions{})
	if err != nil {
		a.m.auditErrors.WithLabelValues("event").Inc()
		a.logger.Warn("cannot write the remediation event", "target", r.Target.String(), "err", err)
		return
	}
	if r.Result == ResultVetoed {
		a.eventsMu.Lock()
		defer a.eventsMu.Unlock()
		if a.vetoEvents == nil {
			a.vetoEvents = map[vetoEventKey]*vetoEvent{}
		}
		if len(a.vetoEvents) >= maxVetoEvents {
			a.forgetOldestVetoEvent()
		}
		a.vetoEvents[key] = &vetoEvent{name: created.Name, count: 1, last: r.At}
	}
}

// repeatVetoEvent adds veto record r to the count of the Event written
// for the same veto (key) in the last vetoEventWindow, with r's time,
// record ID and incident; false if there is none, or it could not be
// updated (expired: the caller writes a new one).
func (a *auditor) repeatVetoEvent(ctx context.Context, key vetoEventKey, r Record) bool {
	a.eventsMu.Lock()
	defer a.eventsMu.Unlock()
	seen := a.vetoEvents[key]
	if seen == nil {
		return false
	}
	if r.At.Sub(seen.last) > vetoEventWindow {
		delete(a.vetoEvents, key)
		return false
	}
	patch, err := json.Marshal(map[string]any{
		"count":         seen.count + 1,
		"lastTimestamp": metav1.NewTime(r.At),
		"metadata": map[string]any{"annotations": map[string]string{
			"vigil.dev/record-id": fmt.Sprint(r.ID), "vigil.dev/incident": r.Incident}},
	})
	if err != nil {
		return false
	}
	if _, err := a.env.Kube.Events(key.namespace).Patch(ctx, seen.name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		delete(a.vetoEvents, key)
		if !apierrors.IsNotFound(err) {
			a.m.auditErrors.WithLabelValues("event").Inc()
			a.logger.Warn("cannot add to the remediation event; writing a new one", "target", r.Target.String(), "event", seen.name, "err", err)
		}
		return false
	}
	seen.count++
	seen.last = r.At
	return true
}

// forgetOldestVetoEvent forgets the veto Event repeated longest ago.
// Called with eventsMu held.
func (a *auditor) forgetOldestVetoEvent() {
	var oldest vetoEventKey
	var at time.Time
	for k, v := range a.vetoEvents {
		if at.IsZero() || v.last.Before(at) {
			oldest, at = k, v.last
		}
	}
	delete(a.vetoEvents, oldest)
}
