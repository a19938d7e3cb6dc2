package rules

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/internal/testenv"
)

var (
	webA = workload.Identity{Namespace: "shop", Pod: "web-a", Container: "web", ContainerID: "c1", OwnerKind: "Deployment", OwnerName: "web"}
	webB = workload.Identity{Namespace: "shop", Pod: "web-b", Container: "web", ContainerID: "c2", OwnerKind: "Deployment", OwnerName: "web"}
)

// testDetector is a detector with the default configuration (changed by
// edit) on its own stream.
func testDetector(t *testing.T, edit func(*EvidenceConfig)) (*detector, *Subscription) {
	t.Helper()
	cfg := defaultEvidenceConfig()
	if edit != nil {
		edit(&cfg)
	}
	s := NewStream()
	sub := s.Subscribe(1000)
	t.Cleanup(sub.Close)
	return newDetector(cfg, s, prometheus.NewRegistry()), sub
}

// batch is an Outcomes event at at.
func batch(at time.Time, os ...event.Outcome) event.Event {
	return event.Event{Kind: event.Outcomes, Time: at, Outcomes: os, SlowAfter: time.Second, HangAfter: 2 * time.Second}
}

// drain returns the alerts published so far.
func drain(sub *Subscription) []Alert {
	var out []Alert
	for {
		select {
		case a := <-sub.C():
			out = append(out, a)
		default:
			return out
		}
	}
}

// feed sends one batch of n server requests of wl, bad of them 5xx, every
// interval from start, and returns after how many batches the first alert
// came (0: none).
func feed(d *detector, sub *Subscription, wl workload.Identity, start time.Time, interval time.Duration, batches int, outcome func(i int) event.Outcome) (int, Alert) {
	for i := 1; i <= batches; i++ {
		o := outcome(i)
		o.Workload = wl
		d.observe(batch(start.Add(time.Duration(i)*interval), o))
		if as := drain(sub); len(as) > 0 {
			return i, as[0]
		}
	}
	return 0, Alert{}
}

func TestEvidenceFiresOnFewRequestsOf5xx(t *testing.T) {
	d, sub := testDetector(t, nil)
	t0 := time.Now()
	// Healthy replica b and a faulty replica a, 5 requests a batch each (20
	// a second at 250 ms batches).
	d.observe(batch(t0, event.Outcome{Workload: webB, Signal: event.ServerHTTP, Total: 5}))
	n, a := feed(d, sub, webA, t0, 250*time.Millisecond, 40, func(int) event.Outcome {
		return event.Outcome{Signal: event.ServerHTTP, Total: 5, Errors: 5}
	})
	// ln(0.5/0.05) = 2.30 per 5xx: 7 of them reach 16, in the second batch.
	if n != 2 {
		t.Fatalf("alert after %d batches of 5 requests, want 2 (7 requests at 2.30 each)", n)
	}
	want := map[string]string{"alertname": "VigilWorkloadHigh5xxRatio", "severity": "critical", "namespace": "shop", "pod": "web-a", "container": "web"}
	for k, v := range want {
		if a.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (labels %v)", k, a.Labels[k], v, a.Labels)
		}
	}
	if len(a.Labels) != len(want) {
		t.Errorf("labels %v, want exactly %v: the same as the rule file's alert, so policies and fingerprints match", a.Labels, want)
	}
	if a.Source != SourceEvidence || a.State != StateFiring {
		t.Errorf("source %s state %s", a.Source, a.State)
	}
	ann := a.Annotations
	if ann["evidence_requests"] != "10" || ann["evidence_bad_requests"] != "10" || ann["evidence_baseline"] != "0.05" ||
		ann["evidence_threshold"] != "16" || ann["evidence_siblings"] != "web-b 0/0 requests bad" {
		t.Errorf("evidence annotations: %v", ann)
	}
	if !strings.HasPrefix(ann["summary"], "Pod shop/web-a answers too many HTTP 5xx") || !strings.Contains(ann["description"], "10 of 10 requests") {
		t.Errorf("summary %q description %q", ann["summary"], ann["description"])
	}
	if a.Fingerprint != Fingerprint(a.Labels) {
		t.Error("fingerprint is not the labels' fingerprint")
	}
}

