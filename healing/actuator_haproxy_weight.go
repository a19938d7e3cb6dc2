package healing

import (
	"context"
	"fmt"
)

// haproxyWeight sets a server's weight through HAProxy's runtime API
// (an absolute weight 0–256, or a percentage of its configured weight
// such as "50%").
type haproxyWeight struct{}

func init() { Register(haproxyWeight{}) }

func (haproxyWeight) Name() string { return "haproxy_weight" }
func (haproxyWeight) Scope() Scope { return ScopeNode }
func (haproxyWeight) Doc() string {
	return "runtime API `set weight`"
}
func (haproxyWeight) Params() []Param {
	return append(append([]Param(nil), haproxyParams...),
		Param{Name: "weight", Required: true, Check: checkWeight, Doc: "0–256, or a percentage such as 50%"})
}
func (haproxyWeight) Target(a Args) Target { return haproxyTarget(a) }

func checkWeight(s string) error {
	n := s
	pct := len(s) > 0 && s[len(s)-1] == '%'
	if pct {
		n = s[:len(s)-1]
	}
	if err := checkInt(0)(n); err != nil {
		return err
	}
	if v := (Args{"w": {n}}).Int("w"); (pct && v > 100) || (!pct && v > 256) {
		return fmt.Errorf("weight out of range: %s", s)
	}
	return nil
}

func (haproxyWeight) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	srv := a.Str("backend") + "/" + a.Str("server")
	out, err := haproxyCommand(ctx, a.Str("socket"), "set weight "+srv+" "+a.Str("weight"))
	if err != nil {
		return Outcome{}, err
	}
	if out != "" {
		return Outcome{}, fmt.Errorf("haproxy refused to set the weight of %s: %s", srv, out)
	}
	return Outcome{Message: fmt.Sprintf("haproxy server %s weight set to %s", srv, a.Str("weight"))}, nil
}
