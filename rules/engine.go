package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promrules "github.com/prometheus/prometheus/rules"
	"github.com/prometheus/prometheus/util/strutil"

	"github.com/vigil-agent/vigil/internal/event"
)

// Options are what the engine gets from the agent.
type Options struct {
	Logger *slog.Logger
	// Registerer receives the engine's metrics (rule evaluation, TSDB,
	// webhook, event alerts).
	Registerer prometheus.Registerer
	// Gatherer is what the local TSDB ingests every evaluation interval.
	Gatherer prometheus.Gatherer
	// Events are the fast-path events turned into alerts.
	Events *event.Bus
	// Alerts is the stream every alert is published on.
	Alerts *Stream
	// Handle registers HTTP handlers on the agent's server; may be nil.
	Handle func(pattern string, h http.Handler)
	// HandleOwnAuth registers the Alertmanager webhook, which checks its
	// own token (the API token does not apply); nil means Handle.
	HandleOwnAuth func(pattern string, h http.Handler)
}

// Engine is the rules engine: it ingests the agent's metrics into the local
// TSDB, evaluates rule files with Prometheus's rule manager and PromQL
// engine, receives Alertmanager's webhook, turns fast-path events into
// alerts, and publishes every alert on the stream.
type Engine struct {
	opts   Options
	logger *slog.Logger
	cfg    atomic.Pointer[Config]
	// files are the rule files rule_files expanded to when the
	// configuration was built or applied (under mu after Start).
	files []string

	storage *LocalStorage
	engine  *promql.Engine
	// queryEngine serves /api/v1/query with its own bounds (max samples,
	// timeout) and active query tracker (concurrency), apart from the
	// rules' engine.
	queryEngine  *promql.Engine
	queryRefused *prometheus.CounterVec
	manager      *promrules.Manager
	remote       atomic.Pointer[remoteSet]
	// remoteQueries counts remote queries by endpoint and result.
	remoteQueries *prometheus.CounterVec
	// noInput answers the rule queries whose metric names have no
	// series with an empty vector, without the engine (noinput.go).
	noInput        noInputCache
	noInputQueries prometheus.Counter
	pub            *publisher
	webhook        *webhook
	events         *eventAlerter
	evidence       *detector

	mu      sync.Mutex // guards the fields below and ApplyConfig
	started bool
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mgrDone chan struct{}
}

