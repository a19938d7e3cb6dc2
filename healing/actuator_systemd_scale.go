package healing

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
)

// systemdScale scales a template unit (worker@.service) by starting or
// stopping numbered instances (worker@1.service, worker@2.service, …)
// within [min, max]: a step up starts the lowest free numbers, a step down
// stops the highest running ones.
type systemdScale struct{}

func init() { Register(systemdScale{}) }

func (systemdScale) Name() string { return "systemd_scale" }
func (systemdScale) Scope() Scope { return ScopeNode }
func (systemdScale) Doc() string {
	return "starts the lowest free numbered instances / stops the highest"
}
func (systemdScale) Params() []Param {
	return []Param{
		{Name: "template", Required: true, Check: checkTemplateUnit, Doc: "template unit, e.g. worker@.service"},
		{Name: "step", Default: "1", Check: checkSignedInt, Doc: "instances to add (negative to remove)"},
		{Name: "min", Default: "1", Check: checkInt(0), Doc: "fewest instances"},
		{Name: "max", Required: true, Check: checkInt(1), Doc: "most instances"},
		{Name: "units", List: true, Fixed: true, Check: checkGlob, Doc: "globs of the template units this policy may scale; required when the template is a template"},
		paramTimeout,
	}
}
func (systemdScale) Target(a Args) Target { return Target{Kind: "Unit", Name: a.Str("template")} }

// AllowList bounds template by units.
func (systemdScale) AllowList() (string, string) { return "template", "units" }

func checkTemplateUnit(s string) error {
	if err := checkUnit(s); err != nil {
		return err
	}
	if !strings.Contains(s, "@.") {
		return fmt.Errorf("not a template unit (name@.type): %q", s)
	}
	return nil
}

func (systemdScale) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	tmpl := a.Str("template")
	prefix, suffix, _ := strings.Cut(tmpl, "@")
	step, lo, hi := a.Int("step"), a.Int("min"), a.Int("max")
	if env.Systemd == nil {
		return Outcome{}, fmt.Errorf("systemd is not available on this agent")
	}
	c, err := env.Systemd(ctx)
	if err != nil {
		return Outcome{}, fmt.Errorf("connect to systemd: %w", err)
	}
	units, err := c.ListUnitsByPatternsContext(ctx, []string{"active", "activating", "reloading"}, []string{prefix + "@*" + suffix})
	c.Close()
	if err != nil {
		return Outcome{}, fmt.Errorf("list instances of %s: %w", tmpl, err)
	}
	running := map[int]bool{}
	for _, u := range units {
		inst := strings.TrimSuffix(strings.TrimPrefix(u.Name, prefix+"@"), suffix)
		if n, err := strconv.Atoi(inst); err == nil {
			running[n] = true
		}
	}
	from := len(running)
	var names []string
	switch {
	case step > 0:
		to := min(from+step, hi)
		for n := 1; len(running) < to; n++ {
			if !running[n] {
				running[n] = true
				names = append(names, fmt.Sprintf("%s@%d%s", prefix, n, suffix))
			}
		}
	case step < 0:
		to := max(from+step, lo)
		nums := make([]int, 0, len(running))
		for n := range running {
			nums = append(nums, n)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(nums)))
		for _, n := range nums[:max(from-to, 0)] {
			delete(running, n)
			names = append(names, fmt.Sprintf("%s@%d%s", prefix, n, suffix))
		}
	}
	if len(names) == 0 {
		return Outcome{}, fmt.Errorf("%s has %d instances, the bound of [%d, %d] for step %d; not scaled", tmpl, from, lo, hi, step)
	}
	for _, name := range names {
		err := systemdJob(ctx, env, a.Duration("timeout"), "scale "+name, func(ctx context.Context, c *sdbus.Conn, ch chan<- string) (int, error) {
			if step > 0 {
				return c.StartUnitContext(ctx, name, "replace", ch)
			}
			return c.StopUnitContext(ctx, name, "replace", ch)
		})
		if err != nil {
			return Outcome{}, err
		}
	}
	verb := "started"
	if step < 0 {
		verb = "stopped"
	}
	return Outcome{Message: fmt.Sprintf("scaled %s from %d to %d instances (%s %s)", tmpl, from, len(running), verb, strings.Join(names, ", "))}, nil
}
