package rules

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// Evidence-based detection (docs/detection.md): the request and connect
// outcomes the eBPF collector tallies per workload come a few times a
// second; for each workload (and destination) and each health signal a
// CUSUM of the log-likelihood ratio between two hypotheses (the rate of
// bad outcomes a healthy workload may have, and the rate of a fault)
// fires the signal's default alert as soon as the evidence reaches the
// threshold, instead of after a fixed wait. Request-level signals count
// requests; second-level signals count seconds (a second is bad when most
// of its outcomes are), so a burst shorter than a few seconds never fires
// them.

// HypothesesConfig are the two rates of bad outcomes a signal's test
// decides between.
type HypothesesConfig struct {
	// Baseline is the rate a healthy workload may have (the null
	// hypothesis); at or under it the false-alarm bound holds.
	Baseline float64 `yaml:"baseline"`
	// Fault is the rate of a failure worth an alert (the alternative).
	Fault float64 `yaml:"fault"`
}

// EvidenceConfig configures evidence-based detection.
type EvidenceConfig struct {
	// Enabled turns the detector on (the default). The rule files' alerts
	// of the same names keep firing after their `for:` as before.
	Enabled bool `yaml:"enabled"`
	// Threshold is the log-likelihood ratio at which an alert fires: the
	// average run to a false alarm at or under the baseline is at least
	// e^threshold observations (Lorden's bound; 16: about 8.9 million).
	Threshold float64 `yaml:"threshold"`
	// ResolveAfter is how long an alert keeps firing after the evidence
	// last reached the threshold.
	ResolveAfter time.Duration `yaml:"resolve_after"`
	// MaxKeys bounds the workload×signal×destination states kept; new
	// ones beyond it are dropped and counted.
	MaxKeys int `yaml:"max_keys"`
	// Errors is 5xx answers among requests (server side, and client side
	// per destination), tested per request.
	Errors HypothesesConfig `yaml:"errors"`
	// Unanswered is server requests still unanswered after the eBPF
	// collector's http_hang_after among requests read, tested per request.
	// An endpoint that answers every request, however late, shows at most
	// one unanswered per answered request: a baseline of 0.5 keeps it in.
	Unanswered HypothesesConfig `yaml:"unanswered"`
	// Slow is answers later than the eBPF collector's http_slow_after,
	// tested per second.
	Slow HypothesesConfig `yaml:"slow"`
	// Connect is failed outbound connects per destination, tested per
	// second.
	Connect HypothesesConfig `yaml:"connect"`
}

func defaultEvidenceConfig() EvidenceConfig {
	return EvidenceConfig{
		Enabled:      true,
		Threshold:    16,
		ResolveAfter: 2 * time.Minute,
		MaxKeys:      20000,
		Errors:       HypothesesConfig{Baseline: 0.05, Fault: 0.5},
		Unanswered:   HypothesesConfig{Baseline: 0.5, Fault: 0.99},
		Slow:         HypothesesConfig{Baseline: 0.02, Fault: 0.5},
		Connect:      HypothesesConfig{Baseline: 0.02, Fault: 0.5},
	}
}

func (c EvidenceConfig) validate(add func(string, error)) {
	if !c.Enabled {
		return
	}
	if !(c.Threshold >= 2 && c.Threshold <= 100) {
		add("evidence.threshold", fmt.Errorf("must be between 2 and 100, got %v", c.Threshold))
	}
	if c.ResolveAfter < time.Second {
		add("evidence.resolve_after", fmt.Errorf("must be at least 1s, got %s", c.ResolveAfter))
	}
	if c.MaxKeys < 1 {
		add("evidence.max_keys", fmt.Errorf("must be at least 1, got %d", c.MaxKeys))
	}
	for name, h := range map[string]HypothesesConfig{"errors": c.Errors, "unanswered": c.Unanswered, "slow": c.Slow, "connect": c.Connect} {
		if !(h.Baseline > 0 && h.Baseline < h.Fault && h.Fault < 1) {
			add("evidence."+name, fmt.Errorf("need 0 < baseline < fault < 1, got baseline %v and fault %v", h.Baseline, h.Fault))
		}
	}
}

