package healing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"

	"github.com/vigil-agent/vigil/internal/kubeclient"
	"github.com/vigil-agent/vigil/rules"
)

// Options are what the engine gets from its host.
type Options struct {
	Logger   *slog.Logger
	NodeName string
	// Registerer receives the engine's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Alerts is the stream the engine subscribes to.
	Alerts *rules.Stream
	// Traces receives one span per decision (nil: none).
	Traces consumer.Traces
	// Kube overrides the client built from healing.kubernetes (tests use
	// it to act as a given ServiceAccount).
	Kube *kubeclient.Client
	// Systemd overrides how systemd is reached.
	Systemd func(ctx context.Context) (*sdbus.Conn, error)
	// HTTP is the webhook client (default: 10 s timeout).
	HTTP *http.Client
	// PodNamespaces limits the readiness-gate opener's watch of this
	// node's pods to these namespaces (empty: all), for RBAC granted per
	// namespace.
	PodNamespaces []string
}

// Engine is the healing engine.
type Engine struct {
	logger *slog.Logger
	env    *Env
	m      *metrics
	audit  *auditor
	guards []Guard
	alerts *rules.Stream

	cfg  atomic.Pointer[Config]
	tree atomic.Pointer[Tree]

	paused atomic.Bool
	// handled counts alerts Handle has finished dispatching.
	handled atomic.Uint64

	mu        sync.Mutex
	incidents map[string]*incident
	// quiet holds, per policy and alert, until when a repeat of an alert
	// whose runbook did not act is not decided again.
	quiet     map[string]time.Time
	approvals map[uint64]chan bool
	// deps are the firing dependency alerts by fingerprint.
	deps map[string]rules.Alert
	// enriching holds the fingerprints of firing alerts whose enrichment
	// is under way; true once the alert resolved meanwhile.
	enriching map[string]bool
	// restores are the scale-ups to undo once their alerts stay resolved.
	restores map[Target]*restoreState

	enr *enricher
	// gates opens the readiness gate of this node's new pods (nil without
	// Kubernetes or a node name).
	gates *gateOpener
	// again holds, per policy and alert, the timer that decides a still
	// firing alert again after a guard that may clear vetoed it.
	again map[string]*time.Timer

	sub     *rules.Subscription
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	started bool
}

type incident struct {
	id       string
	key      string
	alert    rules.Alert
	policy   *Policy
	resolved chan struct{}
	once     sync.Once
	// restore marks the incident that scales a workload back
	// (restore_after); its records' reasons start with "restore: ".
	restore bool
}

func (i *incident) resolve() { i.once.Do(func() { close(i.resolved) }) }

func (i *incident) isResolved() bool {
	select {
	case <-i.resolved:
		return true
	default:
		return false
	}
}

