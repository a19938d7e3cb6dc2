package healing

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/template"
	"text/template/parse"
	"time"

	amlabels "github.com/prometheus/alertmanager/pkg/labels"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/confyaml"
)

// RouteConfig is one node of the policy tree as written in YAML. The root
// matches every alert; a child is tried only when its parent matched, in
// order, and the first child that matches wins unless it sets continue.
// A route with steps is a policy. Settings other than matchers, continue,
// steps and routes are inherited by children that do not set them.
type RouteConfig struct {
	// Name names the policy in records and metrics; required with steps.
	Name string `yaml:"name"`
	// Matchers are Alertmanager-style label matchers (=, !=, =~, !~); all
	// must match. Each entry may also be a {a="b",c=~"d"} list.
	Matchers []string `yaml:"matchers"`
	// Continue makes matching go on to the next sibling after this route
	// matched.
	Continue bool `yaml:"continue"`
	// DryRun records what the policy would do without doing it. The
	// global healing.dry_run wins when it is true.
	DryRun *bool `yaml:"dry_run"`
	// Shadow makes the policy decide and audit like a live one and never
	// act, even when the agent is live: a new policy runs beside the live
	// ones before it is trusted. A shadow route never ends matching for
	// its siblings, so adding one does not change which live policy acts.
	Shadow *bool `yaml:"shadow"`
	// Cooldown is the least time between two actions on the same target.
	Cooldown *time.Duration `yaml:"cooldown"`
	// RateLimit caps the policy's actions in a sliding window.
	RateLimit *RateLimit `yaml:"rate_limit"`
	// CircuitBreaker stops the policy after repeated failed remediations.
	CircuitBreaker *CircuitBreaker `yaml:"circuit_breaker"`
	// BlastRadius caps how many of a workload's replicas may be
	// unavailable after a pod-level action.
	BlastRadius *BlastRadius `yaml:"blast_radius"`
	// RunbookURL is copied into every record, event and span.
	RunbookURL *string `yaml:"runbook_url"`
	// RequireApproval holds each action until it is approved through the
	// API (POST /api/v1/actions/{id}/approve).
	RequireApproval *bool `yaml:"require_approval"`
	// ApprovalTimeout is how long an action waits for approval (default 15m).
	ApprovalTimeout *time.Duration `yaml:"approval_timeout"`
	// Steps run in order, like a runbook: each runs when the one before
	// failed or did not resolve the alert within its verify window.
	Steps []StepConfig `yaml:"steps"`
	// Escalate runs instead of the steps while the circuit breaker is open.
	Escalate *StepConfig `yaml:"escalate"`
	// Routes are the child routes.
	Routes []*RouteConfig `yaml:"routes"`
}

// StepConfig is one action of a policy.
type StepConfig struct {
	Action string           `yaml:"action"`
	Params map[string]Value `yaml:"params"`
	Verify VerifyConfig     `yaml:"verify"`
}

// VerifyConfig says how an action's success is judged: the alert that
// triggered it resolves within Window. A zero window means the action is
// not verified (escalations, notifications): its API call succeeding ends
// the runbook.
type VerifyConfig struct {
	Window time.Duration `yaml:"window"`
}

// RateLimit allows at most Max actions in any window of Per.
type RateLimit struct {
	Max int           `yaml:"max"`
	Per time.Duration `yaml:"per"`
}

// CircuitBreaker opens after Failures failed remediations in a row (an
// action that errored or did not resolve its alert), and closes ResetAfter
// after the last failure.
type CircuitBreaker struct {
	Failures   int           `yaml:"failures"`
	ResetAfter time.Duration `yaml:"reset_after"`
}

// BlastRadius caps the replicas of a workload that may be unavailable
// after an action, counting pods that are already unready. Either bound
// may be zero (unset); both apply when both are set.
type BlastRadius struct {
	MaxUnavailable        int `yaml:"max_unavailable"`
	MaxUnavailablePercent int `yaml:"max_unavailable_percent"`
}

// Policy is a compiled route with steps.
type Policy struct {
	Name            string
	Matchers        amlabels.Matchers // the whole path's
	DryRun          bool
	Shadow          bool
	Cooldown        time.Duration
	RateLimit       *RateLimit
	CircuitBreaker  *CircuitBreaker
	BlastRadius     *BlastRadius
	RunbookURL      string
	RequireApproval bool
	ApprovalTimeout time.Duration
	Steps           []*Step
	Escalate        *Step
}

// Step is a compiled step: its actuator and parameter templates.
type Step struct {
	Index    int
	Action   Actuator
	Verify   time.Duration
	params   map[string]*paramTemplate
	declared []Param
}