// NewEngine builds the engine from a validated configuration. Nothing runs
// until Start.
func NewEngine(cfg *Config, o Options) (*Engine, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Alerts == nil {
		o.Alerts = NewStream()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	files, err := ExpandRuleFiles(cfg.RuleFiles)
	if err != nil {
		return nil, fmt.Errorf("rule_files: %w", err)
	}
	e := &Engine{opts: o, logger: o.Logger, files: files}
	e.cfg.Store(cfg)
	st, err := NewLocalStorage(StorageOptions{
		Dir: cfg.StorageDir, Retention: cfg.Retention, MaxSeries: cfg.MaxSeries,
		Logger: o.Logger.With("part", "tsdb"), Registerer: o.Registerer,
	})
	if err != nil {
		return nil, err
	}
	e.storage = st
	e.engine = promql.NewEngine(promql.EngineOpts{
		Logger:               o.Logger.With("part", "promql"),
		Reg:                  prometheus.WrapRegistererWith(prometheus.Labels{"engine": "rules"}, o.Registerer),
		MaxSamples:           50_000_000,
		Timeout:              2 * time.Minute,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               Parser,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return e.cfg.Load().EvaluationInterval.Milliseconds()
		},
	})
	if err := e.newQueryEngine(cfg.QueryAPI); err != nil {
		st.Close()
		return nil, err
	}
	e.remoteQueries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rules_remote_queries_total",
		Help: "Queries rule groups sent to remote query endpoints, by endpoint and result (success, error).",
	}, []string{"endpoint", "result"})
	e.noInputQueries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vigil_rules_queries_without_input_total",
		Help: "Rule queries answered with an empty result without running PromQL's engine, because none of the metric names they read has a series in the local TSDB.",
	})
	o.Registerer.MustRegister(e.remoteQueries, e.noInputQueries)
	rs, err := newRemoteSet(cfg.RemoteQueries, e.remoteQueries)
	if err != nil {
		st.Close()
		return nil, err
	}
	e.remote.Store(rs)
	e.pub = newPublisher(o.Alerts, o.Registerer)
	if cfg.AlertmanagerWebhook.MaxAlerts > 0 {
		e.pub.setMaxWebhook(cfg.AlertmanagerWebhook.MaxAlerts)
	}
	e.manager = promrules.NewManager(&promrules.ManagerOptions{
		ExternalURL:  externalURL(cfg),
		QueryFunc:    e.query,
		NotifyFunc:   e.notify,
		Context:      context.Background(),
		AppendableV2: st,
		Queryable:    st,
		Logger:       o.Logger.With("part", "manager"),
		Registerer:   o.Registerer,
		// Vigil restarts lose the local TSDB, so `for` state restores only
		// within a run; a 10m grace keeps alerts from flapping after one.
		OutageTolerance: time.Hour,
		ForGracePeriod:  10 * time.Minute,
		ResendDelay:     time.Minute,
		GroupLoader:     groupLoader{},
		Parser:          Parser,
	})
	if e.webhook, err = newWebhook(cfg.AlertmanagerWebhook, e.pub, o.Registerer, o.Logger.With("part", "webhook")); err != nil {
		st.Close()
		return nil, err
	}
	e.events = newEventAlerter(cfg.EventAlerts, o.Alerts, o.Registerer)
	e.evidence = newDetector(cfg.Evidence, o.Alerts, o.Registerer)
	e.evidence.publish = e.publishEvidence
	e.evidence.firing = func() []Alert { return e.pub.firing(SourceRule) }
	if o.Handle != nil {
		ownAuth := o.HandleOwnAuth
		if ownAuth == nil {
			ownAuth = o.Handle
		}
		ownAuth("POST "+WebhookPath, e.webhook)
		o.Handle("GET /api/v1/rules", http.HandlerFunc(e.serveRules))
		o.Handle("GET /api/v1/alerts", http.HandlerFunc(e.serveAlerts))
		o.Handle("GET /api/v1/query", http.HandlerFunc(e.serveQuery))
		o.Handle("POST /api/v1/query", http.HandlerFunc(e.serveQuery))
	}
	return e, nil
}

// newQueryEngine builds the query API's engine: Prometheus's engine
// options bound the samples a query may load and its run time, and the
// active query tracker (queries.active beside the TSDB, as in Prometheus's
// data directory) bounds how many run at once and logs, after a crash,
// the queries that were running.
func (e *Engine) newQueryEngine(q QueryAPIConfig) error {
	def := NewConfig().QueryAPI
	if q.MaxSamples <= 0 {
		q.MaxSamples = def.MaxSamples
	}
	if q.Timeout <= 0 {
		q.Timeout = def.Timeout
	}
	if q.MaxConcurrency <= 0 {
		q.MaxConcurrency = def.MaxConcurrency
	}
	logger := e.logger.With("part", "query_api")
	tr, err := promql.NewActiveQueryTracker(filepath.Join(e.storage.dir, "query_api"), q.MaxConcurrency, logger)
	if err != nil {
		return fmt.Errorf("query_api: %w", err)
	}
	e.queryRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_rules_query_api_refused_total",
		Help: "Queries of /api/v1/query stopped by a bound of rules.query_api, by bound: max_samples (422), timeout (503: out of time running or waiting for one of max_concurrency slots).",
	}, []string{"reason"})
	for _, r := range []string{"max_samples", "timeout"} {
		e.queryRefused.WithLabelValues(r)
	}
	e.opts.Registerer.MustRegister(e.queryRefused)
	e.queryEngine = promql.NewEngine(promql.EngineOpts{
		Logger:               logger,
		Reg:                  prometheus.WrapRegistererWith(prometheus.Labels{"engine": "query_api"}, e.opts.Registerer),
		MaxSamples:           q.MaxSamples,
		Timeout:              q.Timeout,
		ActiveQueryTracker:   tr,
		LookbackDelta:        5 * time.Minute,
		EnableAtModifier:     true,
		EnableNegativeOffset: true,
		Parser:               Parser,
		NoStepSubqueryIntervalFn: func(int64) int64 {
			return e.cfg.Load().EvaluationInterval.Milliseconds()
		},
	})
	return nil
}