// New builds an engine from a validated configuration; nothing runs until
// Start.
func New(cfg *Config, opts Options) (*Engine, error) {
	tree, err := cfg.LoadPolicies()
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	kube, watchKube := opts.Kube, opts.Kube
	if kube == nil {
		var rc *rest.Config
		kube, rc, err = NewKubeClient(cfg.Kubernetes)
		if err != nil {
			return nil, err
		}
		if rc != nil {
			// A watch lasts minutes: the request timeout (an
			// http.Client timeout, which covers reading the body) would
			// cut it every request_timeout.
			wc := rest.CopyConfig(rc)
			wc.Timeout = 0
			if watchKube, err = kubeclient.New(wc); err != nil {
				return nil, fmt.Errorf("kubernetes: %w", err)
			}
		}
	}
	identity := cfg.Identity
	if identity == "" {
		identity = opts.NodeName
	}
	if identity == "" {
		identity, _ = os.Hostname()
	}
	httpc := opts.HTTP
	if httpc == nil {
		httpc = &http.Client{Timeout: 10 * time.Second}
	}
	sd := opts.Systemd
	if sd == nil {
		sd = systemdDialer(cfg.Systemd.Address, cfg.Systemd.Direct)
	}
	env := &Env{
		Kube: kube, NodeName: opts.NodeName, Identity: identity, Systemd: sd, HTTP: httpc,
		Retry:              RetryPolicy{Steps: cfg.Kubernetes.Retries + 1, Base: 200 * time.Millisecond},
		Logger:             opts.Logger,
		ReadinessCondition: cfg.Kubernetes.ReadinessCondition,
	}
	e := &Engine{
		logger:    opts.Logger,
		env:       env,
		m:         newMetrics(),
		guards:    Guards,
		alerts:    opts.Alerts,
		incidents: map[string]*incident{},
		quiet:     map[string]time.Time{},
		approvals: map[uint64]chan bool{},
		deps:      map[string]rules.Alert{},
		enriching: map[string]bool{},
		restores:  map[Target]*restoreState{},
		again:     map[string]*time.Timer{},
	}
	if kube != nil {
		e.enr = newEnricher(env, cfg.Kubernetes.EnrichCacheTTL, opts.Logger, e.m.enrichments)
	}
	if watchKube != nil && opts.NodeName != "" && cfg.Kubernetes.OpenReadinessGates {
		e.gates = &gateOpener{kube: watchKube, node: opts.NodeName, cond: corev1.PodConditionType(cfg.Kubernetes.ReadinessCondition),
			identity: identity, namespaces: opts.PodNamespaces, logger: opts.Logger.With("part", "readiness_gates"),
			opened: e.m.gatesOpened, errors: e.m.gateErrors}
	}
	history := NewHistory(cfg.History)
	e.audit = &auditor{logger: opts.Logger, m: e.m, history: history, traces: opts.Traces, env: env}
	if opts.Registerer != nil {
		if err := e.m.register(opts.Registerer); err != nil {
			return nil, err
		}
	}
	e.cfg.Store(cfg)
	e.tree.Store(tree)
	return e, nil
}

// History returns the engine's record history.
func (e *Engine) History() *History { return e.audit.history }

// Start subscribes to the alert stream and handles alerts until Shutdown.
func (e *Engine) Start(ctx context.Context) error {
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.started = true
	cfg := e.cfg.Load()
	e.logger.Info("healing engine started", "policies", len(e.tree.Load().Policies), "dry_run", cfg.DryRun,
		"kubernetes", e.env.Kube != nil, "identity", e.env.Identity, "opens_readiness_gates", e.gates != nil)
	if e.gates != nil {
		e.wg.Add(1)
		go func() { defer e.wg.Done(); e.gates.run(e.ctx) }()
	}
	if e.alerts == nil {
		return nil
	}
	e.sub = e.alerts.Subscribe(1024)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for a := range e.sub.C() {
			e.Handle(a)
		}
	}()
	return nil
}