// test is one signal's hypotheses as log-likelihood ratios of a bad and
// a good observation.
type test struct {
	HypothesesConfig
	bad, good float64
}

func newTest(h HypothesesConfig) test {
	return test{h, math.Log(h.Fault / h.Baseline), math.Log((1 - h.Fault) / (1 - h.Baseline))}
}

// check names one health signal: the default alert it fires and how its
// evidence is counted.
type check struct {
	alert    string
	severity string
	perSec   bool // tested per second rather than per observation
	what     string
	unit     string
	summary  string // after "Pod ns/name " or "Unit name "
	// explainedBy names the dependency alerts of the same workload that
	// explain this one: while one of them sees failures, this alert is
	// held (the caller's own errors or latency come from its dependency,
	// whose alert fires instead and whose guard protects the caller). The
	// detector's own (HTTP and connect) dependency alerts count by their
	// tests' recent failures; the rule files' dependency-by-protocol
	// alerts (Redis, PostgreSQL, DNS), whose outcomes it does not test,
	// while they fire.
	explainedBy []string
	// explainsWhileBuilding: this dependency alert's recent failures
	// explain a caller's only while its evidence builds (cusum.building):
	// one slow answer now and then is no reason to hold a caller's alert.
	explainsWhileBuilding bool
	// count returns the observations and the bad ones in o.
	count func(o *event.Outcome) (n, bad uint64)
	test  func(c *EvidenceConfig) HypothesesConfig
}

var checks = map[event.Signal][]check{
	event.ServerHTTP: {
		{alert: "VigilWorkloadHigh5xxRatio", severity: "critical", what: "answered 5xx", unit: "requests",
			summary: "answers too many HTTP 5xx.",
			explainedBy: []string{"VigilWorkloadDependencyUnreachable", "VigilWorkloadDependencyErrors", "VigilWorkloadDependencySlow",
				"VigilWorkloadRedisErrors", "VigilWorkloadPostgresErrors", "VigilWorkloadDNSFailures", "VigilWorkloadGRPCErrors"},
			count: func(o *event.Outcome) (uint64, uint64) { return uint64(o.Total), uint64(o.Errors) },
			test:  func(c *EvidenceConfig) HypothesesConfig { return c.Errors }},
		{alert: "VigilWorkloadNotAnswering", severity: "critical", what: "unanswered after {hang}", unit: "requests",
			summary: "reads HTTP requests and does not answer them.",
			count: func(o *event.Outcome) (uint64, uint64) {
				return uint64(o.Total) + uint64(o.Unanswered), uint64(o.Unanswered)
			},
			test: func(c *EvidenceConfig) HypothesesConfig { return c.Unanswered }},
		{alert: "VigilWorkloadHighLatency", severity: "warning", perSec: true, what: "mostly answered later than {slow}", unit: "seconds",
			summary: "is slow.",
			explainedBy: []string{"VigilWorkloadDependencyUnreachable", "VigilWorkloadDependencyErrors", "VigilWorkloadDependencySlow",
				"VigilWorkloadRedisErrors", "VigilWorkloadRedisSlow", "VigilWorkloadPostgresErrors", "VigilWorkloadPostgresSlow", "VigilWorkloadDNSFailures", "VigilWorkloadGRPCErrors"},
			count: func(o *event.Outcome) (uint64, uint64) { return uint64(o.Total), uint64(o.Slow) },
			test:  func(c *EvidenceConfig) HypothesesConfig { return c.Slow }},
	},
	event.ClientHTTP: {
		{alert: "VigilWorkloadDependencyErrors", severity: "warning", what: "answered 5xx by {dest}", unit: "requests",
			summary: "gets HTTP 5xx from its dependency {dest}.",
			count:   func(o *event.Outcome) (uint64, uint64) { return uint64(o.Total), uint64(o.Errors) },
			test:    func(c *EvidenceConfig) HypothesesConfig { return c.Errors }},
		{alert: "VigilWorkloadDependencySlow", severity: "warning", perSec: true, what: "mostly answered by {dest} later than {slow}", unit: "seconds",
			summary: "waits on its slow dependency {dest}.", explainsWhileBuilding: true,
			count: func(o *event.Outcome) (uint64, uint64) { return uint64(o.Total), uint64(o.Slow) },
			test:  func(c *EvidenceConfig) HypothesesConfig { return c.Slow }},
	},
	event.Connect: {
		{alert: "VigilWorkloadDependencyUnreachable", severity: "warning", perSec: true, what: "mostly failed connects to {dest}", unit: "seconds",
			summary: "cannot reach its dependency {dest}.",
			count:   func(o *event.Outcome) (uint64, uint64) { return uint64(o.Total), uint64(o.Errors) },
			test:    func(c *EvidenceConfig) HypothesesConfig { return c.Connect }},
	},
}