type paramTemplate struct {
	isList bool
	parts  []*template.Template
	static bool
	// templated says, per part, whether it is a template (rather than a
	// literal string); option, whether its text begins with a literal "-"
	// (an option the policy's author wrote, such as "--name={{.pod}}").
	templated []bool
	option    []bool
}

// templated reports whether any value of parameter name is a template
// over the alert's labels.
func (s *Step) templated(name string) bool {
	pt, ok := s.params[name]
	return ok && !pt.static
}

// templatedAt reports whether element i of parameter name is a template.
func (s *Step) templatedAt(name string, i int) bool {
	pt, ok := s.params[name]
	return ok && i < len(pt.templated) && pt.templated[i]
}

// writtenOption reports whether element i of parameter name begins with a
// literal "-" in the policy: the option is the author's, only its value
// may come from labels.
func (s *Step) writtenOption(name string, i int) bool {
	pt, ok := s.params[name]
	return ok && i < len(pt.option) && pt.option[i]
}

type route struct {
	matchers amlabels.Matchers
	cont     bool
	shadow   bool // matching goes on past it, as with cont
	policy   *Policy
	children []*route
}

// Tree is a compiled policy tree.
type Tree struct {
	root     *route
	Policies []*Policy
}

// Match returns the policies whose routes match labels, in tree order.
func (t *Tree) Match(labels map[string]string) []*Policy {
	if t == nil || t.root == nil {
		return nil
	}
	return t.root.match(labels)
}

func (r *route) matches(labels map[string]string) bool {
	for _, m := range r.matchers {
		if !m.Matches(labels[m.Name]) {
			return false
		}
	}
	return true
}

func (r *route) match(labels map[string]string) []*Policy {
	if !r.matches(labels) {
		return nil
	}
	var out []*Policy
	for _, c := range r.children {
		m := c.match(labels)
		if m == nil {
			continue
		}
		out = append(out, m...)
		if !c.cont && !c.shadow {
			break
		}
	}
	if len(out) == 0 && r.policy != nil {
		return []*Policy{r.policy}
	}
	if len(out) == 0 {
		// A matching route without steps ends matching for its parent
		// just like one with steps (Alertmanager semantics), but yields
		// no policy.
		return []*Policy{}
	}
	return out
}

// policyFile is the layout of a policy file.
type policyFile struct {
	Policies yaml.Node `yaml:"policies"`
}

// LoadPolicyFile reads and compiles a policy file: a YAML document whose
// "policies" key holds the root route.
func LoadPolicyFile(path string) (*Tree, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParsePolicies(path, data)
}

// ParsePolicies compiles a policy document; file names it in errors.
func ParsePolicies(file string, data []byte) (*Tree, error) {
	root, err := confyaml.Parse(file, data)
	if err != nil {
		return nil, err
	}
	if root == nil {
		return &Tree{}, nil
	}
	var pf policyFile
	if err := confyaml.Decode(file, "", root, &pf); err != nil {
		return nil, err
	}
	if pf.Policies.Kind == 0 {
		return nil, &confyaml.Error{File: file, Line: root.Line, Column: root.Column, Path: "policies", Msg: "missing: the policy file's root route goes under \"policies:\""}
	}
	return CompilePolicies(file, "policies", &pf.Policies)
}

// CompilePolicies decodes and compiles the root route held in node. Every
// problem is reported with file, line, column and field path: unknown
// fields, unknown actions, unknown or missing parameters, invalid
// matchers and templates that cannot resolve.
func CompilePolicies(file, path string, node *yaml.Node) (*Tree, error) {
	if node == nil || node.Kind == 0 || node.Tag == "!!null" {
		return &Tree{}, nil
	}
	var rc RouteConfig
	if err := confyaml.Decode(file, path, node, &rc); err != nil {
		return nil, err
	}
	c := &compiler{file: file, names: map[string]string{}}
	root := c.route(path, node, &rc, nil, inherited{})
	if len(c.errs) > 0 {
		return nil, confyaml.Limit(errors.Join(c.errs...), confyaml.MaxErrors)
	}
	return &Tree{root: root, Policies: c.policies}, nil
}

type inherited struct {
	matchers        amlabels.Matchers
	dryRun          bool
	shadow          bool
	cooldown        time.Duration
	rateLimit       *RateLimit
	circuitBreaker  *CircuitBreaker
	blastRadius     *BlastRadius
	runbookURL      string
	requireApproval bool
	approvalTimeout time.Duration
	escalate        *StepConfig
	escalateNode    *yaml.Node
	escalatePath    string
}

