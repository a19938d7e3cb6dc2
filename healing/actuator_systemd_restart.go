package healing

import (
	"context"
	"fmt"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// systemdRestart restarts a local systemd unit over D-Bus
// (org.freedesktop.systemd1.Manager.RestartUnit) and waits for the job.
type systemdRestart struct{}

func init() { Register(systemdRestart{}) }

func (systemdRestart) Name() string { return "systemd_restart" }
func (systemdRestart) Scope() Scope { return ScopeNode }
func (systemdRestart) Doc() string {
	return "`RestartUnit` over D-Bus, waits for the job (`done` or a failed record)"
}
func (systemdRestart) Params() []Param {
	return []Param{paramUnit, paramUnits, paramMode, paramTimeout}
}
func (systemdRestart) Target(a Args) Target { return Target{Kind: "Unit", Name: a.Str("unit")} }

// AllowList bounds unit by units.
func (systemdRestart) AllowList() (string, string) { return "unit", "units" }

func (systemdRestart) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	unit := a.Str("unit")
	err := systemdJob(ctx, env, a.Duration("timeout"), "restart "+unit, func(ctx context.Context, c *sdbus.Conn, ch chan<- string) (int, error) {
		return c.RestartUnitContext(ctx, unit, a.Str("mode"), ch)
	})
	if err != nil {
		return Outcome{}, err
	}
	return Outcome{Message: fmt.Sprintf("restarted unit %s", unit)}, nil
}