// A workload at its baseline error rate (and at a steady low one) never
// fires, over many more requests than a fault needs.
func TestEvidenceQuietOnSteadyLowErrorRates(t *testing.T) {
	for _, rate := range []float64{0.02, 0.05} {
		d, sub := testDetector(t, nil)
		rng := rand.New(rand.NewPCG(1, uint64(rate*100)))
		t0 := time.Now()
		n, a := feed(d, sub, webA, t0, 250*time.Millisecond, 200_000, func(int) event.Outcome {
			o := event.Outcome{Signal: event.ServerHTTP, Total: 5}
			for range 5 {
				if rng.Float64() < rate {
					o.Errors++
				}
			}
			return o
		})
		if n != 0 {
			t.Errorf("%v errors: alert after %d requests: %v", rate, 5*n, a.Annotations["description"])
		}
		if got := testutil.ToFloat64(d.observations.WithLabelValues("VigilWorkloadHigh5xxRatio", "bad")); got < rate*1e6*0.9 {
			t.Errorf("%v errors: %v bad observations counted of 1e6 requests", rate, got)
		}
	}
}

// Under low traffic the test waits for requests, not for time: one request
// a minute, all failing, fires on the seventh.
func TestEvidenceWaitsForRequestsUnderLowTraffic(t *testing.T) {
	d, sub := testDetector(t, nil)
	n, _ := feed(d, sub, webA, time.Now(), time.Minute, 20, func(int) event.Outcome {
		return event.Outcome{Signal: event.ServerHTTP, Total: 1, Errors: 1}
	})
	if n != 7 {
		t.Errorf("alert on request %d, want 7", n)
	}
}

// A per-second test: a burst of slow answers a few seconds long does not
// fire; latency that stays high fires after five slow seconds.
func TestEvidenceLatencyIgnoresBursts(t *testing.T) {
	d, sub := testDetector(t, nil)
	t0 := time.Now()
	slow := func(from, to int) func(i int) event.Outcome {
		return func(i int) event.Outcome {
			o := event.Outcome{Signal: event.ServerHTTP, Total: 5}
			if s := i / 4; s >= from && s < to {
				o.Slow = 5
			}
			return o
		}
	}
	// Three slow seconds in a minute, three times.
	for r := range 3 {
		if n, a := feed(d, sub, webA, t0.Add(time.Duration(r)*time.Minute), 250*time.Millisecond, 240, slow(10, 13)); n != 0 {
			t.Fatalf("a 3 s burst fired %s", a.Annotations["description"])
		}
	}
	n, a := feed(d, sub, webA, t0.Add(3*time.Minute), 250*time.Millisecond, 240, slow(10, 60))
	// Slow from second 10; a second is tested when the next begins; five
	// slow seconds (3.91 each) reach 16.
	if n == 0 || n/4 != 15 {
		t.Fatalf("latency fired at second %d (batch %d), want 15", n/4, n)
	}
	if a.Labels["alertname"] != "VigilWorkloadHighLatency" || a.Annotations["evidence_observations"] != "5" || a.Annotations["evidence_method"] != "cusum per second" {
		t.Errorf("latency alert: %v %v", a.Labels, a.Annotations)
	}
}

// A hung replica's requests are unanswered; an endpoint that answers
// every request late (long polls) shows one unanswered per answered and
// never fires.
func TestEvidenceHangAgainstLongPolls(t *testing.T) {
	d, sub := testDetector(t, nil)
	t0 := time.Now()
	if n, a := feed(d, sub, webA, t0, 250*time.Millisecond, 4*600, func(i int) event.Outcome {
		return event.Outcome{Signal: event.ServerHTTP, Total: 5, Unanswered: 5}
	}); n != 0 {
		t.Fatalf("long polls fired: %v", a.Annotations["description"])
	}
	n, a := feed(d, sub, webB, t0, 250*time.Millisecond, 40, func(i int) event.Outcome {
		return event.Outcome{Signal: event.ServerHTTP, Unanswered: 5}
	})
	// ln(0.99/0.5) = 0.683 per unanswered request: 24 reach 16.
	if n != 5 || a.Labels["alertname"] != "VigilWorkloadNotAnswering" {
		t.Fatalf("hang: alert after %d batches of 5: %v", n, a.Labels)
	}
	if !strings.Contains(a.Annotations["description"], "unanswered after 2s") {
		t.Errorf("description: %s", a.Annotations["description"])
	}
}