func externalURL(cfg *Config) *url.URL {
	u, err := url.Parse(cfg.ExternalURL)
	if err != nil || cfg.ExternalURL == "" {
		return &url.URL{}
	}
	return u
}

// Storage returns the local TSDB.
func (e *Engine) Storage() *LocalStorage { return e.storage }

// Manager returns Prometheus's rule manager running the rule files.
func (e *Engine) Manager() *promrules.Manager { return e.manager }

// Webhook returns the Alertmanager webhook handler (also served on the
// agent's server at WebhookPath).
func (e *Engine) Webhook() http.Handler { return e.webhook }

// WebhookTLSAddr returns the address of the webhook's TLS listener once
// started, or "" when it has none.
func (e *Engine) WebhookTLSAddr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.webhook.tlsAddr
}

// Start loads the rule files and starts ingestion, evaluation, the event
// alerts and (when configured) the webhook's TLS listener.
func (e *Engine) Start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	cfg := e.cfg.Load()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	e.cancel = cancel
	e.started = true
	e.mgrDone = make(chan struct{})
	go func() { defer close(e.mgrDone); e.manager.Run() }()

	if err := e.webhook.start(runCtx); err != nil {
		return err
	}
	if err := e.manager.Update(cfg.EvaluationInterval, e.files, labels.FromMap(cfg.ExternalLabels), cfg.ExternalURL, nil); err != nil {
		return fmt.Errorf("load rule files: %w", err)
	}
	e.selectIngest(cfg)
	// Ingest once so the first evaluation has data (a group's first
	// evaluation waits for its slot in the interval).
	if err := e.storage.Ingest(e.opts.Gatherer, time.Now(), 1); err != nil {
		e.logger.Warn("first ingest into the local TSDB failed", "err", err)
	}
	e.wg.Add(4)
	go e.ingestLoop(runCtx)
	go e.expireLoop(runCtx)
	go func() {
		defer e.wg.Done()
		sub := e.opts.Events.Subscribe(4096)
		e.events.run(runCtx, sub)
	}()
	go func() {
		defer e.wg.Done()
		// Its own subscription: a backlog of outcome batches never delays
		// a process exit or an OOM kill.
		sub := e.opts.Events.Subscribe(1024)
		e.evidence.run(runCtx, sub)
	}()
	e.logger.Info("rules engine started", "rule_files", len(e.files), "evaluation_interval", cfg.EvaluationInterval.String(), "retention", cfg.Retention.String())
	return nil
}

// expireLoop forgets old alerts from the publisher once a minute, so that
// publishing never has to.
func (e *Engine) expireLoop(ctx context.Context) {
	defer e.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			e.pub.expire(now)
		}
	}
}

func (e *Engine) ingestLoop(ctx context.Context) {
	defer e.wg.Done()
	gen := uint64(1)
	interval := e.cfg.Load().EvaluationInterval
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if iv := e.cfg.Load().EvaluationInterval; iv != interval {
				interval = iv
				t.Reset(iv)
			}
			gen++
			if err := e.storage.Ingest(e.opts.Gatherer, now, gen); err != nil {
				e.logger.Warn("ingest into the local TSDB failed", "err", err)
			}
		}
	}
}

// Shutdown stops everything; it is safe before Start.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	if e.started {
		e.cancel()
		e.manager.Stop()
		<-e.mgrDone
		e.wg.Wait()
		errs = append(errs, e.webhook.shutdown(ctx))
		e.started = false
	}
	e.engine.Close()
	if e.queryEngine != nil {
		// Closing the engine closes its active query tracker.
		errs = append(errs, e.queryEngine.Close())
		e.queryEngine = nil
	}
	if e.storage != nil {
		errs = append(errs, e.storage.Close())
		e.storage = nil
	}
	return errors.Join(errs...)
}

