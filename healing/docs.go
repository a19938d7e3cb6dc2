package healing

import (
	"fmt"
	"strings"
)

//go:generate go run ./cmd/actuatordocs -doc ../docs/healing.md

// ActuatorTable renders every registered actuator as a Markdown table
// (action, scope, parameters, what it does) from its Params and Doc: the
// table in docs/healing.md, so the documentation cannot drift from the
// code. Required parameters are bold, fixed ones (never a template) marked
// †.
func ActuatorTable() string {
	var b strings.Builder
	b.WriteString("| action | scope | parameters | what it does |\n| --- | --- | --- | --- |\n")
	for _, name := range Actuators() {
		a, _ := Lookup(name)
		params := make([]string, 0, len(a.Params()))
		for _, p := range a.Params() {
			params = append(params, paramDoc(p))
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", a.Name(), a.Scope(), strings.Join(params, "<br>"), a.Doc())
	}
	return b.String()
}

// paramDoc is one parameter as the table shows it.
func paramDoc(p Param) string {
	s := p.Name
	if p.Required {
		s = "**" + s + "**"
	}
	if p.Fixed {
		s += "†"
	}
	var notes []string
	if p.Doc != "" {
		notes = append(notes, p.Doc)
	}
	if p.List {
		notes = append(notes, "a list")
	}
	if p.FixedHead {
		notes = append(notes, "its first element is fixed†")
	}
	if p.NoOptions {
		notes = append(notes, "a templated element beginning with `-` is vetoed unless after a literal `--`")
	}
	if p.Default != "" {
		notes = append(notes, "default `"+p.Default+"`")
	}
	if len(notes) > 0 {
		s += " — " + strings.Join(notes, "; ")
	}
	return s
}
