package rules

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// The alerts fast-path events become.
const (
	// AlertProcessExitedNonZero fires when a process exits with a non-zero
	// code or is killed by a signal.
	AlertProcessExitedNonZero = "VigilProcessExitedNonZero"
	// AlertOOMKill fires when the OOM killer kills a process.
	AlertOOMKill = "VigilOOMKill"
)

// eventAlerter turns fast-path events into alerts at once. Repeats of the
// same alert (same workload, command and exit status) while it fires are
// folded into it; it resolves ResolveAfter after the last repeat.
type eventAlerter struct {
	stream *Stream

	mu     sync.Mutex
	cfg    EventAlertsConfig
	active map[string]*activeEvent

	events  *prometheus.CounterVec
	dropped prometheus.Counter
	missed  prometheus.CounterFunc
	sub     *event.Subscription
	subMu   sync.Mutex
}

type activeEvent struct {
	alert Alert
	last  time.Time
	count int
}

func newEventAlerter(cfg EventAlertsConfig, s *Stream, reg prometheus.Registerer) *eventAlerter {
	ea := &eventAlerter{stream: s, cfg: cfg, active: map[string]*activeEvent{},
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_events_total",
			Help: "Fast-path events seen by the rules engine, by kind and outcome (alert: fired a new alert, repeat: folded into a firing alert, ignored: not an alert by configuration).",
		}, []string{"kind", "outcome"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_rules_event_alerts_dropped_total",
			Help: "Event alerts not raised because event_alerts.max_active alerts were already firing.",
		}),
	}
	ea.missed = prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "vigil_rules_events_missed_total",
		Help: "Fast-path events the rules engine missed because its event buffer was full.",
	}, func() float64 {
		ea.subMu.Lock()
		defer ea.subMu.Unlock()
		if ea.sub == nil {
			return 0
		}
		return float64(ea.sub.Dropped())
	})
	reg.MustRegister(ea.events, ea.dropped, ea.missed)
	return ea
}

func (ea *eventAlerter) setConfig(cfg EventAlertsConfig) {
	ea.mu.Lock()
	ea.cfg = cfg
	ea.mu.Unlock()
}

// run consumes sub until ctx ends, resolving expired alerts as it goes.
func (ea *eventAlerter) run(ctx context.Context, sub *event.Subscription) {
	ea.subMu.Lock()
	ea.sub = sub
	ea.subMu.Unlock()
	consume(ctx, sub, ea.handle, ea.expire)
}

// consume hands each event of sub to handle and the time to tick once a
// second, until ctx ends or sub is closed; it closes sub.
func consume(ctx context.Context, sub *event.Subscription, handle func(event.Event), tick func(time.Time)) {
	defer sub.Close()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-sub.C():
			if !ok {
				return
			}
			handle(ev)
		case now := <-t.C:
			tick(now)
		}
	}
}

// handle turns one event into an alert (or folds it into a firing one).
func (ea *eventAlerter) handle(ev event.Event) {
	if ev.Kind == event.Outcomes {
		return // the evidence detector's
	}
	ea.mu.Lock()
	defer ea.mu.Unlock()
	a, ok := ea.alertFor(ev)
	if !ok {
		ea.events.WithLabelValues(string(ev.Kind), "ignored").Inc()
		return
	}
	now := time.Now()
	if ae, ok := ea.active[a.Fingerprint]; ok {
		ae.last = now
		ae.count++
		ea.events.WithLabelValues(string(ev.Kind), "repeat").Inc()
		return
	}
	if len(ea.active) >= ea.cfg.MaxActive {
		ea.dropped.Inc()
		return
	}
	ea.active[a.Fingerprint] = &activeEvent{alert: a, last: now, count: 1}
	ea.events.WithLabelValues(string(ev.Kind), "alert").Inc()
	ea.stream.Publish(a)
}