// ApplyConfig swaps in a new validated configuration. The rule files are
// reloaded all-or-nothing: when they do not load, the running rule set and
// configuration are kept and the error is returned.
func (e *Engine) ApplyConfig(_ context.Context, cfg *Config) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cfg.Load()
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The rule manager loads the files, all-or-nothing.
	files, err := ExpandRuleFiles(cfg.RuleFiles)
	if err != nil {
		return fmt.Errorf("rule_files: %w", err)
	}
	rs, err := newRemoteSet(cfg.RemoteQueries, e.remoteQueries)
	if err != nil {
		return err
	}
	wh, err := e.webhook.prepare(cfg.AlertmanagerWebhook)
	if err != nil {
		return err
	}
	if e.started {
		// Queries dispatch on the new endpoints while the new groups load.
		prev := e.remote.Swap(rs)
		if err := e.manager.Update(cfg.EvaluationInterval, files, labels.FromMap(cfg.ExternalLabels), cfg.ExternalURL, nil); err != nil {
			e.remote.Store(prev)
			return fmt.Errorf("rule files: %w", err)
		}
	} else {
		e.remote.Store(rs)
	}
	if old.StorageDir != cfg.StorageDir {
		e.logger.Warn("rules.storage_dir changes take effect at the next restart")
	}
	if old.QueryAPI.MaxSamples != cfg.QueryAPI.MaxSamples || old.QueryAPI.Timeout != cfg.QueryAPI.Timeout || old.QueryAPI.MaxConcurrency != cfg.QueryAPI.MaxConcurrency {
		e.logger.Warn("rules.query_api bounds take effect at the next restart (enabled takes effect now)")
	}
	if old.AlertmanagerWebhook.TLS != cfg.AlertmanagerWebhook.TLS {
		e.logger.Warn("rules.alertmanager_webhook.tls changes take effect at the next restart")
	}
	e.webhook.apply(wh)
	if cfg.AlertmanagerWebhook.MaxAlerts > 0 {
		e.pub.setMaxWebhook(cfg.AlertmanagerWebhook.MaxAlerts)
	}
	e.events.setConfig(cfg.EventAlerts)
	e.evidence.setConfig(cfg.Evidence)
	e.storage.SetLimits(cfg.Retention, cfg.MaxSeries)
	if e.started {
		e.selectIngest(cfg)
	}
	e.files = files
	e.cfg.Store(cfg)
	e.logger.Info("rules configuration applied", "rule_files", len(files))
	return nil
}

// selectIngest makes the local TSDB store only the metric names the
// loaded rules read, unless cfg says to store everything or a rule selects
// series without a fixed metric name.
func (e *Engine) selectIngest(cfg *Config) {
	var want Selection
	if !cfg.IngestAll {
		want = ruleMetricNames(e.manager.RuleGroups())
	}
	e.storage.Select(want)
	if want == nil {
		e.logger.Info("the local TSDB stores every series of the agent's metrics", "ingest_all", cfg.IngestAll)
	} else {
		e.logger.Info("the local TSDB stores the metric names the rules read", "names", len(want))
	}
}

// ruleMetricNames returns the metric names the rules' expressions select
// with each selector's other label matchers, or nil when one selector has
// no fixed name (a regular expression on __name__, or none), or an alert's
// labels or annotations run a query of their own (the template function
// query): then every series may be read. A name that one selector reads
// with no other matcher stores all its series.
func ruleMetricNames(groups []*promrules.Group) Selection {
	want := Selection{}
	allOf := map[string]bool{}
	for _, g := range groups {
		for _, r := range g.Rules() {
			if ar, ok := r.(*promrules.AlertingRule); ok {
				for _, ls := range []labels.Labels{ar.Labels(), ar.Annotations()} {
					if templateQueries(ls) {
						return nil
					}
				}
			}
			all := false
			parser.Inspect(r.Query(), func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				name := vs.Name
				var ms []*labels.Matcher
				for _, m := range vs.LabelMatchers {
					switch {
					case m.Name != model.MetricNameLabel:
						ms = append(ms, m)
					case m.Type == labels.MatchEqual:
						name = m.Value
					}
				}
				if name == "" {
					all = true
				}
				if len(ms) == 0 {
					allOf[name] = true
				}
				want[name] = append(want[name], ms)
				return nil
			})
			if all {
				return nil
			}
		}
	}
	for name := range allOf {
		want[name] = nil
	}
	return want
}

// templateQuery finds the template function query in a label or
// annotation template.
var templateQuery = regexp.MustCompile(`\bquery\s`)

// templateQueries says whether one of ls's templates calls query.
func templateQueries(ls labels.Labels) bool {
	found := false
	ls.Range(func(l labels.Label) {
		if strings.Contains(l.Value, "{{") && templateQuery.MatchString(l.Value) {
			found = true
		}
	})
	return found
}

