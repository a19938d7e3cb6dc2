package healing

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// RestartedAtAnnotation is the pod-template annotation a rollout restart
// sets, the same one `kubectl rollout restart` uses, so the workload's
// controller replaces its pods under its own update strategy.
const RestartedAtAnnotation = "kubectl.kubernetes.io/restartedAt"

// rolloutRestart restarts a Deployment, StatefulSet or DaemonSet.
type rolloutRestart struct{}

func init() { Register(rolloutRestart{}) }

func (rolloutRestart) Name() string { return "rollout_restart" }
func (rolloutRestart) Scope() Scope { return ScopeCluster }
func (rolloutRestart) Doc() string {
	return "sets `kubectl.kubernetes.io/restartedAt` on the pod template"
}
func (rolloutRestart) Params() []Param { return []Param{paramNamespace, paramKind, paramName} }
func (rolloutRestart) Target(a Args) Target {
	return Target{Kind: a.Str("kind"), Namespace: a.Str("namespace"), Name: a.Str("name")}
}

func (rolloutRestart) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	ns, kind, name := a.Str("namespace"), a.Str("kind"), a.Str("name")
	now := time.Now().UTC().Format(time.RFC3339)
	patch := []byte(fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{%q:%q}}}}}`, RestartedAtAnnotation, now))
	err := env.kubeDo(ctx, "rollout restart", func(ctx context.Context) error {
		apps := env.Kube
		var err error
		switch kind {
		case "Deployment":
			_, err = apps.Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, patchOpts)
		case "StatefulSet":
			_, err = apps.StatefulSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, patchOpts)
		case "DaemonSet":
			_, err = apps.DaemonSets(ns).Patch(ctx, name, types.StrategicMergePatchType, patch, patchOpts)
		default:
			err = fmt.Errorf("cannot restart a %s", kind)
		}
		return err
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: fmt.Sprintf("restarted %s %s/%s (restartedAt %s)", kind, ns, name, now)}, nil
}

var patchOpts = metav1.PatchOptions{FieldManager: "vigil"}