// Dependencies: per destination, with the destination label the healing
// engine resolves to a Service or pod.
func TestEvidenceDependencies(t *testing.T) {
	d, sub := testDetector(t, nil)
	t0 := time.Now()
	n, a := feed(d, sub, webA, t0, 250*time.Millisecond, 100, func(int) event.Outcome {
		return event.Outcome{Signal: event.Connect, Destination: "10.0.0.7:5432", Total: 3, Errors: 3}
	})
	if n == 0 || a.Labels["alertname"] != "VigilWorkloadDependencyUnreachable" || a.Labels["destination"] != "10.0.0.7:5432" {
		t.Fatalf("unreachable: batch %d %v", n, a.Labels)
	}
	if s := float64(n) / 4; s > 7 {
		t.Errorf("unreachable after %.1f s of refused connects, want at most 7", s)
	}
	n, a = feed(d, sub, webA, t0, 250*time.Millisecond, 100, func(int) event.Outcome {
		return event.Outcome{Signal: event.ClientHTTP, Destination: "10.0.0.8:80", Total: 3, Errors: 3}
	})
	if n != 3 || a.Labels["alertname"] != "VigilWorkloadDependencyErrors" || a.Labels["destination"] != "10.0.0.8:80" {
		t.Fatalf("dependency errors: batch %d %v", n, a.Labels)
	}
	// A dependency restarting for 3 s (refused connects) is not a fault.
	d2, sub2 := testDetector(t, nil)
	if n, a := feed(d2, sub2, webA, t0, 250*time.Millisecond, 400, func(i int) event.Outcome {
		o := event.Outcome{Signal: event.Connect, Destination: "10.0.0.7:5432", Total: 3}
		if i >= 40 && i < 52 {
			o.Errors = 3
		}
		return o
	}); n != 0 {
		t.Errorf("a 3 s restart fired %v", a.Annotations["description"])
	}
}

// The alert keeps firing while the evidence keeps reaching the threshold
// and resolves ResolveAfter after it last did.
func TestEvidenceResolves(t *testing.T) {
	d, sub := testDetector(t, func(c *EvidenceConfig) { c.ResolveAfter = 30 * time.Second })
	t0 := time.Now()
	for i := range 40 {
		d.observe(batch(t0.Add(time.Duration(i)*250*time.Millisecond), event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 5, Errors: 5}))
	}
	as := drain(sub)
	if len(as) != 1 {
		t.Fatalf("%d alerts for one fault, want 1", len(as))
	}
	if got := testutil.ToFloat64(d.fired.WithLabelValues("VigilWorkloadHigh5xxRatio", "repeat")); got < 10 {
		t.Errorf("repeats %v: the evidence kept reaching the threshold", got)
	}
	last := t0.Add(39 * 250 * time.Millisecond)
	d.expire(last.Add(29 * time.Second))
	if as := drain(sub); len(as) != 0 {
		t.Fatalf("resolved early: %v", as)
	}
	d.expire(last.Add(31 * time.Second))
	as = drain(sub)
	if len(as) != 1 || as[0].State != StateResolved || as[0].Fingerprint != Fingerprint(as[0].Labels) {
		t.Fatalf("resolution: %+v", as)
	}
}

// Keys are bounded: beyond max_keys new workloads are dropped and counted.
func TestEvidenceMaxKeys(t *testing.T) {
	d, _ := testDetector(t, func(c *EvidenceConfig) { c.MaxKeys = 10 })
	var os []event.Outcome
	for i := range 100 {
		os = append(os, event.Outcome{Workload: workload.Identity{SystemdUnit: "u" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + ".service"}, Signal: event.ServerHTTP, Total: 1})
	}
	d.observe(batch(time.Now(), os...))
	if len(d.keys) != 10 {
		t.Errorf("%d keys kept, want 10", len(d.keys))
	}
	// Each outcome feeds three tests (5xx, unanswered, latency): 300 states
	// asked for, 10 kept.
	if got := testutil.ToFloat64(d.dropped); got != 290 {
		t.Errorf("dropped %v, want 290", got)
	}
}

