package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// extraScenarios are scenarios defined in other files of this package.
//
// Adding a kind of failure: (1) its behaviour, if the fault app has none yet,
// goes into faults/faultapp/mode_<name>.go with an init() that calls
// register("<name>", Mode{...}); (2) its scenario goes into a file of its own
// here (e.g. scenarios_more_linux_test.go) as a func() scenario appended to
// extraScenarios from that file's init(); podFault and the helpers below
// build most scenarios, and the fault is injected by writing "<name>" into
// the pod's or the app's control file
// (control(t, e.ctrl, "pod-"+pod, "<name>")). allScenarios then runs it
// live and in dry-run, and the report gets its row.
var extraScenarios []func() scenario

func allScenarios() []scenario {
	all := []scenario{crashScenario(), oomScenario(), errorsScenario(),
		dependencyScenario("dependency", "refuse", true), dependencyScenario("dependency5xx", "5xx", false),
		saturationScenario(), flapScenario()}
	for _, f := range extraScenarios {
		all = append(all, f())
	}
	return all
}

func podTarget(name string) func(r record, ns string, _ any) bool {
	return func(r record, ns string, _ any) bool {
		return r.Target.Kind == "Pod" && r.Target.Namespace == ns && strings.HasPrefix(r.Target.Name, name)
	}
}

func firstPod(t *testing.T, e *env, ns, app string) corev1.Pod {
	t.Helper()
	pods, err := e.c.pods(t.Context(), ns, app)
	if err != nil || len(pods) == 0 {
		t.Fatalf("pods of %s/%s: %v (%d)", ns, app, err, len(pods))
	}
	return pods[0]
}

func waitEscalation(ctx context.Context, e *env, ns string) (escalation, bool) {
	return waitEscalationAbout(ctx, e, func(l map[string]string) bool { return l["namespace"] == ns })
}

// waitEscalationAbout waits for an escalation whose alert's labels match.
func waitEscalationAbout(ctx context.Context, e *env, match func(labels map[string]string) bool) (escalation, bool) {
	var got escalation
	err := poll(ctx, func() bool {
		for _, x := range e.esc.list() {
			if match(x.Alert.Labels) {
				got = x
				return true
			}
		}
		return false
	})
	return got, err == nil
}

// crash: a container that exits non-zero in a loop; every replacement
// crashes too, so the restart does not help and the policy escalates.
func crashScenario() scenario {
	return scenario{
		name: "crashloop", short: true, app: "crasher",
		setup: func(t *testing.T, e *env, ns string) any {
			e.c.deploy(t, ns, "crasher", appOpts{replicas: 1})
			return nil
		},
		inject: func(t *testing.T, e *env, ns string, _ any) time.Time {
			control(t, e.ctrl, "app-"+ns+"-crasher", "crash")
			return time.Now()
		},
		atFault: podTarget("crasher-"),
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, _ any, t0 time.Time, res *result) {
			x, ok := waitEscalation(ctx, e, ns)
			if !ok {
				t.Errorf("crashloop: the restart did not help and nothing escalated")
				res.Healthy = "not escalated"
				return
			}
			res.Healthy = fmt.Sprintf("escalated after %s (%s)", x.At.Sub(t0).Round(100*time.Millisecond), x.Reason)
		},
		clear: func(t *testing.T, e *env, ns string, _ any) { control(t, e.ctrl, "app-"+ns+"-crasher", "") },
	}
}

// podFault is a scenario whose fault is one pod of app (deployed with
// opts, under rate requests a second) put in mode through its control
// file: the remediation must target that pod and the traffic recover;
// check says what else must hold and returns the healthy state's words.
func podFault(name string, short bool, app string, opts appOpts, rate int, mode string,
	check func(ctx context.Context, t *testing.T, e *env, ns, pod string) string) scenario {
	type state struct {
		pod  string
		load *load
	}
	return scenario{
		name: name, short: short, app: app,
		setup: func(t *testing.T, e *env, ns string) any {
			e.c.deploy(t, ns, app, opts)
			return &state{load: startLoad(t, e.c, ns, app, rate, 0)}
		},
		inject: func(t *testing.T, e *env, ns string, st any) time.Time {
			s := st.(*state)
			s.pod = firstPod(t, e, ns, app).Name
			control(t, e.ctrl, "pod-"+s.pod, mode)
			return time.Now()
		},
		atFault: func(r record, ns string, st any) bool {
			return r.Target.Kind == "Pod" && r.Target.Namespace == ns && r.Target.Name == st.(*state).pod
		},
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result) {
			s := st.(*state)
			if !recovered(ctx, t, s.load, t0, res, name+": traffic") {
				return
			}
			res.Healthy = check(ctx, t, e, ns, s.pod)
		},
		clear: func(t *testing.T, e *env, ns string, st any) { control(t, e.ctrl, "pod-"+st.(*state).pod, "") },
	}
}