type evidenceKey struct {
	wl    workload.Identity
	dest  string
	alert string
}

// cusum is one key's test state.
type cusum struct {
	chk *check
	// s is the statistic; since is when it last left zero and n, bad the
	// observations (requests or seconds) and bad ones since then.
	s      float64
	since  time.Time
	n, bad uint64
	// requests and badRequests are the outcomes behind n and bad.
	requests, badRequests uint64
	// The open second of a per-second test.
	binStart       time.Time
	binN, binBad   uint64
	seen, lastBad  time.Time
	fired          time.Time // when its alert last fired or repeated
	lastHang, slow time.Duration
}

type evidenceAlert struct {
	alert Alert
	last  time.Time
}

// detector runs the tests and raises their alerts on the stream.
type detector struct {
	stream *Stream
	// publish delivers an alert (the engine's publisher); nil: the stream.
	publish func(Alert)
	// firing returns the rule files' firing alerts (the engine's
	// publisher); nil: none. Called with mu held.
	firing func() []Alert

	mu     sync.Mutex
	cfg    EvidenceConfig
	tests  map[string]test // by check alert name
	keys   map[evidenceKey]*cusum
	active map[string]*evidenceAlert

	observations *prometheus.CounterVec
	fired        *prometheus.CounterVec
	dropped      prometheus.Counter
	tracked      prometheus.GaugeFunc
	missed       prometheus.CounterFunc
	sub          *event.Subscription
	subMu        sync.Mutex
}

func newDetector(cfg EvidenceConfig, s *Stream, reg prometheus.Registerer) *detector {
	d := &detector{stream: s, keys: map[evidenceKey]*cusum{}, active: map[string]*evidenceAlert{},
		observations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_evidence_observations_total",
			Help: "Observations the evidence detector tested, by alert and outcome (good, bad); per-second tests count seconds.",
		}, []string{"alertname", "outcome"}),
		fired: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_evidence_alerts_total",
			Help: "Times the evidence of a test reached its threshold, by alert and outcome (alert: a new alert fired, repeat: the alert was already firing, explained: held because a dependency of the workload is failing).",
		}, []string{"alertname", "outcome"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_rules_evidence_keys_dropped_total",
			Help: "Outcomes not tested because rules.evidence.max_keys workload, signal and destination states were already kept.",
		}),
	}
	d.setConfig(cfg)
	d.tracked = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_rules_evidence_keys",
		Help: "Workload, signal and destination states the evidence detector keeps.",
	}, func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		return float64(len(d.keys))
	})
	d.missed = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_rules_evidence_batches_missed_total",
		Help: "Outcome batches the evidence detector missed because its event buffer was full.",
	}, func() float64 {
		d.subMu.Lock()
		defer d.subMu.Unlock()
		if d.sub == nil {
			return 0
		}
		return float64(d.sub.Dropped())
	})
	reg.MustRegister(d.observations, d.fired, d.dropped, d.tracked, d.missed)
	return d
}