type compiler struct {
	file     string
	errs     []error
	policies []*Policy
	names    map[string]string // policy name → path where defined
}

func (c *compiler) errAt(n *yaml.Node, path, format string, args ...any) {
	e := &confyaml.Error{File: c.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	c.errs = append(c.errs, e)
}

// child returns the value node of key in mapping n, or n itself when
// absent (so errors still point near the problem).
func child(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	}
	return n
}

func item(n *yaml.Node, i int) *yaml.Node {
	if n != nil && n.Kind == yaml.SequenceNode && i < len(n.Content) {
		return n.Content[i]
	}
	return n
}

func (c *compiler) route(path string, n *yaml.Node, rc *RouteConfig, parent *RouteConfig, in inherited) *route {
	r := &route{cont: rc.Continue}
	for i, s := range rc.Matchers {
		ms, err := amlabels.ParseMatchers(s)
		if err != nil {
			c.errAt(item(child(n, "matchers"), i), fmt.Sprintf("%s.matchers[%d]", path, i), "invalid matcher %q: %v", s, err)
			continue
		}
		r.matchers = append(r.matchers, ms...)
	}
	in.matchers = append(append(amlabels.Matchers(nil), in.matchers...), r.matchers...)
	if rc.DryRun != nil {
		in.dryRun = *rc.DryRun
	}
	if rc.Shadow != nil {
		in.shadow = *rc.Shadow
	}
	r.shadow = in.shadow
	if rc.Cooldown != nil {
		if *rc.Cooldown < 0 {
			c.errAt(child(n, "cooldown"), path+".cooldown", "must not be negative")
		}
		in.cooldown = *rc.Cooldown
	}
	if rc.RateLimit != nil {
		if rc.RateLimit.Max < 1 || rc.RateLimit.Per <= 0 {
			c.errAt(child(n, "rate_limit"), path+".rate_limit", "max must be at least 1 and per positive, got max=%d per=%s", rc.RateLimit.Max, rc.RateLimit.Per)
		}
		in.rateLimit = rc.RateLimit
	}
	if rc.CircuitBreaker != nil {
		if rc.CircuitBreaker.Failures < 1 || rc.CircuitBreaker.ResetAfter <= 0 {
			c.errAt(child(n, "circuit_breaker"), path+".circuit_breaker", "failures must be at least 1 and reset_after positive, got failures=%d reset_after=%s", rc.CircuitBreaker.Failures, rc.CircuitBreaker.ResetAfter)
		}
		in.circuitBreaker = rc.CircuitBreaker
	}
	if rc.BlastRadius != nil {
		br := rc.BlastRadius
		if br.MaxUnavailable < 0 || br.MaxUnavailablePercent < 0 || br.MaxUnavailablePercent > 100 || (br.MaxUnavailable == 0 && br.MaxUnavailablePercent == 0) {
			c.errAt(child(n, "blast_radius"), path+".blast_radius", "set max_unavailable (≥1) and/or max_unavailable_percent (1–100)")
		}
		in.blastRadius = br
	}
	if rc.RunbookURL != nil {
		in.runbookURL = *rc.RunbookURL
	}
	if rc.RequireApproval != nil {
		in.requireApproval = *rc.RequireApproval
	}
	if rc.ApprovalTimeout != nil {
		if *rc.ApprovalTimeout <= 0 {
			c.errAt(child(n, "approval_timeout"), path+".approval_timeout", "must be positive")
		}
		in.approvalTimeout = *rc.ApprovalTimeout
	}
	if rc.Escalate != nil {
		in.escalate, in.escalateNode, in.escalatePath = rc.Escalate, child(n, "escalate"), path+".escalate"
	}

	if len(rc.Steps) > 0 {
		if rc.Name == "" {
			c.errAt(n, path+".name", "a route with steps is a policy and needs a name")
		} else if prev, dup := c.names[rc.Name]; dup {
			c.errAt(child(n, "name"), path+".name", "duplicate policy name %q (also at %s)", rc.Name, prev)
		} else {
			c.names[rc.Name] = path
		}
		p := &Policy{
			Name: rc.Name, Matchers: in.matchers, DryRun: in.dryRun, Shadow: in.shadow, Cooldown: in.cooldown,
			RateLimit: in.rateLimit, CircuitBreaker: in.circuitBreaker, BlastRadius: in.blastRadius,
			RunbookURL: in.runbookURL, RequireApproval: in.requireApproval, ApprovalTimeout: in.approvalTimeout,
		}
		if p.ApprovalTimeout == 0 {
			p.ApprovalTimeout = 15 * time.Minute
		}
		stepsNode := child(n, "steps")
		for i := range rc.Steps {
			if s := c.step(fmt.Sprintf("%s.steps[%d]", path, i), item(stepsNode, i), &rc.Steps[i], in.matchers); s != nil {
				s.Index = i
				p.Steps = append(p.Steps, s)
			}
		}
		if in.escalate != nil {
			if s := c.step(in.escalatePath, in.escalateNode, in.escalate, in.matchers); s != nil {
				s.Index = -1
				p.Escalate = s
			}
		}
		if p.CircuitBreaker != nil && in.escalate == nil {
			c.errAt(child(n, "circuit_breaker"), path+".circuit_breaker", "a circuit breaker needs an escalate step to run while it is open")
		}
		r.policy = p
		c.policies = append(c.policies, p)
	} else if rc.Name != "" && len(rc.Routes) == 0 {
		c.errAt(n, path+".steps", "policy %q has no steps", rc.Name)
	}

	routesNode := child(n, "routes")
	for i, ch := range rc.Routes {
		if ch == nil {
			continue
		}
		r.children = append(r.children, c.route(fmt.Sprintf("%s.routes[%d]", path, i), item(routesNode, i), ch, rc, in))
	}
	return r
}