// Shutdown stops taking alerts, cancels running runbooks (an action in
// flight gets its context cancelled) and waits for them.
func (e *Engine) Shutdown(ctx context.Context) error {
	if !e.started {
		return nil
	}
	if e.sub != nil {
		e.sub.Close()
	}
	// Under e.mu, so no re-decision starts once Shutdown waits.
	e.mu.Lock()
	e.cancel()
	for key, t := range e.again {
		t.Stop()
		delete(e.again, key)
	}
	e.mu.Unlock()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ApplyConfig swaps in new policies and guard settings. The Kubernetes and
// systemd connection settings take effect at the next restart.
func (e *Engine) ApplyConfig(_ context.Context, cfg *Config) error {
	tree, err := cfg.LoadPolicies()
	if err != nil {
		return err
	}
	if old := e.cfg.Load(); old.Kubernetes != cfg.Kubernetes || old.Systemd != cfg.Systemd || old.Identity != cfg.Identity {
		e.logger.Warn("healing.kubernetes, healing.systemd and healing.identity take effect at the next restart")
	}
	e.cfg.Store(cfg)
	e.tree.Store(tree)
	e.logger.Info("healing policies reloaded", "policies", len(tree.Policies), "dry_run", cfg.DryRun)
	return nil
}

// Pause stops every action until Resume; decisions are still recorded,
// vetoed by the maintenance guard.
func (e *Engine) Pause() { e.paused.Store(true); e.m.paused.Set(1) }

// Resume undoes Pause.
func (e *Engine) Resume() { e.paused.Store(false); e.m.paused.Set(0) }

// Paused reports whether the engine is paused.
func (e *Engine) Paused() bool { return e.paused.Load() }

// Approve answers a pending action: ok approves it, !ok denies it. It
// reports whether an action with that record ID was waiting.
func (e *Engine) Approve(id uint64, ok bool) bool {
	e.mu.Lock()
	ch, found := e.approvals[id]
	delete(e.approvals, id)
	e.mu.Unlock()
	if found {
		ch <- ok
	}
	return found
}

func fingerprint(a rules.Alert) string {
	if a.Fingerprint != "" {
		return a.Fingerprint
	}
	keys := make([]string, 0, len(a.Labels))
	for k := range a.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%s\x00", k, a.Labels[k])
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Handle takes one alert: a resolved alert ends the verify wait of its
// runbooks; a firing one starts a runbook for each matching policy that is
// not already running for it. A firing alert that needs Kubernetes labels
// (owner, dependency) is enriched in the background, so Handle never
// waits for the API server.
func (e *Engine) Handle(a rules.Alert) {
	e.m.alerts.Inc()
	fp := fingerprint(a)
	if a.State == rules.StateResolved {
		defer e.handled.Add(1)
		e.mu.Lock()
		for _, inc := range e.incidents {
			if inc.alert.Fingerprint == fp {
				inc.resolve()
			}
		}
		for key := range e.quiet {
			if strings.HasSuffix(key, "\x00"+fp) {
				delete(e.quiet, key)
			}
		}
		for key, t := range e.again {
			if strings.HasSuffix(key, "\x00"+fp) {
				t.Stop()
				delete(e.again, key)
			}
		}
		delete(e.deps, fp)
		if _, ok := e.enriching[fp]; ok {
			e.enriching[fp] = true
		}
		e.restoreResolvedLocked(fp)
		e.mu.Unlock()
		return
	}
	if e.ctx == nil || e.ctx.Err() != nil {
		e.handled.Add(1)
		return
	}
	a.Fingerprint = fp
	if e.enr == nil || !needsEnrichment(a.Labels) {
		e.dispatch(a)
		e.handled.Add(1)
		return
	}
	e.mu.Lock()
	if _, busy := e.enriching[fp]; busy {
		// A repeat while its first notification is being enriched.
		e.mu.Unlock()
		e.handled.Add(1)
		return
	}
	e.enriching[fp] = false
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		defer e.handled.Add(1)
		a := e.enrichAlert(a)
		e.mu.Lock()
		resolved := e.enriching[fp]
		delete(e.enriching, fp)
		e.mu.Unlock()
		if !resolved && e.ctx.Err() == nil {
			e.dispatch(a)
		}
	}()
}

// dispatch records a firing dependency alert and starts the runbooks of
// the policies a firing alert matches.
func (e *Engine) dispatch(a rules.Alert) {
	fp := a.Fingerprint
	e.mu.Lock()
	if dependencyAlert(a) {
		e.deps[fp] = a
	}
	e.restoreFiringLocked(fp)
	e.mu.Unlock()
	for _, p := range e.tree.Load().Match(a.Labels) {
		e.start(p, a)
	}
}

// start starts the runbook of policy p for the firing alert a, unless one
// is running for them or a's repeat is quiet.
func (e *Engine) start(p *Policy, a rules.Alert) {
	key := p.Name + "\x00" + a.Fingerprint
	e.mu.Lock()
	if _, running := e.incidents[key]; running {
		e.mu.Unlock()
		return
	}
	if until, ok := e.quiet[key]; ok {
		if time.Now().Before(until) {
			e.mu.Unlock()
			return
		}
		delete(e.quiet, key)
	}
	if t, ok := e.again[key]; ok {
		t.Stop()
		delete(e.again, key)
	}
	inc := &incident{id: newIncidentID(), key: key, alert: a, policy: p, resolved: make(chan struct{})}
	e.incidents[key] = inc
	e.wg.Add(1)
	e.mu.Unlock()
	go func() {
		defer e.wg.Done()
		defer func() {
			last := e.tried(inc.id)
			e.mu.Lock()
			defer e.mu.Unlock()
			delete(e.incidents, key)
			ri := e.cfg.Load().RepeatInterval
			if ri <= 0 || len(last) == 0 {
				return
			}
			switch last[len(last)-1].Result {
			case ResultVetoed, ResultDryRun, ResultShadow, ResultSkipped:
				e.quiet[key] = time.Now().Add(ri)
			}
			if mayClear(last, p) && !inc.isResolved() && e.ctx.Err() == nil {
				e.decideAgainLocked(key, p.Name, inc.alert, ri)
			}
		}()
		e.runbook(e.ctx, inc)
	}()
}

// mayClear reports whether a runbook that ended with records recs is to
// be decided again while its alert fires: it took no action (none that
// policy p's guards count: a shadow policy's would-be actions count for
// it) and ended on a step vetoed by a guard that may clear.
func mayClear(recs []Record, p *Policy) bool {
	for i := range recs {
		if recs[i].takenFor(p) {
			return false
		}
	}
	end := recs[len(recs)-1]
	return end.Result == ResultVetoed && end.Step >= 0 && clearingGuards[end.Guard]
}

// clearingGuards are the guards whose veto may clear while the alert
// keeps firing (time passes, a rollout ends, maintenance is over, other
// replicas become Ready, the dependency recovers). A runbook they stopped
// is decided again every repeat_interval while its alert fires: the alert
// stream delivers a firing alert once, not at every repeat of its source.
// The others do not clear by themselves: the policy's bounds, dry-run,
// shadow, and an approval a person denied or let time out.
var clearingGuards = map[string]bool{
	GuardMaintenance: true, GuardRollout: true, GuardBlastRadius: true, GuardDependency: true,
	GuardCooldown: true, GuardRateLimit: true, GuardNodeRateLimit: true,
}

// decideAgainLocked decides the firing alert a again for policy (key is
// theirs) after d, unless it resolves, a new runbook starts for it or the
// engine shuts down first. e.mu is held.
func (e *Engine) decideAgainLocked(key, policy string, a rules.Alert, d time.Duration) {
	if old, ok := e.again[key]; ok {
		old.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		e.mu.Lock()
		if e.again[key] != t || e.ctx.Err() != nil {
			e.mu.Unlock()
			return
		}
		delete(e.again, key)
		delete(e.quiet, key)
		e.wg.Add(1)
		e.mu.Unlock()
		defer e.wg.Done()
		// The policy as the configuration in force has it, if it still
		// matches the alert.
		for _, p := range e.tree.Load().Match(a.Labels) {
			if p.Name == policy {
				e.start(p, a)
			}
		}
	})
	e.again[key] = t
}