func TestEvidenceConfigErrors(t *testing.T) {
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.Evidence.Threshold = 1
	cfg.Evidence.Errors = HypothesesConfig{Baseline: 0.5, Fault: 0.1}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "evidence.threshold") || !strings.Contains(err.Error(), "evidence.errors: need 0 < baseline < fault < 1") {
		t.Errorf("Validate: %v", err)
	}
}

// Through the engine: an outcome batch on the agent's event bus becomes an
// alert on the stream (with the external labels) and in GET /api/v1/alerts.
func TestEvidenceThroughEngine(t *testing.T) {
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.ExternalLabels = map[string]string{"cluster": "prod-1"}
	te := startEngine(t, cfg)
	sub := te.stream.Subscribe(100)
	defer sub.Close()
	testenv.EventuallyTrue(t, 10*time.Second, "the evidence detector's subscription", func() bool {
		te.events.Publish(batch(time.Now(), event.Outcome{Workload: webB, Signal: event.ServerHTTP, Total: 1}))
		return testutil.ToFloat64(te.Engine.evidence.observations.WithLabelValues("VigilWorkloadHigh5xxRatio", "good")) > 0
	})
	te.events.Publish(batch(time.Now(), event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 10, Errors: 10}))
	a := nextAlert(t, sub, "VigilWorkloadHigh5xxRatio", StateFiring)
	// With the external labels, as the rule files' alert of the same name.
	if a.Labels["pod"] != "web-a" || a.Source != SourceEvidence || a.Labels["cluster"] != "prod-1" || a.Fingerprint != Fingerprint(a.Labels) {
		t.Errorf("alert %+v", a)
	}
	var got struct {
		Data struct {
			Alerts []apiAlert `json:"alerts"`
		} `json:"data"`
	}
	te.getJSON(t, "/api/v1/alerts", &got)
	if len(got.Data.Alerts) != 1 || got.Data.Alerts[0].Source != "evidence" || got.Data.Alerts[0].Labels["pod"] != "web-a" {
		t.Errorf("/api/v1/alerts: %+v", got.Data.Alerts)
	}
}

// A caller whose own 5xx come from a dependency it cannot reach: its 5xx
// alert is held while the dependency's connects fail (explained), and the
// dependency alert fires, so a policy acts on the dependency and the
// healing engine's dependency guard protects the caller. Once the
// dependency is back and the caller still answers 5xx, its own alert fires.
func TestEvidenceDependencyExplainsCallerErrors(t *testing.T) {
	d, sub := testDetector(t, nil)
	t0 := time.Now()
	// The caller's HTTP reader and TCP reader publish separately; the
	// connect failures carry a container ID the HTTP side does not know yet.
	webConn := webA
	webConn.ContainerID = ""
	var got []Alert
	for i := range 40 { // 10 s
		at := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		d.observe(batch(at, event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 3, Errors: 3}))
		d.observe(batch(at, event.Outcome{Workload: webConn, Signal: event.Connect, Destination: "10.96.0.10:80", Total: 3, Errors: 3}))
		got = append(got, drain(sub)...)
	}
	if len(got) != 1 || got[0].Labels["alertname"] != "VigilWorkloadDependencyUnreachable" || got[0].Labels["destination"] != "10.96.0.10:80" {
		t.Fatalf("alerts %v, want only the dependency's", names(got))
	}
	if n := testutil.ToFloat64(d.fired.WithLabelValues("VigilWorkloadHigh5xxRatio", "explained")); n < 1 {
		t.Errorf("explained holds counted %v", n)
	}
	// The dependency answers again; the caller keeps failing on its own.
	for i := range 40 {
		at := t0.Add(10*time.Second + time.Duration(i)*250*time.Millisecond)
		d.observe(batch(at, event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 3, Errors: 3}))
		d.observe(batch(at, event.Outcome{Workload: webConn, Signal: event.Connect, Destination: "10.96.0.10:80", Total: 3}))
		got = append(got, drain(sub)...)
	}
	if len(got) != 2 || got[1].Labels["alertname"] != "VigilWorkloadHigh5xxRatio" || got[1].Labels["pod"] != "web-a" {
		t.Fatalf("alerts %v, want the caller's own 5xx alert after the dependency recovered", names(got))
	}
	// It waited for the dependency's last failures to be explainedWindow old.
	if since, _ := time.Parse(time.RFC3339Nano, got[1].Annotations["evidence_since"]); since.Before(t0.Add(10 * time.Second)) {
		t.Errorf("the caller's alert counts evidence from while the dependency failed: since %s", got[1].Annotations["evidence_since"])
	}
}

