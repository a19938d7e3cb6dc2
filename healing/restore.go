package healing

import (
	"context"
	"fmt"
	"time"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/vigil-agent/vigil/rules"
)

// restoreState is a scale with restore_after that the engine undoes once
// every alert that caused it has stayed resolved for the restore delay.
// It lives in memory: an agent restart forgets it.
type restoreState struct {
	target   Target
	policy   *Policy
	step     *Step
	alert    rules.Alert
	after    time.Duration
	original int32 // replicas before Vigil's first scale
	set      int32 // replicas Vigil's last scale set
	// firing says, per fingerprint of an alert that scaled the target,
	// whether it is firing now.
	firing  map[string]bool
	waiting bool
	cancel  chan struct{}
}

// scaleChange is filled in by the scale actuator (through the context)
// with the replicas it moved between.
type scaleChange struct{ from, to int32 }

type scaleChangeKey struct{}

// noteScale remembers a successful scale whose step has restore_after.
func (e *Engine) noteScale(inc *incident, s *Step, t Target, after time.Duration, ch scaleChange) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.restores[t]
	if st == nil {
		st = &restoreState{target: t, original: ch.from, firing: map[string]bool{}}
		e.restores[t] = st
	}
	st.policy, st.step, st.alert, st.after, st.set = inc.policy, s, inc.alert, after, ch.to
	st.firing[inc.alert.Fingerprint] = !inc.isResolved()
	st.stopWait()
	e.armLocked(st)
}

// restoreFiringLocked: an alert that scaled a target fires again, so its
// restore waits until it resolves again.
func (e *Engine) restoreFiringLocked(fp string) {
	for _, st := range e.restores {
		if _, ok := st.firing[fp]; ok {
			st.firing[fp] = true
			st.stopWait()
		}
	}
}

// restoreResolvedLocked: an alert that scaled a target resolved; when it
// was the last one firing, the restore delay starts.
func (e *Engine) restoreResolvedLocked(fp string) {
	for _, st := range e.restores {
		if _, ok := st.firing[fp]; ok {
			st.firing[fp] = false
			e.armLocked(st)
		}
	}
}

func (st *restoreState) stopWait() {
	if st.waiting {
		close(st.cancel)
		st.waiting = false
	}
}

// armLocked starts the restore delay if no alert of st fires.
func (e *Engine) armLocked(st *restoreState) {
	for _, f := range st.firing {
		if f {
			return
		}
	}
	if st.waiting || e.ctx == nil || e.ctx.Err() != nil {
		return
	}
	st.waiting, st.cancel = true, make(chan struct{})
	cancel := st.cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		timer := time.NewTimer(st.after)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-cancel:
			return
		case <-e.ctx.Done():
			return
		}
		e.mu.Lock()
		select {
		case <-cancel:
			e.mu.Unlock()
			return
		default:
		}
		st.waiting = false
		delete(e.restores, st.target)
		e.mu.Unlock()
		e.restore(st)
	}()
}

// restore scales the target back through the guards, audited as its own
// record (action scale, reason "restore: …") in a new incident.
func (e *Engine) restore(st *restoreState) {
	inc := &incident{id: newIncidentID(), alert: st.alert, policy: st.policy, resolved: make(chan struct{}), restore: true}
	step := &Step{Index: st.step.Index, Action: restoreScale{t: st.target, expect: st.set, to: st.original, after: st.after}}
	e.attempt(e.ctx, inc, step, e.guards, "")
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

func (r restoreScale) Act(ctx context.Context, env *Env, _ Args) (string, error) {
	ns, name := r.t.Namespace, r.t.Name
	get := func(ctx context.Context) (*autoscalingv1.Scale, error) {
		if r.t.Kind == "StatefulSet" {
			return env.Kube.AppsV1().StatefulSets(ns).GetScale(ctx, name, metav1.GetOptions{})
		}
		return env.Kube.AppsV1().Deployments(ns).GetScale(ctx, name, metav1.GetOptions{})
	}
	update := func(ctx context.Context, s *autoscalingv1.Scale) (*autoscalingv1.Scale, error) {
		if r.t.Kind == "StatefulSet" {
			return env.Kube.AppsV1().StatefulSets(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
		}
		return env.Kube.AppsV1().Deployments(ns).UpdateScale(ctx, name, s, metav1.UpdateOptions{})
	}
	var cur int32
	err := env.kubeDo(ctx, "scale", func(ctx context.Context) error {
		return retry.RetryOnConflict(retry.DefaultRetry, func() error {
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
		return "", err
	}
	if cur != r.expect {
		return "", fmt.Errorf("not restored: %s has %d replicas, not the %d Vigil set (changed by someone else)", r.t, cur, r.expect)
	}
	return fmt.Sprintf("scaled %s from %d back to %d replicas, what it had before Vigil scaled it (its alerts stayed resolved for %s)",
		r.t, r.expect, r.to, r.after), nil
}