func (c *compiler) step(path string, n *yaml.Node, sc *StepConfig, matchers amlabels.Matchers) *Step {
	if sc.Action == "" {
		c.errAt(n, path+".action", "missing action (known: %s)", strings.Join(Actuators(), ", "))
		return nil
	}
	act, ok := Lookup(sc.Action)
	if !ok {
		c.errAt(child(n, "action"), path+".action", "unknown action %q (known: %s)", sc.Action, strings.Join(Actuators(), ", "))
		return nil
	}
	if sc.Verify.Window < 0 {
		c.errAt(child(n, "verify"), path+".verify.window", "must not be negative")
	}
	s := &Step{Action: act, Verify: sc.Verify.Window, params: map[string]*paramTemplate{}, declared: act.Params()}
	known := map[string]Param{}
	var names []string
	for _, p := range s.declared {
		known[p.Name] = p
		names = append(names, p.Name)
	}
	paramsNode := child(n, "params")
	for name, v := range sc.Params {
		ppath := path + ".params." + name
		pn := &yaml.Node{Line: v.line, Column: v.column}
		decl, ok := known[name]
		if !ok {
			c.errAt(pn, ppath, "unknown parameter for action %s (known: %s)", sc.Action, strings.Join(names, ", "))
			continue
		}
		if v.IsList != decl.List {
			if decl.List {
				c.errAt(pn, ppath, "must be a list of strings")
			} else {
				c.errAt(pn, ppath, "must be a string, not a list")
			}
			continue
		}
		pt := &paramTemplate{isList: v.IsList, static: true}
		for j, text := range v.List {
			t, refs, err := compileTemplate(ppath, text)
			if err != nil {
				c.errAt(pn, ppath, "%v", err)
				continue
			}
			for _, l := range refs {
				if absent(matchers, l) {
					c.errAt(pn, ppath, "template refers to label %q, which this policy's matchers require to be absent: it can never resolve", l)
				}
			}
			templated := len(refs) > 0 || strings.Contains(text, "{{")
			if templated && (decl.Fixed || (decl.FixedHead && j == 0)) {
				what := "cannot be a template"
				if decl.FixedHead {
					what = "element 0 (the program) cannot be a template"
				}
				c.errAt(pn, ppath, "%s: it names where the action goes or what it carries, which alert labels must not choose; write it out in the policy", what)
			}
			if templated {
				pt.static = false
			} else if decl.Check != nil {
				if err := decl.Check(text); err != nil {
					c.errAt(pn, ppath, "%v", err)
				}
			}
			pt.parts = append(pt.parts, t)
			pt.templated = append(pt.templated, templated)
			pt.option = append(pt.option, strings.HasPrefix(text, "-"))
		}
		s.params[name] = pt
	}
	for _, p := range s.declared {
		if _, given := sc.Params[p.Name]; !given && p.Required {
			c.errAt(paramsNode, path+".params."+p.Name, "missing required parameter for action %s", sc.Action)
		}
	}
	if al, ok := act.(allowListed); ok {
		target, list := al.AllowList()
		if _, given := sc.Params[list]; !given && s.templated(target) {
			c.errAt(child(paramsNode, target), path+".params."+list,
				"required when %s is a template: list the %s (globs) that alert labels may choose, so no label can steer %s elsewhere", target, list, sc.Action)
		}
	}
	return s
}