func (d *detector) setConfig(cfg EvidenceConfig) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.cfg = cfg
	d.tests = map[string]test{}
	for _, cs := range checks {
		for _, c := range cs {
			d.tests[c.alert] = newTest(c.test(&cfg))
		}
	}
	if !cfg.Enabled {
		clear(d.keys)
	}
}

// run consumes sub until ctx ends, resolving alerts as their evidence
// goes stale.
func (d *detector) run(ctx context.Context, sub *event.Subscription) {
	d.subMu.Lock()
	d.sub = sub
	d.subMu.Unlock()
	consume(ctx, sub, func(ev event.Event) {
		if ev.Kind == event.Outcomes {
			d.observe(ev)
		}
	}, d.expire)
}

// observe tests one batch of outcomes.
func (d *detector) observe(ev event.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.cfg.Enabled {
		return
	}
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	// Outbound outcomes first: a server-side alert asks whether its
	// workload's dependencies are failing (explained).
	for pass := range 2 {
		for i := range ev.Outcomes {
			if o := &ev.Outcomes[i]; (o.Signal == event.ServerHTTP) == (pass == 1) {
				d.observeOutcome(o, at, ev.HangAfter, ev.SlowAfter)
			}
		}
	}
}

// observeOutcome adds one outcome to the tests of its signal.
func (d *detector) observeOutcome(o *event.Outcome, at time.Time, hangAfter, slowAfter time.Duration) {
	for j := range checks[o.Signal] {
		chk := &checks[o.Signal][j]
		n, bad := chk.count(o)
		if n == 0 {
			continue
		}
		k := evidenceKey{wl: o.Workload, dest: o.Destination, alert: chk.alert}
		c, ok := d.keys[k]
		if !ok {
			if len(d.keys) >= d.cfg.MaxKeys {
				d.dropped.Inc()
				continue
			}
			c = &cusum{chk: chk}
			d.keys[k] = c
		}
		c.seen, c.lastHang, c.slow = at, hangAfter, slowAfter
		if bad > 0 {
			c.lastBad = at
		}
		if !chk.perSec {
			d.step(k, c, at, n, bad, n, bad)
			continue
		}
		if c.binStart.IsZero() {
			c.binStart = at
		}
		if at.Sub(c.binStart) >= time.Second && c.binN > 0 {
			var b uint64
			if 2*c.binBad > c.binN {
				b = 1
			}
			d.step(k, c, at, 1, b, c.binN, c.binBad)
			c.binStart, c.binN, c.binBad = at, 0, 0
		}
		c.binN += n
		c.binBad += bad
	}
}

// step adds n observations, bad of them bad (requests and badReq the
// outcomes behind them), to c's statistic and fires when it reaches the
// threshold.
func (d *detector) step(k evidenceKey, c *cusum, at time.Time, n, bad, requests, badReq uint64) {
	t := d.tests[k.alert]
	d.observations.WithLabelValues(k.alert, "good").Add(float64(n - bad))
	d.observations.WithLabelValues(k.alert, "bad").Add(float64(bad))
	s := c.s + float64(bad)*t.bad + float64(n-bad)*t.good
	if s <= 0 {
		c.s, c.n, c.bad, c.requests, c.badRequests = 0, 0, 0, 0, 0
		return
	}
	if c.s == 0 {
		c.since = at
	}
	c.s = s
	c.n += n
	c.bad += bad
	c.requests += requests
	c.badRequests += badReq
	if c.s < d.cfg.Threshold {
		return
	}
	if dep := d.explained(k, c.chk, at); dep != "" {
		c.s, c.n, c.bad, c.requests, c.badRequests = 0, 0, 0, 0, 0
		d.fired.WithLabelValues(k.alert, "explained").Inc()
		return
	}
	a := d.alertFor(k, c, t, at)
	c.s, c.n, c.bad, c.requests, c.badRequests = 0, 0, 0, 0, 0
	c.fired = at
	if ae, ok := d.active[a.Fingerprint]; ok {
		ae.last = at
		d.fired.WithLabelValues(k.alert, "repeat").Inc()
		return
	}
	d.active[a.Fingerprint] = &evidenceAlert{alert: a, last: at}
	d.fired.WithLabelValues(k.alert, "alert").Inc()
	d.deliver(a)
}

