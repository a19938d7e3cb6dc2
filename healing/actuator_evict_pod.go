package healing

import (
	"context"
	"fmt"

	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// evictPod evicts a pod on this node through the Eviction API, so the
// API server refuses it when a PodDisruptionBudget would be broken.
type evictPod struct{}

func init() { Register(evictPod{}) }

func (evictPod) Name() string { return "evict_pod" }
func (evictPod) Scope() Scope { return ScopeNode }
func (evictPod) Doc() string {
	return "Eviction API: refused (failed record) when a PodDisruptionBudget would break"
}
func (evictPod) Params() []Param {
	return []Param{paramNamespace, paramPod,
		{Name: "grace_period", Check: checkInt(0), Doc: "termination grace period in seconds (default: the pod's own)"}}
}
func (evictPod) Target(a Args) Target {
	return Target{Kind: "Pod", Namespace: a.Str("namespace"), Name: a.Str("pod")}
}
func (evictPod) DisruptsPod() bool { return true }

func (evictPod) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, name := a.Str("namespace"), a.Str("pod")
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	if a.Str("grace_period") != "" {
		g := int64(a.Int("grace_period"))
		ev.DeleteOptions = &metav1.DeleteOptions{GracePeriodSeconds: &g}
	}
	gone := false
	err := env.kubeDo(ctx, "evict pod", func(ctx context.Context) error { return evict(ctx, env, ev, &gone) })
	if err != nil {
		return Outcome{}, err
	}
	if gone {
		return Outcome{Message: fmt.Sprintf("pod %s/%s was already gone", ns, name), Unchanged: true}, nil
	}
	return Outcome{Message: fmt.Sprintf("evicted pod %s/%s", ns, name)}, nil
}

// errPDB is an eviction the API server refused to protect a
// PodDisruptionBudget; it is not retried as a transient error.
type errPDB struct{ err error }

func (e errPDB) Error() string {
	return "eviction refused to honour a PodDisruptionBudget: " + e.err.Error()
}

func evict(ctx context.Context, env *Env, ev *policyv1.Eviction, gone *bool) error {
	err := env.Kube.Evict(ctx, ev)
	switch {
	case apierrors.IsNotFound(err):
		*gone = true
		return nil
	case apierrors.IsTooManyRequests(err):
		return errPDB{err}
	}
	return err
}