// absent reports whether matchers force label l to be empty or missing.
func absent(ms amlabels.Matchers, l string) bool {
	for _, m := range ms {
		if m.Name != l || !m.Matches("") {
			continue
		}
		switch m.Type {
		case amlabels.MatchEqual:
			return true
		case amlabels.MatchRegexp:
			if m.Value == "" || m.Value == "^$" {
				return true
			}
		case amlabels.MatchNotRegexp:
			if m.Value == ".+" || m.Value == ".*." || m.Value == "(.+)" {
				return true
			}
		}
	}
	return false
}

// compileTemplate parses a parameter template with missingkey=error and
// checks that every reference can resolve to one of the alert's labels:
// {{.label}} or {{index . "label"}}. Chains (.a.b), the whole label set
// ({{.}}) and range/with/template blocks are refused.
func compileTemplate(name, text string) (*template.Template, []string, error) {
	t, err := template.New(name).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, nil, fmt.Errorf("template: %v", strings.TrimPrefix(err.Error(), "template: "))
	}
	var refs []string
	var walk func(n parse.Node) error
	walkArgs := func(cmd *parse.CommandNode) error {
		// index . "label": the only place a bare dot is allowed.
		if len(cmd.Args) >= 3 {
			if id, ok := cmd.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" {
				if _, ok := cmd.Args[1].(*parse.DotNode); ok {
					for _, a := range cmd.Args[2:] {
						s, ok := a.(*parse.StringNode)
						if !ok {
							return fmt.Errorf("template %q: index . takes a quoted label name", text)
						}
						refs = append(refs, s.Text)
					}
					if len(cmd.Args) > 3 {
						return fmt.Errorf("template %q: labels are strings; index . %q … cannot resolve", text, cmd.Args[2].(*parse.StringNode).Text)
					}
					return nil
				}
			}
		}
		for _, a := range cmd.Args {
			if err := walk(a); err != nil {
				return err
			}
		}
		return nil
	}
	walk = func(n parse.Node) error {
		switch n := n.(type) {
		case nil:
			return nil
		case *parse.ListNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Nodes {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.ActionNode:
			return walk(n.Pipe)
		case *parse.PipeNode:
			if n == nil {
				return nil
			}
			for _, c := range n.Cmds {
				if err := walkArgs(c); err != nil {
					return err
				}
			}
		case *parse.IfNode:
			for _, c := range []parse.Node{n.Pipe, n.List, n.ElseList} {
				if err := walk(c); err != nil {
					return err
				}
			}
		case *parse.RangeNode, *parse.WithNode, *parse.TemplateNode, *parse.BreakNode, *parse.ContinueNode:
			return fmt.Errorf("template %q: only {{.label}}, {{index . \"label\"}}, functions and if/else are allowed in parameters", text)
		case *parse.FieldNode:
			if len(n.Ident) != 1 {
				return fmt.Errorf("template %q: labels are strings; .%s cannot resolve", text, strings.Join(n.Ident, "."))
			}
			refs = append(refs, n.Ident[0])
		case *parse.ChainNode:
			return fmt.Errorf("template %q: labels are strings; %s cannot resolve", text, n.String())
		case *parse.DotNode:
			return fmt.Errorf("template %q: {{.}} is the whole label set, not a label; use {{.name}}", text)
		case *parse.VariableNode:
			if len(n.Ident) > 1 {
				return fmt.Errorf("template %q: %s cannot resolve", text, n.String())
			}
		}
		return nil
	}
	if err := walk(t.Tree.Root); err != nil {
		return nil, nil, err
	}
	return t, refs, nil
}

// Render renders the step's parameters from labels and checks them. A
// failure names the parameter; the caller records it as a failed action.
func (s *Step) Render(labels map[string]string) (Args, error) {
	out := Args{}
	var errs []error
	for _, p := range s.declared {
		pt, ok := s.params[p.Name]
		if !ok {
			if p.Default != "" {
				out[p.Name] = []string{p.Default}
			}
			continue
		}
		var vals []string
		for _, t := range pt.parts {
			var b strings.Builder
			if err := t.Execute(&b, labels); err != nil {
				errs = append(errs, fmt.Errorf("parameter %s: %v", p.Name, err))
				continue
			}
			vals = append(vals, b.String())
		}
		for _, v := range vals {
			if p.Required && v == "" {
				errs = append(errs, fmt.Errorf("parameter %s: rendered empty from the alert's labels", p.Name))
			}
		}
		if p.Check != nil {
			for _, v := range vals {
				if err := p.Check(v); err != nil {
					errs = append(errs, fmt.Errorf("parameter %s: %v", p.Name, err))
				}
			}
		}
		out[p.Name] = vals
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