// explainedWindow is how recent a dependency's failures must be to
// explain a workload's own errors or latency.
const explainedWindow = 5 * time.Second

// explained returns the destination of a dependency of k's workload that
// failed (a failed connect, a 5xx or slow answer, as chk's explainedBy
// alerts count them) in the last explainedWindow (for slow answers, while
// the dependency's own evidence builds: explainsWhileBuilding), or the name of one of
// chk's explainedBy alerts the rule files fire for k's workload (the
// dependency-by-protocol alerts), if k's alert is one a failing
// dependency explains ("" if none).
func (d *detector) explained(k evidenceKey, chk *check, at time.Time) string {
	if len(chk.explainedBy) == 0 {
		return ""
	}
	for ok, c := range d.keys {
		if !sameWorkload(ok.wl, k.wl) || ok.dest == "" || c.lastBad.IsZero() || at.Sub(c.lastBad) > explainedWindow || !slices.Contains(chk.explainedBy, ok.alert) {
			continue
		}
		if c.chk.explainsWhileBuilding && !c.building(at) {
			continue
		}
		return ok.dest
	}
	if d.firing == nil {
		return ""
	}
	for _, a := range d.firing() {
		if name := a.Labels["alertname"]; slices.Contains(chk.explainedBy, name) && alertAbout(a.Labels, k.wl) {
			return name
		}
	}
	return ""
}

// building reports whether c's evidence is building at at: its statistic
// above zero, its open second mostly bad (a per-second test steps a
// second only once the next begins), or its alert fired or repeated in
// the last explainedWindow.
func (c *cusum) building(at time.Time) bool {
	return c.s > 0 || c.chk.perSec && c.binN > 0 && 2*c.binBad > c.binN ||
		!c.fired.IsZero() && at.Sub(c.fired) <= explainedWindow
}

// alertAbout reports whether an alert's workload labels (those the rule
// files' workload alerts keep: namespace, pod, container, unit) are id's,
// as sameWorkload compares identities.
func alertAbout(l map[string]string, id workload.Identity) bool {
	return l["namespace"] == id.Namespace && l["pod"] == id.Pod && l["container"] == id.Container && l["unit"] == id.SystemdUnit
}

// sameWorkload compares identities by the labels an alert carries: the
// TCP and HTTP readers resolve a cgroup each on their own, and may know
// more or less of it (a container ID) at a given moment.
func sameWorkload(a, b workload.Identity) bool {
	return a.Namespace == b.Namespace && a.Pod == b.Pod && a.Container == b.Container && a.SystemdUnit == b.SystemdUnit
}

