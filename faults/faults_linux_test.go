package faults

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The policies the suite runs with: one per fault class, written as an SRE
// would, matching Vigil's default alerts. {{ESCALATE}} is the escalation
// webhook's URL.
const policies = `
policies:
  cooldown: 30s
  circuit_breaker: {failures: 3, reset_after: 10m}
  escalate:
    action: webhook
    params: {url: "{{ESCALATE}}"}
  # Every route is scoped to the suite's namespaces, as an SRE scopes
  # remediation to application namespaces: other processes on this machine
  # (builds, tests) exit non-zero too, and must not feed these policies.
  routes:
    # A fault that comes and goes: few actions, then the breaker escalates.
    - name: flapping
      matchers: ['alertname="VigilProcessExitedNonZero"', 'namespace=~"faults-flap.*"']
      cooldown: 60s
      rate_limit: {max: 3, per: 10m}
      circuit_breaker: {failures: 2, reset_after: 10m}
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 5s}
    - name: crashloop
      matchers: ['alertname="VigilWorkloadCrashLooping"', 'namespace=~"faults-.*"', 'namespace!~"faults-flap.*"']
      rate_limit: {max: 4, per: 10m}
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 20s}
    - name: oom
      matchers: ['alertname="VigilOOMKill"', 'namespace=~"faults-.*"']
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 30s}
    - name: errors
      matchers: ['alertname="VigilWorkloadHigh5xxRatio"', 'namespace=~"faults-.*"']
      blast_radius: {max_unavailable: 1}
      steps:
        - action: reroute_readiness
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 3m}
    # A replica that reads requests and answers none: replace it.
    - name: hung
      matchers: ['alertname="VigilWorkloadNotAnswering"', 'namespace=~"faults-.*"']
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 30s}
    # A working set held at the memory limit (the container's cgroup, so
    # the pod-level duplicate does not act twice): replacing the pod ends
    # the stalls; a leak that comes back meets the rate limit and escalates.
    - name: memory-at-limit
      matchers: ['alertname="VigilWorkloadMemoryAtLimit"', 'namespace=~"faults-.*"', 'pod!=""', 'container!=""']
      rate_limit: {max: 3, per: 1h}
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 3m}
    # A process out of file descriptors fails every accept, connect and
    # open until it is restarted: replace the pod.
    - name: fds
      matchers: ['alertname="VigilWorkloadFileDescriptorsExhausted"', 'namespace=~"faults-.*"']
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
          verify: {window: 30s}
    # A replica throttled by its CPU quota: restarting adds no CPU; a larger
    # limit or more replicas is a person's call.
    - name: cpu-throttled
      matchers: ['alertname="VigilWorkloadCPUThrottled"', 'namespace=~"faults-.*"']
      steps:
        - action: webhook
          params: {url: "{{ESCALATE}}"}
    # A dependency that answers slowly: restarting it or its callers is a
    # guess; tell a human.
    - name: slowdep
      matchers: ['alertname="VigilWorkloadDependencySlow"', 'namespace=~"faults-.*"']
      steps:
        - action: webhook
          params: {url: "{{ESCALATE}}"}
    # A node filesystem filling up: what to delete is a person's call, and
    # evicting pods or cordoning the node moves work without freeing the
    # space. Scoped to the suite's own filesystems, as the other routes are
    # to its namespaces.
    - name: node-filesystem
      matchers: ['alertname=~"VigilNodeFilesystem.*"', 'mountpoint=~".*/vigil-fill-[0-9]+"']
      steps:
        - action: webhook
          params: {url: "{{ESCALATE}}"}
    - name: dependency
      matchers: ['alertname=~"VigilWorkloadDependency(Unreachable|Errors)"', 'namespace=~"faults-.*"', 'dependency_owner_name=~".+"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.dependency_namespace}}", kind: "{{.dependency_owner_kind}}", name: "{{.dependency_owner_name}}"}
          verify: {window: 2m}
    - name: saturated
      matchers: ['alertname="VigilWorkloadHighLatency"', 'namespace=~"faults-.*"', 'owner_kind="Deployment"']
      cooldown: 1m
      steps:
        - action: scale
          params: {namespace: "{{.namespace}}", name: "{{.owner_name}}", step: "1", min: "1", max: "3", restore_after: "30s"}
          verify: {window: 4m}
`

