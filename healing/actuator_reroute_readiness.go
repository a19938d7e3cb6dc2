package healing

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// rerouteReadiness takes a pod on this node out of its Services'
// endpoints while it keeps running (for debugging): it sets the readiness
// gate condition Vigil owns (healing.kubernetes.readiness_condition,
// vigil.dev/healthy by default) to False through the pod's status
// subresource. The pod must list that condition in spec.readinessGates;
// the kubelet then keeps the pod's Ready condition False. The action also
// writes Ready=False itself, the value the kubelet computes from the
// gate, so endpoints drop the pod without waiting for the kubelet's next
// status sync. Setting status "True" puts the gate back; the kubelet then
// recomputes Ready.
type rerouteReadiness struct{}

func init() { Register(rerouteReadiness{}) }

func (rerouteReadiness) Name() string { return "reroute_readiness" }
func (rerouteReadiness) Scope() Scope { return ScopeNode }
func (rerouteReadiness) Doc() string {
	return "sets the readiness-gate condition (default `vigil.dev/healthy`) through `pods/status`: the pod leaves its Services' endpoints and keeps running for debugging"
}
func (rerouteReadiness) Params() []Param {
	return []Param{paramNamespace, paramPod,
		{Name: "status", Default: "False", Check: checkOneOf("False", "True"), Doc: "False takes the pod out of endpoints; True gives the gate back"},
		{Name: "reason", Default: "VigilRerouted", Check: checkNotEmpty, Doc: "condition reason"}}
}
func (rerouteReadiness) Target(a Args) Target {
	return Target{Kind: "Pod", Namespace: a.Str("namespace"), Name: a.Str("pod")}
}
func (r rerouteReadiness) DisruptsPod() bool { return true }

func (rerouteReadiness) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, name := a.Str("namespace"), a.Str("pod")
	cond := corev1.PodConditionType(env.ReadinessCondition)
	status := corev1.ConditionStatus(a.Str("status"))
	err := env.kubeDo(ctx, "set readiness gate", func(ctx context.Context) error {
		return retry.RetryOnConflict(conflictBackoff, func() error {
			pods := env.Kube.Pods(ns)
			pod, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			gated := false
			for _, g := range pod.Spec.ReadinessGates {
				gated = gated || g.ConditionType == cond
			}
			if !gated {
				return permanent(fmt.Errorf("pod %s/%s does not list readiness gate %q in spec.readinessGates; the kubelet would ignore the condition", ns, name, cond))
			}
			now := metav1.Now()
			setCondition(pod, corev1.PodCondition{Type: cond, Status: status, Reason: a.Str("reason"),
				Message: "set by Vigil (" + env.Identity + ")", LastTransitionTime: now, LastProbeTime: now})
			if status == corev1.ConditionFalse {
				setCondition(pod, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse,
					Reason: "ReadinessGatesNotReady", Message: fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but False", cond), LastTransitionTime: now})
			}
			_, err = pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{FieldManager: "vigil"})
			return err
		})
	})
	if err != nil {
		return Outcome{}, err
	}
	if status == corev1.ConditionFalse {
		return Outcome{Message: fmt.Sprintf("pod %s/%s marked not ready through %s=False; it keeps running outside its endpoints", ns, name, cond)}, nil
	}
	return Outcome{Message: fmt.Sprintf("pod %s/%s readiness gate %s set to True", ns, name, cond)}, nil
}

func setCondition(pod *corev1.Pod, c corev1.PodCondition) {
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == c.Type {
			if pod.Status.Conditions[i].Status == c.Status {
				c.LastTransitionTime = pod.Status.Conditions[i].LastTransitionTime
			}
			pod.Status.Conditions[i] = c
			return
		}
	}
	pod.Status.Conditions = append(pod.Status.Conditions, c)
}
