package healing

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// Scope says which agent may take an action.
type Scope string

// The scopes of actions.
const (
	// ScopeNode actions (a pod on this node, a local unit, a local HAProxy)
	// are taken by the agent of the node the target lives on.
	ScopeNode Scope = "node"
	// ScopeCluster actions (scale, rollout restart, cordon, drain) are
	// taken only by the agent that holds the coordination.k8s.io Lease for
	// the action and its target.
	ScopeCluster Scope = "cluster"
)

// Param declares one parameter an actuator takes.
type Param struct {
	Name string
	// Required parameters must be given; the others take Default.
	Required bool
	Default  string
	// List parameters take a YAML list of strings (exec's argv).
	List bool
	// Check validates a rendered value; it runs at load for values without
	// templates and at run time after rendering.
	Check func(string) error
	// Fixed marks a parameter that names where an action goes or what it
	// carries (a URL, a credential file, a socket, a working directory, an
	// allow-list): it cannot be a template, so alert labels cannot choose
	// it. A template there refuses the policy at load.
	Fixed bool
	// FixedHead is Fixed for the first element of a list parameter only:
	// exec's program path.
	FixedHead bool
	// NoOptions: an element rendered from a template must not begin with
	// "-", unless it follows a literal "--" element, or the argument guard
	// vetoes the action; alert labels cannot turn into options.
	NoOptions bool
	// Doc is a one-line description for the documentation.
	Doc string
}

// Actuator is one kind of remediation. Each lives in its own file
// (actuator_<name>.go) and registers itself with Register from init.
type Actuator interface {
	// Name is the action name policies use.
	Name() string
	// Params declares every parameter; any other is refused at load.
	Params() []Param
	// Scope says who may act.
	Scope() Scope
	// Doc says what the action does, in one Markdown line: the "what it
	// does" column of the actuator table in docs/healing.md, which `make
	// generate` writes from Doc and Params.
	Doc() string
	// Target names the object the action changes, from rendered arguments.
	Target(a Args) Target
	// Act performs the action and returns its outcome: what changed (or
	// that nothing had to), and how to restore it where that makes sense.
	// It must be idempotent where the API allows and must not retry
	// without bound.
	Act(ctx context.Context, env *Env, in Request) (Outcome, error)
}

// Request is what an action is asked to do: its rendered arguments and the
// situation it acts in (the alert, the policy, the runbook so far), which
// exec and webhook pass on.
type Request struct {
	Args       Args
	Escalation *Escalation
}

// Outcome is what an action did. The engine records Message and, for a
// Restore, schedules the undo; it knows no actuator by type.
type Outcome struct {
	// Message says what changed, or why nothing had to, for the record.
	Message string
	// Unchanged is set when the target already was as the action wants it
	// (a pod already gone, already quarantined).
	Unchanged bool
	// Restore, when set, can put the target back as it was. The engine
	// runs it after the step's restore_after parameter, once every alert
	// that caused the change stayed resolved that long.
	Restore *Restore
}

// Restore says how to undo a change. Before and After are the target's
// state as the actuator records it (replicas, for scale); over several
// changes of one target the engine keeps the first Before and the last
// After, and asks the last Undo.
type Restore struct {
	Before, After any
	// Undo returns the action that sets the target from after back to
	// before, only if it still is at after; resolvedFor is how long its
	// alerts stayed resolved (for the record).
	Undo func(before, after any, resolvedFor time.Duration) Actuator
}

