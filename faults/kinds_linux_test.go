//go:build linux

package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func init() {
	extraScenarios = append(extraScenarios, hungScenario, fdleakScenario, slowdepScenario)
}

// hung: one of three replicas reads every request and answers none (fault
// app mode hang); its process stays alive and it sets no liveness probe,
// so the kubelet would never restart it. Vigil sees requests read and not
// answered (VigilWorkloadNotAnswering, on evidence: docs/detection.md) and
// the policy replaces that pod.
func hungScenario() scenario {
	return podFault("hung", false, "web", appOpts{replicas: 3}, 30, "hang",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			if p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil {
				t.Errorf("hung: the hung pod %s is still there", pod)
			}
			return "hung pod replaced; traffic clean"
		})
}

// fdleak: one of two replicas opens descriptors until its open-files limit
// (a soft RLIMIT_NOFILE of 256) and keeps them; every request it accepts
// then fails with "too many open files" (fault app mode fdleak). Its 500s
// take it out of its Service's endpoints at once (VigilWorkloadHigh5xxRatio
// on evidence, reroute_readiness); VigilWorkloadFileDescriptorsExhausted
// (descriptors over 95 % of the limit for a minute) then replaces the pod,
// which is what clears the leak.
func fdleakScenario() scenario {
	return podFault("fdleak", false, "files", appOpts{replicas: 2, gate: true, env: map[string]string{"FAULTS_FDLIMIT": "256"}}, 20, "fdleak",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			err := poll(ctx, func() bool {
				p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
				return err != nil || p.DeletionTimestamp != nil
			})
			if err != nil {
				t.Errorf("fdleak: the leaking pod %s was not replaced", pod)
				return "leaking pod not replaced"
			}
			recs, _ := e.agent.actions(ctx)
			var did []string
			for _, r := range recs {
				if r.Target.Namespace == ns && r.taken() && r.Action != "webhook" {
					did = append(did, r.Action+" ("+r.Alert+")")
				}
			}
			return "rerouted, then replaced: " + strings.Join(did, ", ")
		})
}

// slowdep: web calls an external dependency (a server outside the cluster,
// here in the test process, as a managed database or a third-party API
// is) for every request; it starts answering after 3 s, later than the
// fault app's 2 s client timeout: web gives up on every call and answers
// 502. The agent counts each call slow once it waited http_slow_after
// (answered or not), so VigilWorkloadDependencySlow fires on evidence, on
// web with the dependency's address as destination, and web's own 5xx and
// latency alerts are held as explained by its dependency (before the
// sweep counted unanswered calls, at 1.5 s web's 5xx alert beat the
// dependency's, seen once). Nothing on the node can make the dependency
// faster, so the policy only escalates: the suite checks that the
// escalation came and that nothing was touched. (A slow dependency that is a Deployment of
// the cluster raises its own VigilWorkloadHighLatency, which the suite's
// saturation policy answers by scaling it: that is the saturation
// scenario's case.)
func slowdepScenario() scenario {
	type state struct {
		slow atomic.Bool
		srv  *httptest.Server
		load *load
	}
	return scenario{
		name: "slowdep", notify: true, app: "web",
		setup: func(t *testing.T, e *env, ns string) any {
			s := &state{}
			stop := make(chan struct{})
			s.srv = newServerOn(t, e.hostIP, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if s.slow.Load() {
					select {
					case <-time.After(3 * time.Second):
					case <-r.Context().Done():
					case <-stop:
					}
				}
				_, _ = io.WriteString(w, "ok\n")
			}))
			t.Cleanup(func() { close(stop); s.srv.Close() })
			e.c.deploy(t, ns, "web", appOpts{replicas: 1, call: s.srv.URL + "/"})
			s.load = startLoad(t, e.c, ns, "web", 10, 0)
			return s
		},
		inject: func(t *testing.T, e *env, ns string, st any) time.Time {
			st.(*state).slow.Store(true)
			return time.Now()
		},
		// Nothing in the cluster is at fault: any action is collateral.
		atFault: func(record, string, any) bool { return false },
		finish:  escalatedOnly("slowdep", "web untouched"),
		clear:   func(t *testing.T, e *env, ns string, st any) { st.(*state).slow.Store(false) },
	}
}

// escalatedOnly is the finish of a scenario whose only right action is an
// escalation: it watches 20 s more (any action in the namespace meanwhile
// is collateral when the scenario's records are read), then needs the
// escalation at the receiver; untouched is what the report says was left
// alone.
func escalatedOnly(name, untouched string) func(context.Context, *testing.T, *env, string, any, time.Time, *result) {
	return escalatedOnlyAbout(name, untouched, inNamespace)
}

// escalatedOnlyAbout is escalatedOnly for a scenario whose alerts are
// about (a scenario's about) rather than in its namespace.
func escalatedOnlyAbout(name, untouched string, about func(map[string]string, string, any) bool) func(context.Context, *testing.T, *env, string, any, time.Time, *result) {
	return func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result) {
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
		x, ok := waitEscalationAbout(ctx, e, func(l map[string]string) bool { return about(l, ns, st) })
		if !ok {
			t.Errorf("%s: no escalation reached the receiver", name)
			res.Healthy = "not escalated"
			return
		}
		res.Healthy = fmt.Sprintf("escalated after %s (%s); %s", x.At.Sub(t0).Round(100*time.Millisecond), x.Policy, untouched)
	}
}
