package healing

import (
	"fmt"
	"path"
	"strings"
)

// allowListed is an actuator whose target one parameter names (a systemd
// unit, a node) and another parameter bounds: a list of globs the policy
// writes out. When the target is a template over the alert's labels the
// list is required at load, and the allow_list guard vetoes a rendered
// target outside it, so labels cannot steer the action to any unit
// (reboot.target) or any node.
type allowListed interface {
	// AllowList names the target parameter and the allow-list parameter.
	AllowList() (target, list string)
}

// Allow-list parameters: fixed lists of globs (path.Match: *, ?, [a-z]).
var (
	paramUnits = Param{Name: "units", List: true, Fixed: true, Check: checkGlob,
		Doc: "globs of the units this policy may act on (e.g. app-*.service); required when the unit is a template"}
	paramNodes = Param{Name: "nodes", List: true, Fixed: true, Check: checkGlob,
		Doc: "globs of the nodes this policy may act on (e.g. worker-*); required when the node is a template"}
)

// checkGlob accepts a non-empty path.Match pattern.
func checkGlob(s string) error {
	if err := checkNotEmpty(s); err != nil {
		return err
	}
	if _, err := path.Match(s, ""); err != nil {
		return fmt.Errorf("not a glob: %q: %v", s, err)
	}
	return nil
}

// allowedBy reports whether v matches one of the globs.
func allowedBy(globs []string, v string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, v); err == nil && ok {
			return true
		}
	}
	return false
}

// guardAllowList vetoes an action whose target parameter, rendered from
// the alert's labels, is outside the policy's allow-list for it. A target
// written out in the policy is its own allow-list; a templated one without
// a list (which the loader refuses) is vetoed too, failing closed.
func guardAllowList(in *GuardInput) string {
	al, ok := in.Step.Action.(allowListed)
	if !ok {
		return ""
	}
	param, list := al.AllowList()
	globs := in.Args.List(list)
	v := in.Args.Str(param)
	switch {
	case len(globs) == 0 && !in.Step.templated(param):
		return ""
	case len(globs) == 0:
		return fmt.Sprintf("%s %q comes from the alert's labels and the policy has no %s allow-list", param, v, list)
	case allowedBy(globs, v):
		return ""
	}
	return fmt.Sprintf("%s %q is outside the policy's %s allow-list (%s)", param, v, list, strings.Join(globs, ", "))
}

// guardArgument vetoes an action whose templated list elements (exec's
// arguments) rendered to something a program would read as an option: a
// value beginning with "-", unless a literal "--" element comes before it
// or the policy wrote the "-" itself ("--name={{.pod}}": the option is the
// author's, the label only its value).
func guardArgument(in *GuardInput) string {
	for _, p := range in.Step.declared {
		if !p.NoOptions {
			continue
		}
		afterDashes := false
		for i, v := range in.Args.List(p.Name) {
			templated := in.Step.templatedAt(p.Name, i)
			if !templated && v == "--" {
				afterDashes = true
			}
			if templated && !afterDashes && strings.HasPrefix(v, "-") && !in.Step.writtenOption(p.Name, i) {
				return fmt.Sprintf("%s[%d] rendered from the alert's labels to %q, which the program would read as an option; put a literal \"--\" before templated arguments if the program takes it", p.Name, i, v)
			}
		}
	}
	return ""
}
