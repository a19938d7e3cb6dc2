package healing

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
)

// QuarantineLabel marks a pod Vigil relabelled out of its owner's
// selector; QuarantineAnnotation keeps the labels it removed.
const (
	QuarantineLabel      = "vigil.dev/quarantined"
	QuarantineAnnotation = "vigil.dev/quarantined-labels"
)

// quarantine relabels a pod on this node out of its owner's selector: the
// owner releases it and starts a replacement, Services that select by the
// same labels drop it, and the pod keeps running for debugging.
type quarantine struct{}

func init() { Register(quarantine{}) }

func (quarantine) Name() string { return "quarantine" }
func (quarantine) Scope() Scope { return ScopeNode }
func (quarantine) Doc() string {
	return "removes the owner's selector labels (kept in `vigil.dev/quarantined-labels`), adds `vigil.dev/quarantined=true`: the owner starts a replacement, the pod stays"
}
func (quarantine) Params() []Param { return []Param{paramNamespace, paramPod} }
func (quarantine) Target(a Args) Target {
	return Target{Kind: "Pod", Namespace: a.Str("namespace"), Name: a.Str("pod")}
}
func (quarantine) DisruptsPod() bool { return true }

func (quarantine) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, name := a.Str("namespace"), a.Str("pod")
	var removed []string
	err := env.kubeDo(ctx, "quarantine pod", func(ctx context.Context) error {
		return retry.RetryOnConflict(conflictBackoff, func() error {
			pods := env.Kube.Pods(ns)
			pod, err := pods.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if pod.Labels[QuarantineLabel] != "" {
				removed = nil
				return nil
			}
			sel, err := env.ownerSelector(ctx, pod)
			if err != nil {
				return permanent(err)
			}
			keys := map[string]bool{}
			for k := range sel.MatchLabels {
				keys[k] = true
			}
			for _, e := range sel.MatchExpressions {
				if e.Operator == metav1.LabelSelectorOpIn || e.Operator == metav1.LabelSelectorOpExists {
					keys[e.Key] = true
				}
			}
			old := map[string]string{}
			removed = removed[:0]
			for k := range keys {
				if v, ok := pod.Labels[k]; ok {
					old[k] = v
					removed = append(removed, k)
					delete(pod.Labels, k)
				}
			}
			if len(removed) == 0 {
				return permanent(fmt.Errorf("pod %s/%s carries none of its owner's selector labels", ns, name))
			}
			if pod.Labels == nil {
				pod.Labels = map[string]string{}
			}
			pod.Labels[QuarantineLabel] = "true"
			if pod.Annotations == nil {
				pod.Annotations = map[string]string{}
			}
			b, _ := json.Marshal(old)
			pod.Annotations[QuarantineAnnotation] = string(b)
			_, err = pods.Update(ctx, pod, metav1.UpdateOptions{FieldManager: "vigil"})
			return err
		})
	})
	if err != nil {
		return Outcome{}, err
	}
	if removed == nil {
		return Outcome{Message: fmt.Sprintf("pod %s/%s was already quarantined", ns, name), Unchanged: true}, nil
	}
	sort.Strings(removed)
	return Outcome{Message: fmt.Sprintf("pod %s/%s relabelled out of its owner's selector (removed %s); a replacement starts", ns, name, strings.Join(removed, ", "))}, nil
}
