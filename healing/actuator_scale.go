package healing

import (
	"context"
	"fmt"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// scale changes a Deployment's or StatefulSet's replicas by step through
// the scale subresource, never beyond [min, max]. A workload already at
// the bound is not changed and the action fails, so the runbook goes on
// to its next step.
type scale struct{}

func init() { Register(scale{}) }

func (scale) Name() string { return "scale" }
func (scale) Scope() Scope { return ScopeCluster }
func (scale) Doc() string {
	return "scale subresource with optimistic concurrency; moves only in the step's direction and stops at the bound (at the bound: failed, so the next step runs). With `restore_after`, see below"
}
func (scale) Params() []Param {
	return []Param{paramNamespace,
		{Name: "kind", Default: "Deployment", Check: checkOneOf("Deployment", "StatefulSet"), Doc: "Deployment or StatefulSet"},
		paramName,
		{Name: "step", Default: "1", Check: checkSignedInt, Doc: "replicas to add (negative to remove)"},
		{Name: "min", Default: "1", Check: checkInt(0), Doc: "lowest replica count"},
		{Name: "max", Required: true, Check: checkInt(1), Doc: "highest replica count"},
		{Name: "restore_after", Check: checkDuration, Doc: "scale back to the previous replicas once the alert stayed resolved this long"},
	}
}
func (scale) Target(a Args) Target {
	return Target{Kind: a.Str("kind"), Namespace: a.Str("namespace"), Name: a.Str("name")}
}

func (scale) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, kind, name := a.Str("namespace"), a.Str("kind"), a.Str("name")
	step, lo, hi := a.Int("step"), a.Int("min"), a.Int("max")
	if lo > hi {
		return Outcome{}, fmt.Errorf("min %d is above max %d", lo, hi)
	}
	get := func(ctx context.Context) (*autoscalingv1.Scale, error) {
		if kind == "StatefulSet" {
			return env.Kube.StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
		}
		return env.Kube.Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	}
	update := func(ctx context.Context, s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
		if kind == "StatefulSet" {
			return env.Kube.StatefulSets(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		}
		return env.Kube.Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	}
	var from, to int32
	scaleOnce := func(ctx context.Context) error {
		s, err := get(ctx)
		if err != nil {
			return err
		}
		from = s.Spec.Replicas
		to = from + int32(step)
		// Move only in the step's direction and stop at the bound: a
		// workload above max is not scaled down by a step up.
		if step >= 0 {
			to = min(to, int32(hi))
		} else {
			to = max(to, int32(lo))
		}
		if (step >= 0 && to <= from) || (step < 0 && to >= from) {
			to = from
			return nil
		}
		s.Spec.Replicas = to
		// The resourceVersion read above makes a concurrent change a
		// conflict instead of a lost update.
		_, err = update(ctx, s)
		return err
	}
	err := env.kubeDo(ctx, "scale", func(ctx context.Context) error {
		// A conflict (the controller wrote the object since the read) is
		// retried from a fresh read, a few times.
		return retry.RetryOnConflict(conflictBackoff, func() error { return scaleOnce(ctx) })
	})
	if err != nil {
		return Outcome{}, err
	}
	if to == from {
		return Outcome{}, fmt.Errorf("%s %s/%s is at %d replicas, the bound of [%d, %d] for step %d; not scaled", kind, ns, name, from, lo, hi, step)
	}
	t := Target{Kind: kind, Namespace: ns, Name: name}
	return Outcome{
		Message: fmt.Sprintf("scaled %s %s/%s from %d to %d replicas (bounds %d–%d)", kind, ns, name, from, to, lo, hi),
		Restore: &Restore{Before: from, After: to, Undo: func(before, after any, resolvedFor time.Duration) Actuator {
			return restoreScale{t: t, expect: after.(int32), to: before.(int32), after: resolvedFor}
		}},
	}, nil
}

// restoreScale sets a workload back to the replicas it had before Vigil
// scaled it, only if it still has the replicas Vigil set.
type restoreScale struct {
	t      Target
	expect int32
	to     int32
	after  time.Duration
}

func (restoreScale) Name() string    { return "scale" }
func (restoreScale) Scope() Scope    { return ScopeCluster }
func (restoreScale) Params() []Param { return nil }
func (restoreScale) Doc() string {
	return "scales a workload back after restore_after (not registered)"
}
func (r restoreScale) Target(Args) Target { return r.t }

func (r restoreScale) Act(ctx context.Context, env *Env, _ Request) (Outcome, error) {
	ns, name := r.t.Namespace, r.t.Name
	get := func(ctx context.Context) (*autoscalingv1.Scale, error) {
		if r.t.Kind == "StatefulSet" {
			return env.Kube.StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
		}
		return env.Kube.Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	}
	update := func(ctx context.Context, s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
		if r.t.Kind == "StatefulSet" {
			return env.Kube.StatefulSets(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		}
		return env.Kube.Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	}
	var cur int32
	err := env.kubeDo(ctx, "scale", func(ctx context.Context) error {
		return retry.RetryOnConflict(conflictBackoff, func() error {
			s, err := get(ctx)
			if err != nil {
				return err
			}
			cur = s.Spec.Replicas
			if cur != r.expect {
				return nil
			}
			s.Spec.Replicas = r.to
			_, err = update(ctx, s)
			return err
		})
	})
	if err != nil {
		return Outcome{}, err
	}
	if cur != r.expect {
		return Outcome{}, fmt.Errorf("not restored: %s has %d replicas, not the %d Vigil set (changed by someone else)", r.t, cur, r.expect)
	}
	return Outcome{Message: fmt.Sprintf("scaled %s from %d back to %d replicas, what it had before Vigil scaled it (its alerts stayed resolved for %s)",
		r.t, r.expect, r.to, r.after)}, nil
}
