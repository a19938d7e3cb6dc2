package healing

import (
	"context"
	"fmt"
)

// haproxyState sets a server's administrative state through HAProxy's
// runtime API: drain (no new connections), maint (out of the backend) or
// ready (back in). It reroutes traffic on a plain host.
type haproxyState struct{}

func init() { Register(haproxyState{}) }

func (haproxyState) Name() string { return "haproxy_state" }
func (haproxyState) Scope() Scope { return ScopeNode }
func (haproxyState) Doc() string {
	return "runtime API `set server B/S state …` (reroute on a plain host)"
}
func (haproxyState) Params() []Param {
	return append(append([]Param(nil), haproxyParams...),
		Param{Name: "state", Required: true, Check: checkOneOf("drain", "maint", "ready"), Doc: "drain, maint or ready"})
}
func (haproxyState) Target(a Args) Target { return haproxyTarget(a) }

func (haproxyState) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	srv := a.Str("backend") + "/" + a.Str("server")
	out, err := haproxyCommand(ctx, a.Str("socket"), "set server "+srv+" state "+a.Str("state"))
	if err != nil {
		return Outcome{}, err
	}
	if out != "" {
		return Outcome{}, fmt.Errorf("haproxy refused to set %s to %s: %s", srv, a.Str("state"), out)
	}
	return Outcome{Message: fmt.Sprintf("haproxy server %s set to %s", srv, a.Str("state"))}, nil
}