// alertFor builds the alert c's evidence fires: the labels of the rule
// files' alert of the same name (workload labels, destination), and
// annotations that say what evidence fired it.
func (d *detector) alertFor(k evidenceKey, c *cusum, t test, at time.Time) Alert {
	id := k.wl
	labels := map[string]string{"alertname": k.alert, "severity": c.chk.severity}
	for name, v := range map[string]string{"namespace": id.Namespace, "pod": id.Pod, "container": id.Container, "unit": id.SystemdUnit, "destination": k.dest} {
		if v != "" {
			labels[name] = v
		}
	}
	r := strings.NewReplacer("{dest}", k.dest, "{hang}", c.lastHang.String(), "{slow}", c.slow.String())
	who := "Unit " + id.SystemdUnit
	if id.Pod != "" {
		who = "Pod " + id.Namespace + "/" + id.Pod
	}
	ratio := float64(c.bad) / float64(c.n)
	ann := map[string]string{
		"summary": who + " " + r.Replace(c.chk.summary),
		"description": fmt.Sprintf("%d of %d %s since %s were %s (%.0f%%): a CUSUM log-likelihood ratio of %.1f reached the threshold %v, testing a rate of %v against a healthy %v.",
			c.bad, c.n, c.chk.unit, c.since.UTC().Format(time.RFC3339Nano), r.Replace(c.chk.what), 100*ratio, c.s, d.cfg.Threshold, t.Fault, t.Baseline),
		"evidence_method":       "cusum per " + strings.TrimSuffix(c.chk.unit, "s"),
		"evidence_observations": strconv.FormatUint(c.n, 10),
		"evidence_bad":          strconv.FormatUint(c.bad, 10),
		"evidence_requests":     strconv.FormatUint(c.requests, 10),
		"evidence_bad_requests": strconv.FormatUint(c.badRequests, 10),
		"evidence_ratio":        strconv.FormatFloat(ratio, 'f', 3, 64),
		"evidence_baseline":     strconv.FormatFloat(t.Baseline, 'g', -1, 64),
		"evidence_fault":        strconv.FormatFloat(t.Fault, 'g', -1, 64),
		"evidence_llr":          strconv.FormatFloat(c.s, 'f', 2, 64),
		"evidence_threshold":    strconv.FormatFloat(d.cfg.Threshold, 'g', -1, 64),
		"evidence_since":        c.since.UTC().Format(time.RFC3339Nano),
	}
	if s := d.siblings(k); s != "" {
		ann["evidence_siblings"] = s
	}
	if id.ContainerID != "" {
		ann["container_id"] = id.ContainerID
	}
	return Alert{Labels: labels, Annotations: ann, State: StateFiring, Source: SourceEvidence, StartsAt: at,
		GeneratorURL: "vigil://evidence/" + k.alert, Fingerprint: Fingerprint(labels)}
}

// siblings describes the same test for the other replicas of k's
// workload on this node (same namespace and owner): how many of their
// observations since their statistic last left zero were bad. A fault of
// one replica shows against siblings that are fine; a fault of them all
// (a shared dependency, the node) shows in every one.
func (d *detector) siblings(k evidenceKey) string {
	if k.wl.OwnerName == "" || k.wl.Pod == "" {
		return ""
	}
	var out []string
	for ok, c := range d.keys {
		if ok.alert != k.alert || ok.dest != k.dest || ok.wl.Pod == k.wl.Pod ||
			ok.wl.Namespace != k.wl.Namespace || ok.wl.OwnerKind != k.wl.OwnerKind || ok.wl.OwnerName != k.wl.OwnerName {
			continue
		}
		out = append(out, fmt.Sprintf("%s %d/%d %s bad", ok.wl.Pod, c.bad, c.n, c.chk.unit))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// expire resolves alerts whose evidence last reached the threshold
// ResolveAfter ago and forgets keys not seen for ten minutes.
func (d *detector) expire(now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for fp, ae := range d.active {
		if now.Sub(ae.last) < d.cfg.ResolveAfter {
			continue
		}
		delete(d.active, fp)
		r := ae.alert
		r.State = StateResolved
		r.EndsAt = now
		d.deliver(r)
	}
	for k, c := range d.keys {
		if now.Sub(c.seen) > 10*time.Minute {
			delete(d.keys, k)
		}
	}
}

func (d *detector) deliver(a Alert) {
	if d.publish != nil {
		d.publish(a)
		return
	}
	d.stream.Publish(a)
}

// activeAlerts returns the firing evidence alerts.
func (d *detector) activeAlerts() []Alert {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Alert, 0, len(d.active))
	for _, ae := range d.active {
		out = append(out, ae.alert)
	}
	return out
}