// query is the rule manager's QueryFunc: groups mapped to a remote endpoint
// query it, the rest query the local TSDB.
func (e *Engine) query(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
	if rq := e.remote.Load().forGroup(groupFromContext(ctx)); rq != nil {
		return rq.query(ctx, q, t)
	}
	if ni := e.noInput.get(q); ni.empty != nil && ni.empty(e.storage.hasSeries) {
		e.noInputQueries.Inc()
		return promql.Vector{}, nil
	}
	return promrules.EngineQueryFunc(e.engine, e.storage)(ctx, q, t)
}

// groupFromContext returns the name of the rule group being evaluated, as
// the rule manager records it in the query's origin.
func groupFromContext(ctx context.Context) string {
	origin, _ := ctx.Value(promql.QueryOrigin{}).(map[string]any)
	g, _ := origin["ruleGroup"].(map[string]string)
	return g["name"]
}

// notify is the rule manager's NotifyFunc: it turns the manager's alerts
// into stream alerts. The manager re-sends active alerts every resend
// delay; the publisher delivers only changes (firing, then resolved).
func (e *Engine) notify(_ context.Context, expr string, alerts ...*promrules.Alert) {
	cfg := e.cfg.Load()
	gen := cfg.ExternalURL + strutil.TableLinkForExpression(expr)
	for _, a := range alerts {
		out := Alert{
			Labels:       make(map[string]string, a.Labels.Len()+len(cfg.ExternalLabels)),
			Annotations:  a.Annotations.Map(),
			State:        StateFiring,
			Source:       SourceRule,
			StartsAt:     a.FiredAt,
			GeneratorURL: gen,
		}
		for k, v := range cfg.ExternalLabels {
			out.Labels[k] = v
		}
		a.Labels.Range(func(l labels.Label) { out.Labels[l.Name] = l.Value })
		if !a.ResolvedAt.IsZero() {
			out.State = StateResolved
			out.EndsAt = a.ResolvedAt
		}
		e.pub.publish(out)
	}
}

// publishEvidence publishes an evidence alert as the rule files' alert of
// the same name would be: with the external labels, through the publisher
// that merges the two.
func (e *Engine) publishEvidence(a Alert) {
	if ext := e.cfg.Load().ExternalLabels; len(ext) > 0 {
		a.Labels = cloneMap(a.Labels)
		for k, v := range ext {
			if _, ok := a.Labels[k]; !ok {
				a.Labels[k] = v
			}
		}
		a.Fingerprint = Fingerprint(a.Labels)
	}
	e.pub.publish(a)
}

// Fingerprint returns the fingerprint of a label set, the same for every
// source (and the same as Alertmanager's).
func Fingerprint(ls map[string]string) string {
	m := make(model.LabelSet, len(ls))
	for k, v := range ls {
		m[model.LabelName(k)] = model.LabelValue(v)
	}
	return m.Fingerprint().String()
}

// publisher publishes state changes only: an alert is delivered when it
// starts firing and when it resolves, however often its source repeats it.
// What it keeps is bounded: alerts from Alertmanager's webhook up to a cap
// (new ones beyond it are dropped), and every entry expires on a timer
// (expire), never while publishing, so the cost of publishing does not
// grow with what is kept.
type publisher struct {
	stream *Stream
	mu     sync.Mutex
	last   map[string]pubState
	// firingBy are the merged sources firing, by fingerprint.
	firingBy map[string]map[Source]bool
	// webhookKept counts the entries from the webhook; maxWebhook caps it.
	webhookKept int
	maxWebhook  int
	count       *prometheus.CounterVec
	dropped     prometheus.Counter
	kept        *prometheus.GaugeVec
}

type pubState struct {
	alert    Alert
	state    State
	startsAt time.Time
	seen     time.Time
}

// How long the publisher remembers an alert: a resolved one until its
// source stops re-sending it (the rule manager stops after 15 minutes), a
// firing one nobody repeated for a day.
const (
	keepResolved = 30 * time.Minute
	keepFiring   = 24 * time.Hour
)

