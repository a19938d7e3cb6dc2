package healing

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// deletePod deletes a pod on this node; its controller starts a new one.
// It bypasses PodDisruptionBudgets: use evict_pod to honour them.
type deletePod struct{}

func init() { Register(deletePod{}) }

func (deletePod) Name() string { return "delete_pod" }
func (deletePod) Scope() Scope { return ScopeNode }
func (deletePod) Doc() string {
	return "deletes the pod (bypasses PDBs; prefer `evict_pod`)"
}
func (deletePod) Params() []Param {
	return []Param{paramNamespace, paramPod,
		{Name: "grace_period", Check: checkInt(0), Doc: "termination grace period in seconds (default: the pod's own)"}}
}
func (deletePod) Target(a Args) Target {
	return Target{Kind: "Pod", Namespace: a.Str("namespace"), Name: a.Str("pod")}
}
func (deletePod) DisruptsPod() bool { return true }

func (deletePod) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, name := a.Str("namespace"), a.Str("pod")
	opts := metav1.DeleteOptions{}
	if a.Str("grace_period") != "" {
		g := int64(a.Int("grace_period"))
		opts.GracePeriodSeconds = &g
	}
	gone := false
	err := env.kubeDo(ctx, "delete pod", func(ctx context.Context) error {
		err := env.Kube.Pods(ns).Delete(ctx, name, opts)
		if apierrors.IsNotFound(err) {
			gone = true
			return nil
		}
		return err
	})
	if err != nil {
		return Outcome{}, err
	}
	if gone {
		return Outcome{Message: fmt.Sprintf("pod %s/%s was already gone", ns, name), Unchanged: true}, nil
	}
	return Outcome{Message: fmt.Sprintf("deleted pod %s/%s", ns, name)}, nil
}