// env is what a scenario works with.
type env struct {
	c      *cluster
	agent  *agentProc
	esc    *escalations
	ctrl   string
	dry    bool
	hostIP string // where pods reach a server of the test process
	// starts says how many times a pod's container was started.
	starts func(ns, pod string) int
}

// result is one row of the report.
type result struct {
	Scenario   string
	Mode       string
	Detected   bool
	Alert      string
	Action     string
	ToAction   time.Duration
	ToHealthy  time.Duration // 0: not measured (see Healthy)
	Healthy    string        // how the scenario ended
	Actions    int           // actions taken (success or failed) on objects at fault
	DryRuns    int           // would-be actions recorded in dry-run
	Collateral int           // actions on objects not at fault
	Notes      string
	// Kubelet is the kubelet's part, for the pods of the scenario's app.
	Kubelet *kubeletView
}

// scenario is one fault, injected into its own namespace.
type scenario struct {
	name string
	// short says whether the dry-run pass of `make test`'s short form runs
	// it (the live pass always runs every scenario).
	short bool
	// long marks a scenario that lasts minutes (an alert's for: 2m, a
	// scale-back): the suite starts these first.
	long bool
	// notify marks a fault whose right action is none: the policy only
	// escalates (a webhook to a human). Detection is then the escalation's
	// record, and any other action in the namespace is collateral.
	notify bool
	// app is the Deployment whose pods are at fault: the report's kubelet
	// columns are about its pods.
	app string
	// about says whether an alert (its labels) is the scenario's; nil: its
	// namespace label is the scenario's namespace. A node's alert has no
	// namespace (the fill scenario's is about its mount point).
	about func(labels map[string]string, ns string, st any) bool
	// setup creates the workloads and starts their traffic.
	setup func(t *testing.T, e *env, ns string) any
	// inject breaks something and returns when.
	inject func(t *testing.T, e *env, ns string, st any) time.Time
	// atFault says whether a record's target is an object at fault.
	atFault func(r record, ns string, st any) bool
	// finish waits for the scenario's end state after the first action
	// (live) and fills the result; it may fail the test.
	finish func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result)
	// clear removes the fault.
	clear func(t *testing.T, e *env, ns string, st any)
}

// runner is where the suite runs: the real node, with Vigil installed from
// the chart (TestFaultsOnRealNode).
type runner struct {
	name string
	c    *cluster
	esc  *escalations
	// hostIP is where pods reach a server of the test process (the
	// slowdep scenario's external dependency).
	hostIP string
	// agent starts Vigil (live, or in dry-run) for one pass and returns
	// its API's address.
	agent func(t *testing.T, dry bool) *agentProc
	// starts says how many times a pod's container was started.
	starts func(ctx context.Context, ns, pod string) int
}