// oom: one replica leaks memory past its 48 MiB limit and is OOM-killed
// over and over; the policy replaces that pod.
func oomScenario() scenario {
	return podFault("oom", true, "leaky", appOpts{replicas: 2, memoryLimit: "48Mi"}, 10, "oom",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			if p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil {
				t.Errorf("oom: the leaking pod %s is still there", pod)
			}
			return "replacement pod serves"
		})
}

// errors: one of three replicas answers 503; it is taken out of its
// Service's endpoints and keeps running for debugging.
func errorsScenario() scenario {
	return podFault("http5xx", false, "web", appOpts{replicas: 3, gate: true}, 30, "5xx",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
			switch {
			case err != nil || p.DeletionTimestamp != nil:
				t.Errorf("http5xx: the faulty pod %s should keep running for debugging: %v", pod, err)
			case e.starts(ns, pod) == 0:
				t.Errorf("http5xx: the faulty pod %s has no process", pod)
			}
			eps, _ := e.c.readyEndpoints(ctx, ns, "web")
			return fmt.Sprintf("rerouted; pod kept for debugging; %d endpoints left", len(eps))
		})
}

// dependency: web calls db for every request; db starts refusing
// connections (mode refuse) or answering 503 (mode 5xx). web's errors come
// from db: db is acted on, web is not.
func dependencyScenario(name, mode string, short bool) scenario {
	type state struct {
		db   string
		load *load
	}
	return scenario{
		name: name, short: short, app: "db",
		setup: func(t *testing.T, e *env, ns string) any {
			svc := e.c.service(t, ns, "db")
			addr := svc.Spec.ClusterIP + ":80"
			e.c.deployNoService(t, ns, "db", appOpts{replicas: 1})
			e.c.deploy(t, ns, "web", appOpts{replicas: 1, call: "http://" + addr + "/"})
			return &state{load: startLoad(t, e.c, ns, "web", 10, 0)}
		},
		inject: func(t *testing.T, e *env, ns string, st any) time.Time {
			s := st.(*state)
			s.db = firstPod(t, e, ns, "db").Name
			control(t, e.ctrl, "pod-"+s.db, mode)
			return time.Now()
		},
		atFault: func(r record, ns string, st any) bool {
			return r.Target.Namespace == ns && (r.Target.Kind == "Deployment" && r.Target.Name == "db" || r.Target.Kind == "Pod" && strings.HasPrefix(r.Target.Name, "db-"))
		},
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result) {
			s := st.(*state)
			if !recovered(ctx, t, s.load, t0, res, name+": web") {
				return
			}
			res.Healthy = "db restarted; web untouched"
			recs, _ := e.agent.actions(ctx)
			var vetoes []string
			for _, r := range recs {
				if r.Target.Namespace == ns && strings.HasPrefix(r.Target.Name, "web") && r.Guard == "dependency" {
					vetoes = append(vetoes, r.Action)
				}
			}
			if len(vetoes) > 0 {
				res.Notes = fmt.Sprintf("%d action(s) on web vetoed by the dependency guard", len(vetoes))
			}
		},
		clear: func(t *testing.T, e *env, ns string, st any) { control(t, e.ctrl, "pod-"+st.(*state).db, "") },
	}
}

// saturation: a one-replica Deployment that serves 20 requests/s gets 25;
// latency climbs; it is scaled up within its bounds and, once the extra
// traffic is gone, back down.
func saturationScenario() scenario {
	type state struct {
		base, extra *load
	}
	return scenario{
		name: "saturation", long: true, app: "api",
		setup: func(t *testing.T, e *env, ns string) any {
			e.c.deploy(t, ns, "api", appOpts{replicas: 1, workers: 2, serviceTime: 100 * time.Millisecond})
			return &state{base: startLoad(t, e.c, ns, "api", 8, time.Second)}
		},
		inject: func(t *testing.T, e *env, ns string, st any) time.Time {
			st.(*state).extra = startLoad(t, e.c, ns, "api", 17, time.Second)
			return time.Now()
		},
		atFault: func(r record, ns string, _ any) bool {
			return r.Target.Namespace == ns && r.Target.Kind == "Deployment" && r.Target.Name == "api"
		},
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result) {
			s := st.(*state)
			if !recovered(ctx, t, s.base, t0, res, "saturation: latency") {
				return
			}
			n, _ := e.c.replicas(ctx, ns, "api")
			if n < 2 || n > 3 {
				t.Errorf("saturation: %d replicas after scaling, want 2..3", n)
			}
			// The extra traffic goes away: the scale-up is undone.
			s.extra.stop()
			calm := time.Now()
			ctx2, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
			defer cancel()
			if err := poll(ctx2, func() bool { m, err := e.c.replicas(ctx2, ns, "api"); return err == nil && m == 1 }); err != nil {
				t.Errorf("saturation: still %d replicas 6 minutes after the load dropped", n)
				res.Healthy = fmt.Sprintf("scaled 1→%d, not restored", n)
				return
			}
			res.Healthy = fmt.Sprintf("scaled 1→%d; back to 1 %s after the load dropped", n, time.Since(calm).Round(time.Second))
		},
		clear: func(t *testing.T, e *env, ns string, st any) {
			if x := st.(*state).extra; x != nil {
				x.stop()
			}
		},
	}
}