type outcome int

const (
	outcomeDone    outcome = iota // stop: resolved, vetoed, skipped, dry-run, shadow, or unverified success
	outcomeNext                   // failed or unresolved: the next step runs
	outcomeBreaker                // the circuit breaker is open: escalate
)

// escalationGuards are the guards an escalation passes: it notifies, so
// only the maintenance switch, a shadow policy and dry-run hold it back,
// besides the policy's bounds on what labels may choose.
var escalationGuards = []string{GuardAllowList, GuardArgument, GuardMaintenance, GuardShadow, GuardDryRun}

func (e *Engine) runbook(ctx context.Context, inc *incident) {
	p := inc.policy
	for _, s := range p.Steps {
		if inc.isResolved() {
			return
		}
		switch e.attempt(ctx, inc, s, e.guards, "") {
		case outcomeDone:
			return
		case outcomeBreaker:
			if p.Escalate != nil {
				e.attempt(ctx, inc, p.Escalate, e.pick(escalationGuards), "circuit breaker open")
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
	if p.Escalate != nil && !inc.isResolved() && ctx.Err() == nil {
		e.attempt(ctx, inc, p.Escalate, e.pick(escalationGuards), "every step failed")
	}
}

// boundGuards check the policy's bounds on what alert labels may choose;
// they look only at the step and its rendered arguments.
var boundGuards = map[string]bool{GuardAllowList: true, GuardArgument: true}

// splitGuards separates the bound guards, which run before the target's
// facts are read, from the rest, keeping each side's order.
func splitGuards(guards []Guard) (bounds, rest []Guard) {
	for _, g := range guards {
		if boundGuards[g.Name] {
			bounds = append(bounds, g)
		} else {
			rest = append(rest, g)
		}
	}
	return bounds, rest
}

func (e *Engine) pick(names []string) []Guard {
	var out []Guard
	for _, g := range e.guards {
		for _, n := range names {
			if g.Name == n {
				out = append(out, g)
			}
		}
	}
	return out
}

// SetGuards replaces the guard list (for tests that prove each guard is
// what stops an action).
func (e *Engine) SetGuards(g []Guard) { e.guards = g }

func (e *Engine) attempt(ctx context.Context, inc *incident, s *Step, guards []Guard, why string) outcome {
	cfg := e.cfg.Load()
	p := inc.policy
	start := time.Now()
	rec := Record{
		Incident: inc.id, Policy: p.Name, Step: s.Index, Action: s.Action.Name(),
		Alert: inc.alert.Name(), AlertLabels: inc.alert.Labels, AlertStartsAt: inc.alert.StartsAt, Fingerprint: inc.alert.Fingerprint,
		RunbookURL: p.RunbookURL, Node: e.env.NodeName, Agent: e.env.Identity,
		// Every record of a shadow policy is marked, vetoes and skips
		// too, so the audit tells them from the live policies' records.
		Shadow: p.Shadow,
	}
	if rec.RunbookURL == "" {
		rec.RunbookURL = inc.alert.Annotations["runbook_url"]
	}
	finish := func(r Result, reason string) {
		if inc.restore {
			reason = "restore: " + reason
		}
		rec.Result, rec.Reason = r, reason
		e.audit.record(ctx, rec, start)
	}
	args, err := s.Render(inc.alert.Labels)
	if err != nil {
		finish(ResultFailed, "cannot render parameters: "+err.Error())
		return outcomeNext
	}
	rec.Args = args
	t := s.Action.Target(args)
	rec.Target = t

	gin := &GuardInput{
		Now: time.Now(), Alert: inc.alert, Policy: p, Step: s, Target: t, Incident: inc.id, Args: args,
		History: e.audit.history, GlobalDryRun: cfg.DryRun, NodeRateLimit: cfg.NodeRateLimit,
	}
	veto := func(guard, reason string) outcome {
		if why != "" {
			reason += " (escalation: " + why + ")"
		}
		rec.Guard = guard
		switch guard {
		case GuardDryRun:
			rec.DryRun = true
			finish(ResultDryRun, "would "+describe(s, t)+"; "+reason)
			return outcomeDone
		case GuardShadow:
			finish(ResultShadow, "would "+describe(s, t)+"; "+reason)
			return outcomeDone
		}
		finish(ResultVetoed, reason)
		if guard == GuardCircuitBreaker {
			return outcomeBreaker
		}
		return outcomeDone
	}
	// The policy's bounds on what labels may choose need no facts: a
	// hostile target is vetoed before anything reads or locks it.
	bounds, rest := splitGuards(guards)
	if guard, reason := RunGuards(bounds, gin); guard != "" {
		return veto(guard, reason)
	}

	var facts Facts
	switch {
	case e.paused.Load():
		facts.Maintenance = "remediation is paused through the API"
	default:
		facts.Maintenance = hostMaintenance(cfg.MaintenanceFile)
	}
	if t.Kubernetes() {
		if e.env.Kube == nil {
			finish(ResultFailed, ErrNoKubernetes.Error())
			return outcomeNext
		}
		if err := e.env.gatherFacts(ctx, t, &facts); err != nil {
			finish(ResultFailed, "cannot read the target's state: "+err.Error())
			return outcomeNext
		}
		facts.Dependencies = DependenciesFor(e.firingDependencies(), t, facts.Workload, inc.alert)
	}
	if s.Action.Scope() == ScopeNode && t.Kind == "Pod" && facts.Node != e.env.NodeName {
		finish(ResultSkipped, fmt.Sprintf("pod runs on node %q; its agent acts", facts.Node))
		return outcomeDone
	}
	gin.Now, gin.Facts = time.Now(), facts
	if guard, reason := RunGuards(rest, gin); guard != "" {
		return veto(guard, reason)
	}
	if p.RequireApproval {
		if !e.approve(ctx, &rec, p.ApprovalTimeout) {
			return outcomeDone
		}
	}
	if s.Action.Scope() == ScopeCluster {
		hold := max(cfg.Kubernetes.LeaseDuration, s.Verify+p.Cooldown)
		if e.env.Kube == nil {
			finish(ResultFailed, ErrNoKubernetes.Error())
			return outcomeNext
		}
		won, holder, err := e.env.acquireLease(ctx, cfg.Kubernetes.LeaseNamespace, s.Action.Name(), t, hold)
		if err != nil {
			finish(ResultFailed, err.Error())
			return outcomeNext
		}
		if !won {
			finish(ResultSkipped, "lease "+LeaseName(s.Action.Name(), t)+" is held by "+holder)
			return outcomeDone
		}
	}
	in := Request{Args: args, Escalation: &Escalation{
		Alert: inc.alert, Policy: p.Name, RunbookURL: rec.RunbookURL, Reason: why, Tried: e.tried(inc.id), Agent: e.env.Identity,
	}}
	actStart := time.Now()
	out, err := s.Action.Act(ctx, e.env, in)
	msg := out.Message
	d := time.Since(actStart)
	e.m.duration.WithLabelValues(p.Name, s.Action.Name()).Observe(d.Seconds())
	rec.Duration = d.Seconds()
	if err != nil {
		finish(ResultFailed, err.Error())
		return outcomeNext
	}
	if why != "" {
		msg += " (escalation: " + why + ")"
	}
	finish(ResultSuccess, msg)
	// restore_after is a parameter of the actuators that offer a Restore.
	if after := args.Duration("restore_after"); after > 0 && out.Restore != nil && !out.Unchanged {
		e.noteRestore(inc, s, t, after, out.Restore)
	}
	if s.Verify <= 0 {
		return outcomeDone
	}
	return e.verify(ctx, inc, rec, s.Verify)
}

// verify waits for the alert to resolve within window.
func (e *Engine) verify(ctx context.Context, inc *incident, rec Record, window time.Duration) outcome {
	start := time.Now()
	timer := time.NewTimer(window)
	defer timer.Stop()
	rec.Duration, rec.Guard = 0, ""
	select {
	case <-inc.resolved:
		rec.Result, rec.Reason = ResultResolved, fmt.Sprintf("alert resolved %s after the action", time.Since(start).Round(time.Millisecond))
		e.audit.record(ctx, rec, start)
		return outcomeDone
	case <-timer.C:
		rec.Result, rec.Reason = ResultUnresolved, fmt.Sprintf("alert still firing %s after the action", window)
		e.audit.record(ctx, rec, start)
		return outcomeNext
	case <-ctx.Done():
		return outcomeDone
	}
}

func (e *Engine) approve(ctx context.Context, rec *Record, timeout time.Duration) bool {
	pending := *rec
	pending.Result, pending.Reason = ResultPending, fmt.Sprintf("waiting up to %s for POST /api/v1/actions/{id}/approve", timeout)
	ch := make(chan bool, 1)
	pending = e.audit.recordWith(ctx, pending, time.Time{}, func(r Record) {
		e.mu.Lock()
		e.approvals[r.ID] = ch
		e.mu.Unlock()
	})
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var ok bool
	reason := ""
	select {
	case ok = <-ch:
		if !ok {
			reason = fmt.Sprintf("denied through the API (record %d)", pending.ID)
		}
	case <-timer.C:
		reason = fmt.Sprintf("not approved within %s (record %d)", timeout, pending.ID)
	case <-ctx.Done():
		reason = "agent shutting down"
	}
	e.mu.Lock()
	delete(e.approvals, pending.ID)
	e.mu.Unlock()
	if !ok {
		rec.Guard, rec.Result, rec.Reason = "approval", ResultVetoed, reason
		e.audit.record(ctx, *rec, time.Time{})
	}
	return ok
}

// tried returns the records of an incident so far.
func (e *Engine) tried(incident string) []Record {
	var out []Record
	e.audit.history.Each(func(r *Record) bool {
		if r.Incident == incident {
			out = append(out, *r)
		}
		return true
	})
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

func describe(s *Step, t Target) string { return s.Action.Name() + " " + t.String() }

// Escalation is what a webhook receives: the alert, the policy and every
// record of the runbook so far.
type Escalation struct {
	Alert      rules.Alert `json:"alert"`
	Policy     string      `json:"policy"`
	RunbookURL string      `json:"runbook_url,omitempty"`
	Reason     string      `json:"reason,omitempty"`
	Tried      []Record    `json:"tried"`
	Agent      string      `json:"agent"`
}