// runSuite runs the scenarios on r: a live pass, then a dry-run pass, each
// with its own agent and bystanders, and writes the report.
func runSuite(t *testing.T, r *runner) {
	full := os.Getenv("FAULTS_FULL") == "1"
	c := r.c
	var (
		mu      sync.Mutex
		results []result
	)
	for _, dry := range []bool{false, true} {
		mode := "live"
		if dry {
			mode = "dry-run"
		}
		ok := t.Run(mode, func(t *testing.T) {
			e := &env{c: c, agent: r.agent(t, dry), esc: r.esc, ctrl: c.ctrl, dry: dry, hostIP: r.hostIP,
				starts: func(ns, pod string) int { return r.starts(t.Context(), ns, pod) }}
			suffix := ""
			if dry {
				suffix = "-dry"
			}
			// Healthy bystanders with traffic: nothing may ever touch them.
			byNS := "faults-bystander" + suffix
			c.namespace(t, byNS)
			c.deploy(t, byNS, "steady", appOpts{replicas: 2, gate: true})
			startLoad(t, c, byNS, "steady", 10, 0)
			// A healthy but noisy service: 2 % of its answers are 503
			// (mode lowerror), under the default alert's 5 %.
			control(t, c.ctrl, "app-"+byNS+"-noisy", "lowerror")
			c.deploy(t, byNS, "noisy", appOpts{replicas: 2, gate: true})
			noisy := startLoad(t, c, byNS, "noisy", 10, 0)
			// Bursts of slow answers: for 2.5 s of every minute every
			// answer of both replicas takes 1.5 s (mode slowburst). The
			// load counts an answer slower than a second as bad.
			control(t, c.ctrl, "app-"+byNS+"-bursty", "slowburst")
			c.deploy(t, byNS, "bursty", appOpts{replicas: 2, gate: true})
			bursty := startLoad(t, c, byNS, "bursty", 10, time.Second)
			// Clean restarts: "restarting" exits 0 after a graceful
			// shutdown every 45 s (mode restart) and its kubelet starts it
			// again; "caller" calls it for every request, so it sees
			// connections refused for a moment and answers 502 meanwhile.
			// The kubelet starts an exited container again only after its
			// back-off (10 s, then 20 s, 40 s…, exit 0 or not): one replica
			// would leave the caller without its dependency for that long,
			// an outage rather than noise (Vigil then restarted the
			// dependency, seen). So "restarting" has three replicas and
			// only the first restarts (all at once were the same outage,
			// seen), and the Service routes around it while it is down;
			// until its endpoint goes (a second or more after the exit),
			// a third of the caller's requests meet refused connects.
			raddr := c.service(t, byNS, "restarting").Spec.ClusterIP + ":80"
			c.deployNoService(t, byNS, "restarting", appOpts{replicas: 3})
			restarting := firstPod(t, e, byNS, "restarting").Name
			control(t, c.ctrl, "pod-"+restarting, "restart")
			c.deploy(t, byNS, "caller", appOpts{replicas: 1, call: "http://" + raddr + "/"})
			caller := startLoad(t, c, byNS, "caller", 10, 0)
			// A Deployment rolled out normally, again and again: every
			// 40 s a rollout restart replaces both replicas (the old
			// ones get SIGTERM and exit 0).
			c.deploy(t, byNS, "rolling", appOpts{replicas: 2})
			startLoad(t, c, byNS, "rolling", 10, 0)
			rollouts := c.rollingRestarts(t, byNS, "rolling", 40*time.Second)
			// A batch job on schedule: every minute a CronJob's Job runs
			// the fault app for 5 s, which then exits 0 (mode restart).
			// No alert may fire about its pods; VigilProcessExitedNonZero
			// above all.
			tick := c.startCronJob(t, e.agent, byNS, "tick", 5*time.Second)
			noiseFrom := time.Now()

			t.Run("scenarios", func(t *testing.T) {
				// The scenarios bounded by an alert's for: 2m start first,
				// so that four at a time the short ones fill in beside them.
				scs := allScenarios()
				slices.SortStableFunc(scs, func(a, b scenario) int {
					if a.long == b.long {
						return 0
					} else if a.long {
						return -1
					}
					return 1
				})
				for _, sc := range scs {
					if dry && !full && !sc.short || !selected(sc.name) {
						continue
					}
					t.Run(sc.name, func(t *testing.T) {
						t.Parallel()
						res := runScenario(t, e, sc, "faults-"+sc.name+suffix)
						res.Mode = mode
						mu.Lock()
						results = append(results, res)
						mu.Unlock()
					})
				}
			})
			// The noisy bystander really was noisy, below the alert's 5 %.
			noisy.mu.Lock()
			nOK, nBad := noisy.ok, noisy.bad
			noisy.mu.Unlock()
			t.Logf("noisy bystander: %d good, %d bad answers", nOK, nBad)
			// Each of its two replicas answers every 50th request 503: a
			// pass shorter than 300 answers may see none.
			if nBad == 0 && nOK+nBad >= 300 || nBad*100 >= 5*(nOK+nBad) {
				t.Errorf("noisy bystander: %d bad of %d answers; want some, under 5 %%", nBad, nOK+nBad)
			}
			// The other noise was there too, when the pass was long enough
			// to hold a burst (one a minute) and a restart (every 45 s).
			long := time.Since(noiseFrom) >= 70*time.Second
			bursty.mu.Lock()
			bOK, bSlow := bursty.ok, bursty.bad
			bursty.mu.Unlock()
			starts := e.starts(byNS, restarting)
			rStarted, rDone := rollouts()
			t.Logf("slow-burst bystander: %d answers, %d slower than 1 s; restarting bystander: started %d times; its caller: %s; rolling bystander: %d rollouts started, %d completed",
				bOK+bSlow, bSlow, starts, caller, rStarted, rDone)
			if long && rDone == 0 {
				t.Errorf("rolling bystander: no rollout completed in %s", time.Since(noiseFrom).Round(time.Second))
			}
			if long && bSlow == 0 {
				t.Errorf("slow-burst bystander: no answer slower than a second in %s", time.Since(noiseFrom).Round(time.Second))
			}
			if long && starts < 2 {
				t.Errorf("restarting bystander: started %d times in %s, want a restart every 45 s", starts, time.Since(noiseFrom).Round(time.Second))
			}
			// The scheduled job ran, once a minute, and every run succeeded
			// without an alert.
			jobs, jobsOK, jobsFailed, err := tick.runs(t.Context())
			if err != nil {
				t.Errorf("scheduled job bystander: %v", err)
			}
			firing, pending := tick.alerts()
			ran := time.Since(tick.from)
			t.Logf("scheduled job bystander: %d Jobs in %s, %d succeeded, %d failed; alerts about its pods: %d firing, %d pending",
				jobs, ran.Round(time.Second), jobsOK, jobsFailed, len(firing), len(pending))
			for _, a := range pending {
				t.Logf("scheduled job bystander: pending alert: %s", a)
			}
			for _, a := range firing {
				t.Errorf("scheduled job bystander: an alert fired about a Job that exits 0: %s", a)
			}
			if jobsFailed > 0 {
				t.Errorf("scheduled job bystander: %d of %d Jobs failed", jobsFailed, jobs)
			}
			// The first run comes at the next minute; the node is loaded:
			// two runs of slack.
			if want := max(1, int(ran/time.Minute)-2); ran >= 2*time.Minute && jobsOK < want {
				t.Errorf("scheduled job bystander: %d Jobs succeeded in %s, want at least %d (one a minute)", jobsOK, ran.Round(time.Second), want)
			}
			// Nothing outside the scenarios' objects at fault was acted on.
			recs, err := e.agent.actions(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			touched := false
			for _, r := range recs {
				if r.Target.Namespace == byNS || r.AlertLabels["namespace"] == byNS {
					t.Errorf("a healthy bystander got a record: %+v", r)
					touched = true
				}
				if dry && r.taken() {
					t.Errorf("dry-run took an action: %s %s: %s (%s)", r.Action, r.Target, r.Result, r.Reason)
				}
			}
			if touched {
				// Say why: the alerts about the bystanders, with the
				// evidence in their annotations.
				if al, err := e.agent.alertsAbout(t.Context(), byNS); err == nil {
					for _, a := range al {
						t.Logf("bystander alert: %s", a)
					}
				}
			}
		})
		if !ok {
			break
		}
		if !dry {
			// The live pass's workloads have done their part: their pods
			// would only load the node's two cores during the dry-run
			// pass (its bystander's caller then saw its dependency's
			// endpoint updates late enough to cross the 5xx alert).
			c.deleteNamespaces(t, func(ns string) bool { return strings.HasPrefix(ns, "faults-") && !strings.HasSuffix(ns, "-dry") })
		}
	}
	writeReport(t, results, full)
}

// runScenario sets a scenario up, injects its fault and measures.
func runScenario(t *testing.T, e *env, sc scenario, ns string) result {
	res := result{Scenario: sc.name}
	e.c.namespace(t, ns)
	st := sc.setup(t, e, ns)
	if sc.app != "" {
		// The kubelet's part, watched from before the fault until the
		// scenario's records are read.
		stop := watchKubelet(e.c, ns, sc.app, &res)
		defer stop()
	}
	about := sc.about
	if about == nil {
		about = inNamespace
	}
	t0 := sc.inject(t, e, ns, st)
	defer sc.clear(t, e, ns, st)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	// Detection: the first decision that reached the guards and passed
	// them (an action, or its dry-run record) for this namespace.
	want := func(r record) bool {
		if e.dry {
			return r.Result == "dry_run"
		}
		return r.taken()
	}
	var first record
	err := poll(ctx, func() bool {
		recs, err := e.agent.actions(ctx)
		if err != nil {
			return false
		}
		for _, r := range recs {
			if about(r.AlertLabels, ns, st) && want(r) && (r.Action == "webhook") == sc.notify {
				first = r
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Errorf("%s: no remediation decision within 5 minutes of the fault", sc.name)
		if al, err := e.agent.alertsWhere(t.Context(), func(l map[string]string) bool { return about(l, ns, st) }); err == nil {
			t.Logf("%s: the agent's alerts about %s: %q", sc.name, ns, al)
		}
		res.Notes = "not detected"
		return res
	}
	res.Detected = true
	res.Alert = first.Alert
	res.Action = first.Action + " " + first.Target.String()
	res.ToAction = first.started().Sub(t0)
	t.Logf("%s: %s fired, %s after %s", sc.name, first.Alert, res.Action, res.ToAction.Round(time.Millisecond))

	if !e.dry {
		sc.finish(ctx, t, e, ns, st, t0, &res)
		// Healthy again cannot come before the fix started: a good
		// stretch that began just before it is counted from the action.
		if res.ToHealthy > 0 && res.ToHealthy < res.ToAction {
			res.ToHealthy = res.ToAction
		}
	} else {
		// Give the would-be runbook time to record what it would do.
		time.Sleep(3 * time.Second)
		res.Healthy = "dry-run: nothing changed"
	}
	recs, err := e.agent.actions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !about(r.AlertLabels, ns, st) && r.Target.Namespace != ns {
			continue
		}
		switch {
		case r.Result == "dry_run" && (r.Action != "webhook" || sc.notify):
			res.DryRuns++
		case r.taken() && r.Action == "webhook":
		case r.taken() && sc.atFault(r, ns, st):
			res.Actions++
			t.Logf("%s: action at fault: %s %s (%s, %s)", sc.name, r.Action, r.Target, r.Alert, r.Result)
		case r.taken():
			res.Collateral++
			t.Errorf("%s: action on an object not at fault: %s %s (%s)", sc.name, r.Action, r.Target, r.Reason)
		}
	}
	if e.dry && (res.Actions > 0 || res.Collateral > 0) {
		t.Errorf("%s: dry-run took %d actions", sc.name, res.Actions+res.Collateral)
	}
	if e.dry && res.DryRuns == 0 {
		t.Errorf("%s: dry-run recorded no would-be action", sc.name)
	}
	return res
}

// inNamespace is a scenario's about by default: the alert's namespace
// label is the scenario's namespace.
func inNamespace(labels map[string]string, ns string, _ any) bool { return labels["namespace"] == ns }

// poll calls cond every 200ms until it is true or ctx ends.
func poll(ctx context.Context, cond func() bool) error {
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// selected applies FAULTS_ONLY (a comma-separated list of scenario names),
// for running some scenarios while working on them.
func selected(name string) bool {
	only := os.Getenv("FAULTS_ONLY")
	if only == "" {
		return true
	}
	for _, n := range strings.Split(only, ",") {
		if strings.TrimSpace(n) == name {
			return true
		}
	}
	return false
}