func newPublisher(s *Stream, reg prometheus.Registerer) *publisher {
	p := &publisher{stream: s, last: map[string]pubState{}, firingBy: map[string]map[Source]bool{}, maxWebhook: NewConfig().AlertmanagerWebhook.MaxAlerts,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_alerts_published_total",
			Help: "Alerts published on the alert stream, by source and state (firing, resolved).",
		}, []string{"source", "state"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_rules_webhook_alerts_dropped_total",
			Help: "New alerts from the Alertmanager webhook dropped because alertmanager_webhook.max_alerts alerts were already kept.",
		}),
		kept: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "vigil_rules_alerts_kept",
			Help: "Alerts the rules engine keeps to fold repeats, by source (rule, alertmanager).",
		}, []string{"source"}),
	}
	reg.MustRegister(p.count, p.dropped, p.kept)
	return p
}

// setMaxWebhook sets the cap on kept webhook alerts.
func (p *publisher) setMaxWebhook(n int) {
	p.mu.Lock()
	p.maxWebhook = n
	p.mu.Unlock()
}

// publish delivers a unless it repeats the last state seen for its
// fingerprint and source. It returns false when a is a new webhook alert
// beyond the cap, which is dropped (neither kept nor delivered).
func (p *publisher) publish(a Alert) bool {
	if a.Fingerprint == "" {
		a.Fingerprint = Fingerprint(a.Labels)
	}
	key := string(a.Source) + "/" + a.Fingerprint
	now := time.Now()
	p.mu.Lock()
	prev, ok := p.last[key]
	if !ok && a.Source == SourceAlertmanager {
		if p.webhookKept >= p.maxWebhook {
			p.mu.Unlock()
			p.dropped.Inc()
			return false
		}
		p.webhookKept++
	}
	same := ok && prev.state == a.State && (a.State == StateResolved || prev.startsAt.Equal(a.StartsAt))
	p.last[key] = pubState{alert: a, state: a.State, startsAt: a.StartsAt, seen: now}
	if !same && merged(a.Source) && !p.mergeLocked(a) {
		same = true
	}
	p.mu.Unlock()
	if same {
		return true
	}
	p.count.WithLabelValues(string(a.Source), string(a.State)).Inc()
	p.stream.Publish(a)
	return true
}

// merged reports whether alerts of source are merged by fingerprint with
// the other local detector's: a rule file's alert and the evidence
// detector's alert of the same name and labels are one alert on the
// stream.
func merged(s Source) bool { return s == SourceRule || s == SourceEvidence }

// mergeLocked records a's state for its source among the merged sources of
// its fingerprint and reports whether the stream should see it: firing
// when the first source starts firing, resolved when the last one
// resolves. Without it, the rule file's alert firing after its for: would
// start a second runbook for a fault the evidence detector's alert already
// had acted on.
func (p *publisher) mergeLocked(a Alert) bool {
	set := p.firingBy[a.Fingerprint]
	if a.State == StateFiring {
		if set == nil {
			set = map[Source]bool{}
			p.firingBy[a.Fingerprint] = set
		}
		first := len(set) == 0
		set[a.Source] = true
		return first
	}
	if !set[a.Source] {
		return false // this source was not firing: nothing to resolve
	}
	delete(set, a.Source)
	if len(set) > 0 {
		return false
	}
	delete(p.firingBy, a.Fingerprint)
	return true
}

// expire forgets resolved alerts keepResolved after they were last seen
// and firing ones keepFiring after. The engine calls it on a timer.
func (p *publisher) expire(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := map[Source]int{}
	for k, s := range p.last {
		if (s.state == StateResolved && now.Sub(s.seen) > keepResolved) || now.Sub(s.seen) > keepFiring {
			delete(p.last, k)
			if set := p.firingBy[s.alert.Fingerprint]; set != nil {
				delete(set, s.alert.Source)
				if len(set) == 0 {
					delete(p.firingBy, s.alert.Fingerprint)
				}
			}
			if s.alert.Source == SourceAlertmanager {
				p.webhookKept--
			}
			continue
		}
		kept[s.alert.Source]++
	}
	for _, src := range []Source{SourceRule, SourceAlertmanager} {
		p.kept.WithLabelValues(string(src)).Set(float64(kept[src]))
	}
}

// firing returns the firing alerts last published from source.
func (p *publisher) firing(source Source) []Alert {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Alert
	for _, s := range p.last {
		if s.state == StateFiring && s.alert.Source == source {
			out = append(out, s.alert)
		}
	}
	return out
}
