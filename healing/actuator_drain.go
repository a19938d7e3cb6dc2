package healing

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
)

// drain cordons a node and evicts its pods through the Eviction API (so
// PodDisruptionBudgets are honoured), skipping DaemonSet and mirror pods,
// then waits for them to go. Evictions a budget refuses are tried again
// until the timeout; then the action fails, naming the pods left.
type drain struct{}

func init() { Register(drain{}) }

func (drain) Name() string { return "drain" }
func (drain) Scope() Scope { return ScopeCluster }
func (drain) Doc() string {
	return "cordon, then evict every pod except DaemonSet, mirror and finished ones; retries PDB refusals until the timeout, then fails naming the pods left"
}
func (drain) Params() []Param {
	return []Param{paramNode, paramNodes,
		{Name: "timeout", Default: "5m", Check: checkDuration, Doc: "how long to keep evicting and waiting"},
		{Name: "grace_period", Check: checkInt(0), Doc: "termination grace period in seconds (default: each pod's own)"}}
}
func (drain) Target(a Args) Target { return Target{Kind: "Node", Name: a.Str("node")} }

// AllowList bounds node by nodes.
func (drain) AllowList() (string, string) { return "node", "nodes" }

func (drain) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	node := a.Str("node")
	if err := cordonNode(ctx, env, node); err != nil {
		return Outcome{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.Duration("timeout"))
	defer cancel()
	var opts *metav1.DeleteOptions
	if a.Str("grace_period") != "" {
		g := int64(a.Int("grace_period"))
		opts = &metav1.DeleteOptions{GracePeriodSeconds: &g}
	}
	evicted := map[string]bool{}
	var lastRefusal error
	for {
		var list *corev1.PodList
		err := env.kubeDo(ctx, "list pods on node", func(ctx context.Context) (err error) {
			list, err = env.Kube.Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
				FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
			return err
		})
		if err != nil {
			return Outcome{}, err
		}
		var left []string
		for i := range list.Items {
			p := &list.Items[i]
			if skipDrain(p) {
				continue
			}
			key := p.Namespace + "/" + p.Name
			left = append(left, key)
			if evicted[key] {
				continue
			}
			ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Name}, DeleteOptions: opts}
			gone := false
			err := env.kubeDo(ctx, "evict pod "+key, func(ctx context.Context) error { return evict(ctx, env, ev, &gone) })
			switch {
			case err == nil:
				evicted[key] = true
			case isPDB(err):
				lastRefusal = err
			default:
				return Outcome{}, err
			}
		}
		if len(left) == 0 {
			return Outcome{Message: fmt.Sprintf("drained node %s: evicted %d pods", node, len(evicted))}, nil
		}
		select {
		case <-ctx.Done():
			sort.Strings(left)
			msg := fmt.Sprintf("drain of node %s timed out with %d pods left: %s", node, len(left), strings.Join(left, ", "))
			if lastRefusal != nil {
				msg += "; last refusal: " + lastRefusal.Error()
			}
			return Outcome{}, fmt.Errorf("%s", msg)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func isPDB(err error) bool {
	return err != nil && strings.Contains(err.Error(), "PodDisruptionBudget")
}

// skipDrain reports pods a drain leaves: DaemonSet pods (their controller
// ignores unschedulable), mirror pods and finished pods.
func skipDrain(p *corev1.Pod) bool {
	if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return true
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return true
	}
	if ref := metav1.GetControllerOf(p); ref != nil && ref.Kind == "DaemonSet" {
		return true
	}
	return false
}