// flap: a fault that comes and goes every few seconds, faster than the
// cooldown: at most the policy's allowed actions, then the circuit breaker
// escalates.
func flapScenario() scenario {
	type state struct{ stop chan struct{} }
	return scenario{
		name: "flapping", short: true, app: "flappy",
		setup: func(t *testing.T, e *env, ns string) any {
			e.c.deploy(t, ns, "flappy", appOpts{replicas: 1})
			return &state{stop: make(chan struct{})}
		},
		inject: func(t *testing.T, e *env, ns string, st any) time.Time {
			s := st.(*state)
			// Every 12 s the app fails once: the crash mode is on for
			// 200 ms, long enough for the running process to see it (it
			// polls every 50 ms) and far shorter than the kubelet's
			// restart back-off (10 s), so the restarted container is fine
			// again. A replacement pod's failure is a new alert (it
			// carries the pod); 12 s is far shorter than the policy's
			// cooldown.
			burst := func() {
				// The pods running now fail once; a replacement started
				// meanwhile is a new pod and is not affected.
				pods, err := e.c.pods(context.Background(), ns, "flappy")
				if err != nil {
					t.Logf("flapping: %v", err)
					return
				}
				for _, p := range pods {
					control(t, e.ctrl, "pod-"+p.Name, "crash")
				}
				time.Sleep(200 * time.Millisecond)
				for _, p := range pods {
					control(t, e.ctrl, "pod-"+p.Name, "")
				}
			}
			t0 := time.Now()
			burst()
			go func() {
				for {
					select {
					case <-s.stop:
						return
					case <-time.After(12 * time.Second):
					}
					burst()
				}
			}()
			return t0
		},
		atFault: podTarget("flappy-"),
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, _ any, t0 time.Time, res *result) {
			err := poll(ctx, func() bool {
				recs, _ := e.agent.actions(ctx)
				for _, r := range recs {
					if r.AlertLabels["namespace"] == ns && r.Action == "webhook" && strings.Contains(r.Reason, "circuit breaker") {
						return true
					}
				}
				return false
			})
			recs, _ := e.agent.actions(ctx)
			guards := map[string]int{}
			taken := 0
			for _, r := range recs {
				if r.AlertLabels["namespace"] != ns {
					continue
				}
				if r.Result == "vetoed" {
					guards[r.Guard]++
				}
				if r.taken() && r.Action != "webhook" {
					taken++
				}
			}
			// The breaker opens after 2 failed remediations; the rate
			// limit (3) is never what stops it.
			if taken > 2 {
				t.Errorf("flapping: %d actions; the circuit breaker should have stopped the policy after 2 failures", taken)
			}
			var gs []string
			for g, n := range guards {
				gs = append(gs, fmt.Sprintf("%s×%d", g, n))
			}
			sort.Strings(gs)
			res.Notes = "vetoed: " + strings.Join(gs, ", ")
			if err != nil {
				t.Errorf("flapping: the circuit breaker never escalated (%s)", res.Notes)
				res.Healthy = "breaker did not escalate"
				return
			}
			res.Healthy = fmt.Sprintf("%d actions, then the circuit breaker escalated", taken)
		},
		clear: func(t *testing.T, e *env, ns string, st any) { close(st.(*state).stop) },
	}
}

// recovered waits until load has seen only good responses for 5 s, and
// records when that began; if it never does, it fails the test saying the
// subject (such as "oom: traffic") did not recover and records the
// scenario as not healthy.
func recovered(ctx context.Context, t *testing.T, l *load, t0 time.Time, res *result, subject string) bool {
	t.Helper()
	since, ok := waitHealthy(ctx, l, t0, 5*time.Second)
	if !ok {
		t.Errorf("%s did not recover: %s", subject, l)
		res.Healthy = "not healthy"
		return false
	}
	res.ToHealthy = since.Sub(t0)
	return true
}