// Target is the object an action changes: guards, cooldowns, leases and
// Kubernetes Events are keyed by it (a notification's cooldown by its
// receiver and alert: guardCooldown).
type Target struct {
	// Kind is a Kubernetes kind (Pod, Deployment, StatefulSet, DaemonSet,
	// Node) or one of Unit, HAProxyServer, Command, Webhook.
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String returns "Kind namespace/name" or "Kind name".
func (t Target) String() string {
	if t.Namespace == "" {
		return t.Kind + " " + t.Name
	}
	return t.Kind + " " + t.Namespace + "/" + t.Name
}

// Kubernetes reports whether the target is a Kubernetes object.
func (t Target) Kubernetes() bool {
	switch t.Kind {
	case "Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Node":
		return true
	}
	return false
}

// Env is what actuators act through. Fields are nil when that backend is
// not configured.
type Env struct {
	// Kube is the Kubernetes client; nil on a plain host.
	Kube *kubeclient.Client
	// NodeName is this node.
	NodeName string
	// Identity names this agent in leases and events.
	Identity string
	// Systemd connects to systemd's D-Bus API.
	Systemd func(ctx context.Context) (*sdbus.Conn, error)
	// HTTP is the client webhooks use.
	HTTP *http.Client
	// Retry bounds retries of transient Kubernetes API errors.
	Retry RetryPolicy
	// Logger is the engine's logger.
	Logger *slog.Logger
	// ReadinessCondition is the pod condition type reroute owns.
	ReadinessCondition string
}

// Value is a parameter value in a policy: a string or a list of strings,
// each of which may be a template over the alert's labels.
type Value struct {
	List   []string
	IsList bool
	line   int
	column int
}

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (v *Value) UnmarshalYAML(n *yaml.Node) error {
	v.line, v.column = n.Line, n.Column
	switch n.Kind {
	case yaml.ScalarNode:
		v.List = []string{n.Value}
		return nil
	case yaml.SequenceNode:
		v.IsList = true
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: a list parameter holds strings only", c.Line)
			}
			v.List = append(v.List, c.Value)
		}
		return nil
	}
	return fmt.Errorf("line %d: a parameter is a string or a list of strings", n.Line)
}

// Args are an action's parameters after rendering, with defaults applied.
type Args map[string][]string

// Str returns a string parameter ("" when unset).
func (a Args) Str(name string) string {
	if v := a[name]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// List returns a list parameter.
func (a Args) List(name string) []string { return a[name] }

// Int returns an integer parameter; its Check has already vetted it.
func (a Args) Int(name string) int {
	n, _ := strconv.Atoi(a.Str(name))
	return n
}

var (
	registryMu sync.RWMutex
	registry   = map[string]Actuator{}
)

// Register adds an actuator. It panics on a duplicate or empty name.
func Register(a Actuator) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if a.Name() == "" {
		panic("healing: actuator without a name")
	}
	if _, dup := registry[a.Name()]; dup {
		panic("healing: duplicate actuator " + a.Name())
	}
	registry[a.Name()] = a
}

// Lookup returns the actuator registered under name.
func Lookup(name string) (Actuator, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	a, ok := registry[name]
	return a, ok
}

// Actuators returns the registered actuator names, sorted.
func Actuators() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for n := range registry {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Common parameter checks.

func checkInt(min int) func(string) error {
	return func(s string) error {
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("must be an integer, got %q", s)
		}
		if n < min {
			return fmt.Errorf("must be at least %d, got %d", min, n)
		}
		return nil
	}
}

func checkSignedInt(s string) error {
	if _, err := strconv.Atoi(s); err != nil {
		return fmt.Errorf("must be an integer, got %q", s)
	}
	return nil
}

func checkDuration(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as 30s, got %q", s)
	}
	if d <= 0 {
		return fmt.Errorf("must be positive, got %s", s)
	}
	return nil
}

// Duration returns a duration parameter; its Check has already vetted it.
func (a Args) Duration(name string) time.Duration {
	d, _ := time.ParseDuration(a.Str(name))
	return d
}

func checkOneOf(values ...string) func(string) error {
	return func(s string) error {
		for _, v := range values {
			if s == v {
				return nil
			}
		}
		return fmt.Errorf("must be one of %s, got %q", strings.Join(values, ", "), s)
	}
}

func checkNotEmpty(s string) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("must not be empty")
	}
	return nil
}

// Standard parameter declarations shared by the Kubernetes actuators.
var (
	paramNamespace = Param{Name: "namespace", Required: true, Check: checkNotEmpty, Doc: "namespace of the object"}
	paramPod       = Param{Name: "pod", Required: true, Check: checkNotEmpty, Doc: "pod name"}
	paramNode      = Param{Name: "node", Required: true, Check: checkNotEmpty, Doc: "node name"}
	paramKind      = Param{Name: "kind", Default: "Deployment", Check: checkOneOf("Deployment", "StatefulSet", "DaemonSet"), Doc: "Deployment, StatefulSet or DaemonSet"}
	paramName      = Param{Name: "name", Required: true, Check: checkNotEmpty, Doc: "name of the workload"}
)