// A caller whose dependency answers later than the caller waits answers
// 5xx (its calls time out; the eBPF collector counts a call slow once it
// waited http_slow_after, answered or not): its 5xx and latency alerts are
// held while the dependency's slow evidence builds, from the first second
// on, and the dependency's VigilWorkloadDependencySlow fires instead. A
// dependency that is slow now and then (one call in twelve) explains
// nothing: the caller's own 5xx alert fires as soon as with no dependency
// at all.
func TestEvidenceSlowDependencyExplainsCallerErrors(t *testing.T) {
	const dest = "10.0.0.9:80"
	run := func(dep func(i int) *event.Outcome) []Alert {
		d, sub := testDetector(t, nil)
		t0 := time.Now()
		var got []Alert
		for i := range 40 { // 10 s
			at := t0.Add(time.Duration(i) * 250 * time.Millisecond)
			os := []event.Outcome{{Workload: webA, Signal: event.ServerHTTP, Total: 3, Errors: 3, Slow: 3}}
			if o := dep(i); o != nil {
				o.Workload, o.Signal, o.Destination = webA, event.ClientHTTP, dest
				os = append(os, *o)
			}
			d.observe(batch(at, os...))
			for _, a := range drain(sub) {
				a.Annotations = map[string]string{"at": strconv.Itoa(i)}
				got = append(got, a)
			}
		}
		return got
	}
	// Every call slow, from the same batch as the caller's first 5xx.
	got := run(func(int) *event.Outcome { return &event.Outcome{Total: 3, Slow: 3} })
	if len(got) != 1 || got[0].Labels["alertname"] != "VigilWorkloadDependencySlow" || got[0].Labels["destination"] != dest {
		t.Fatalf("alerts %v, want only the dependency's slow alert", names(got))
	}
	// Slow now and then: the caller's alerts fire at the same batches as
	// with no dependency.
	alone := run(func(int) *event.Outcome { return nil })
	now := run(func(i int) *event.Outcome {
		if i%4 == 0 && i/4%3 == 0 {
			return &event.Outcome{Total: 4, Slow: 1}
		}
		return &event.Outcome{Total: 4}
	})
	if len(alone) == 0 || len(now) != len(alone) {
		t.Fatalf("alerts %v with a dependency slow now and then, %v with none", names(now), names(alone))
	}
	for i := range alone {
		if now[i].Labels["alertname"] != alone[i].Labels["alertname"] || now[i].Annotations["at"] != alone[i].Annotations["at"] {
			t.Errorf("alert %d: %s at batch %s with a dependency slow now and then, %s at batch %s with none", i,
				now[i].Labels["alertname"], now[i].Annotations["at"], alone[i].Labels["alertname"], alone[i].Annotations["at"])
		}
	}
}