// expire resolves alerts with no repeat for ResolveAfter.
func (ea *eventAlerter) expire(now time.Time) {
	ea.mu.Lock()
	defer ea.mu.Unlock()
	for fp, ae := range ea.active {
		if now.Sub(ae.last) < ea.cfg.ResolveAfter {
			continue
		}
		delete(ea.active, fp)
		r := ae.alert
		r.State = StateResolved
		r.EndsAt = now
		r.Annotations = cloneMap(r.Annotations)
		r.Annotations["count"] = strconv.Itoa(ae.count)
		ea.stream.Publish(r)
	}
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// alertFor builds the alert for ev; false when ev is not an alert under
// the configuration.
func (ea *eventAlerter) alertFor(ev event.Event) (Alert, bool) {
	labels := map[string]string{}
	id := ev.Workload
	for k, v := range map[string]string{"namespace": id.Namespace, "pod": id.Pod, "container": id.Container, "unit": id.SystemdUnit, "comm": ev.Comm} {
		if v != "" {
			labels[k] = v
		}
	}
	ann := map[string]string{"pid": strconv.FormatUint(uint64(ev.PID), 10)}
	if id.ContainerID != "" {
		ann["container_id"] = id.ContainerID
	}
	if id.CgroupPath != "" {
		ann["cgroup"] = id.CgroupPath
	}
	for k, v := range ev.Attrs {
		ann[k] = v
	}
	who := ev.Comm
	switch {
	case id.Pod != "":
		who = fmt.Sprintf("%s in pod %s/%s", ev.Comm, id.Namespace, id.Pod)
	case id.SystemdUnit != "":
		who = fmt.Sprintf("%s in %s", ev.Comm, id.SystemdUnit)
	}
	switch ev.Kind {
	case event.ProcessExit:
		if !ea.cfg.ProcessExit || podSandbox(id, ev.Comm) {
			return Alert{}, false
		}
		switch {
		case ev.Signal != 0:
			for _, s := range ea.cfg.IgnoreSignals {
				if s == ev.Signal {
					return Alert{}, false
				}
			}
			labels["signal"] = strconv.Itoa(ev.Signal)
			ann["summary"] = fmt.Sprintf("%s was killed by signal %d.", who, ev.Signal)
		case ev.ExitCode != 0:
			labels["exit_code"] = strconv.Itoa(ev.ExitCode)
			ann["summary"] = fmt.Sprintf("%s exited with code %d.", who, ev.ExitCode)
		default:
			return Alert{}, false
		}
		labels["alertname"] = AlertProcessExitedNonZero
	case event.OOMKill:
		if !ea.cfg.OOMKill {
			return Alert{}, false
		}
		labels["alertname"] = AlertOOMKill
		ann["summary"] = fmt.Sprintf("%s was killed by the OOM killer.", who)
	default:
		return Alert{}, false
	}
	labels["severity"] = "warning"
	at := ev.Time
	if at.IsZero() {
		at = time.Now()
	}
	return Alert{
		Labels:       labels,
		Annotations:  ann,
		State:        StateFiring,
		Source:       SourceEvent,
		StartsAt:     at,
		GeneratorURL: "vigil://event/" + string(ev.Kind),
		Fingerprint:  Fingerprint(labels),
	}, true
}

// podSandbox reports whether a process is a pod's sandbox: the pause
// process that holds the pod's namespaces, in the pod's cgroup but in none
// of its containers (the pod UID comes from the cgroup path, so this holds
// when the pod object is already gone). The runtime kills it (SIGKILL) every time a pod is
// deleted, rolled out or evicted, so its death is the pod going away, not
// a failure; the pod's own containers still alert.
func podSandbox(id workload.Identity, comm string) bool {
	return (id.PodUID != "" || id.Pod != "") && id.Container == "" && comm == "pause"
}

// activeAlerts returns the firing event alerts.
func (ea *eventAlerter) activeAlerts() []Alert {
	ea.mu.Lock()
	defer ea.mu.Unlock()
	out := make([]Alert, 0, len(ea.active))
	for _, ae := range ea.active {
		out = append(out, ae.alert)
	}
	return out
}
