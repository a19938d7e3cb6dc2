//go:build linux

package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func init() { extraScenarios = append(extraScenarios, hungScenario, fdleakScenario, slowdepScenario) }

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

// slowdep: web calls db for every request; db starts answering after
// 1.5 s (fault app mode slow). Nothing on the node makes db faster, so the
// policy only escalates (VigilWorkloadDependencySlow on evidence, on web
// with db as its destination): the suite checks that the escalation came
// and that neither db nor web was touched, web's own latency alert being
// held as explained by its dependency.
func slowdepScenario() scenario {
	sc := dependencyScenario("slowdep", "slow", false)
	sc.notify = true
	sc.finish = func(ctx context.Context, t *testing.T, e *env, ns string, _ any, t0 time.Time, res *result) {
		// Watch 20 s more: any action in the namespace meanwhile is
		// counted as collateral when the scenario's records are read.
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Second):
		}
		x, ok := waitEscalation(ctx, e, ns)
		if !ok {
			t.Errorf("slowdep: no escalation reached the receiver")
			res.Healthy = "not escalated"
			return
		}
		res.Healthy = fmt.Sprintf("escalated after %s (%s); db and web untouched", x.At.Sub(t0).Round(100*time.Millisecond), x.Policy)
	}
	return sc
}