// A caller whose PostgreSQL fails (the rule files' VigilWorkloadPostgresErrors
// fires for it: its outcomes are not the detector's) answers 5xx: its
// evidence-based 5xx alert is held while that alert fires, as for the
// HTTP dependency alerts; a sibling replica with no PostgreSQL alert, same
// namespace and owner, is not held; once the PostgreSQL alert resolved,
// the caller's own 5xx alert fires.
func TestEvidenceProtocolDependencyExplainsCallerErrors(t *testing.T) {
	d, sub := testDetector(t, nil)
	// The engine's publisher, as the engine wires it.
	pub := newPublisher(NewStream(), prometheus.NewRegistry())
	d.firing = func() []Alert { return pub.firing(SourceRule) }
	pg := map[string]string{"alertname": "VigilWorkloadPostgresErrors", "severity": "warning", "namespace": "shop", "pod": "web-a", "container": "web"}
	pub.publish(Alert{Labels: pg, State: StateFiring, Source: SourceRule, StartsAt: time.Now()})
	// The same alert for another container of the pod holds nothing here.
	pub.publish(Alert{Labels: map[string]string{"alertname": "VigilWorkloadDNSFailures", "namespace": "shop", "pod": "web-b", "container": "sidecar"},
		State: StateFiring, Source: SourceRule, StartsAt: time.Now()})
	t0 := time.Now()
	var got []Alert
	for i := range 40 { // 10 s
		at := t0.Add(time.Duration(i) * 250 * time.Millisecond)
		d.observe(batch(at, event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 3, Errors: 3},
			event.Outcome{Workload: webB, Signal: event.ServerHTTP, Total: 3, Errors: 3}))
		got = append(got, drain(sub)...)
	}
	if len(got) != 1 || got[0].Labels["alertname"] != "VigilWorkloadHigh5xxRatio" || got[0].Labels["pod"] != "web-b" {
		t.Fatalf("alerts %v (%v), want only web-b's 5xx alert", names(got), got)
	}
	if n := testutil.ToFloat64(d.fired.WithLabelValues("VigilWorkloadHigh5xxRatio", "explained")); n < 1 {
		t.Errorf("explained holds counted %v", n)
	}
	pub.publish(Alert{Labels: pg, State: StateResolved, Source: SourceRule, EndsAt: time.Now()})
	for i := range 40 {
		at := t0.Add(10*time.Second + time.Duration(i)*250*time.Millisecond)
		d.observe(batch(at, event.Outcome{Workload: webA, Signal: event.ServerHTTP, Total: 3, Errors: 3}))
		got = append(got, drain(sub)...)
	}
	if len(got) != 2 || got[1].Labels["alertname"] != "VigilWorkloadHigh5xxRatio" || got[1].Labels["pod"] != "web-a" {
		t.Fatalf("alerts %v, want web-a's own 5xx alert after its PostgreSQL alert resolved", names(got))
	}
}

func names(as []Alert) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.Labels["alertname"]+"/"+string(a.State))
	}
	return out
}

// The rule file's alert and the evidence detector's alert of the same name
// and labels are one alert on the stream: it fires when the first fires
// and resolves when the last resolves, so the rule's alert firing after
// its for: does not start a second runbook for a fault already acted on.
func TestEvidenceAndRuleAlertsMerge(t *testing.T) {
	s := NewStream()
	sub := s.Subscribe(100)
	defer sub.Close()
	p := newPublisher(s, prometheus.NewRegistry())
	labels := map[string]string{"alertname": "VigilWorkloadHigh5xxRatio", "severity": "critical", "namespace": "shop", "pod": "web-a"}
	at := time.Now()
	alert := func(src Source, st State, startsAt time.Time) Alert {
		return Alert{Labels: labels, Source: src, State: st, StartsAt: startsAt, Fingerprint: Fingerprint(labels)}
	}
	p.publish(alert(SourceEvidence, StateFiring, at))
	p.publish(alert(SourceRule, StateFiring, at.Add(time.Minute)))
	p.publish(alert(SourceRule, StateFiring, at.Add(time.Minute))) // a resend
	p.publish(alert(SourceEvidence, StateResolved, at))
	if got := names(drain(sub)); strings.Join(got, " ") != "VigilWorkloadHigh5xxRatio/firing" {
		t.Fatalf("while both or one fire: %v, want the first firing only", got)
	}
	p.publish(alert(SourceRule, StateResolved, at.Add(time.Minute)))
	if got := names(drain(sub)); strings.Join(got, " ") != "VigilWorkloadHigh5xxRatio/resolved" {
		t.Fatalf("when the last resolves: %v", got)
	}
	// Fired again later: a new alert.
	p.publish(alert(SourceRule, StateFiring, at.Add(time.Hour)))
	if got := names(drain(sub)); strings.Join(got, " ") != "VigilWorkloadHigh5xxRatio/firing" {
		t.Fatalf("a new fault: %v", got)
	}
	// Another source is not merged: Alertmanager's alert of the same labels
	// is its own.
	p.publish(alert(SourceAlertmanager, StateFiring, at))
	if got := names(drain(sub)); len(got) != 1 {
		t.Fatalf("webhook alert: %v", got)
	}
}
