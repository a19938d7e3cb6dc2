package healing

import (
	"context"
	"fmt"
)

// systemdResetFailed clears a unit's failed state (and its start rate
// limit) so it can be started again.
type systemdResetFailed struct{}

func init() { Register(systemdResetFailed{}) }

func (systemdResetFailed) Name() string { return "systemd_reset_failed" }
func (systemdResetFailed) Scope() Scope { return ScopeNode }
func (systemdResetFailed) Doc() string {
	return "`ResetFailedUnit`"
}
func (systemdResetFailed) Params() []Param      { return []Param{paramUnit, paramUnits, paramTimeout} }
func (systemdResetFailed) Target(a Args) Target { return Target{Kind: "Unit", Name: a.Str("unit")} }

// AllowList bounds unit by units.
func (systemdResetFailed) AllowList() (string, string) { return "unit", "units" }

func (systemdResetFailed) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	unit := a.Str("unit")
	if env.Systemd == nil {
		return Outcome{}, fmt.Errorf("systemd is not available on this agent")
	}
	ctx, cancel := context.WithTimeout(ctx, a.Duration("timeout"))
	defer cancel()
	c, err := env.Systemd(ctx)
	if err != nil {
		return Outcome{}, fmt.Errorf("connect to systemd: %w", err)
	}
	defer c.Close()
	if err := c.ResetFailedUnitContext(ctx, unit); err != nil {
		return Outcome{}, fmt.Errorf("reset-failed %s: %w", unit, err)
	}
	return Outcome{Message: fmt.Sprintf("reset the failed state of unit %s", unit)}, nil
}
