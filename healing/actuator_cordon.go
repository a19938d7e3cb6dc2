package healing

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/types"
)

// cordon marks a node unschedulable.
type cordon struct{}

func init() { Register(cordon{}) }

func (cordon) Name() string { return "cordon" }
func (cordon) Scope() Scope { return ScopeCluster }
func (cordon) Doc() string {
	return "`spec.unschedulable=true`"
}
func (cordon) Params() []Param      { return []Param{paramNode, paramNodes} }
func (cordon) Target(a Args) Target { return Target{Kind: "Node", Name: a.Str("node")} }

// AllowList bounds node by nodes.
func (cordon) AllowList() (string, string) { return "node", "nodes" }

func (cordon) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	if err := cordonNode(ctx, env, a.Str("node")); err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: fmt.Sprintf("cordoned node %s", a.Str("node"))}, nil
}

func cordonNode(ctx context.Context, env *Env, node string) error {
	return env.kubeDo(ctx, "cordon node", func(ctx context.Context) error {
		_, err := env.Kube.Nodes().Patch(ctx, node, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":true}}`), patchOpts)
		return err
	})
}
