package healing

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Issue 18, item 4: actions cannot be steered by labels beyond their
// policy. Fields that name where an action goes or what it carries cannot
// be templates; a templated unit or node needs an allow-list; a templated
// exec argument cannot become an option.

// Destination and credential fields are refused at load when they are
// templates, with file, line, column and field path.
func TestDestinationFieldsCannotBeTemplates(t *testing.T) {
	for _, c := range []struct {
		name, step, want string
	}{
		{"webhook url", `{action: webhook, params: {url: "{{.url}}"}}`,
			`p.yaml:5:43: policies.routes[0].steps[0].params.url: cannot be a template: it names where the action goes or what it carries`},
		{"webhook token", `{action: webhook, params: {url: "https://pager.example/", bearer_token_file: "/etc/{{.f}}"}}`,
			`policies.routes[0].steps[0].params.bearer_token_file: cannot be a template`},
		{"haproxy socket", `{action: haproxy_state, params: {socket: "{{.socket}}", backend: be, server: s, state: drain}}`,
			`policies.routes[0].steps[0].params.socket: cannot be a template`},
		{"exec program", `{action: exec, params: {command: ["{{.program}}", "x"]}}`,
			`policies.routes[0].steps[0].params.command: element 0 (the program) cannot be a template`},
		{"exec dir", `{action: exec, params: {command: ["/bin/true"], dir: "/srv/{{.app}}"}}`,
			`policies.routes[0].steps[0].params.dir: cannot be a template`},
		{"allow-list", `{action: systemd_restart, params: {unit: "{{.unit}}", units: ["{{.unit}}"]}}`,
			`policies.routes[0].steps[0].params.units: cannot be a template`},
		{"unit without allow-list", `{action: systemd_restart, params: {unit: "{{.unit}}"}}`,
			`p.yaml:5:52: policies.routes[0].steps[0].params.units: required when unit is a template`},
		{"reset-failed without allow-list", `{action: systemd_reset_failed, params: {unit: "{{.unit}}"}}`,
			`params.units: required when unit is a template`},
		{"scale template without allow-list", `{action: systemd_scale, params: {template: "{{.t}}", max: "3"}}`,
			`params.units: required when template is a template`},
		{"cordon without allow-list", `{action: cordon, params: {node: "{{.node}}"}}`,
			`params.nodes: required when node is a template`},
		{"drain without allow-list", `{action: drain, params: {node: "{{.node}}"}}`,
			`params.nodes: required when node is a template`},
		{"bad glob", `{action: drain, params: {node: "{{.node}}", nodes: ["worker-["]}}`,
			`params.nodes: not a glob: "worker-["`},
	} {
		t.Run(c.name, func(t *testing.T) {
			doc := "policies:\n  routes:\n    - name: p\n      steps:\n        - " + c.step + "\n"
			_, err := ParsePolicies("p.yaml", []byte(doc))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ParsePolicies:\n%v\nwant %q", err, c.want)
			}
		})
	}
	// Written out, the same fields load; a static unit or node needs no
	// allow-list.
	ok := `policies:
  routes:
    - name: p
      steps:
        - {action: webhook, params: {url: "https://pager.example/", bearer_token_file: /etc/vigil/token}}
        - {action: haproxy_state, params: {socket: /run/haproxy.sock, backend: "{{.backend}}", server: "{{.server}}", state: drain}}
        - {action: exec, params: {command: ["/usr/bin/touch", "--", "{{.file}}"], dir: /srv}}
        - {action: systemd_restart, params: {unit: app.service}}
        - {action: cordon, params: {node: "{{.node}}", nodes: ["worker-*"]}}
`
	if _, err := ParsePolicies("ok.yaml", []byte(ok)); err != nil {
		t.Fatal(err)
	}
}

// The allow_list and argument guards are pure functions of the step and
// its rendered arguments.
func TestBoundGuards(t *testing.T) {
	tree, err := ParsePolicies("g.yaml", []byte(`policies:
  routes:
    - name: units
      matchers: ['k="unit"']
      steps: [{action: systemd_restart, params: {unit: "{{.v}}", units: ["app-*.service", "db.service"]}}]
    - name: static
      matchers: ['k="static"']
      steps: [{action: systemd_restart, params: {unit: app.service}}]
    - name: args
      matchers: ['k="args"']
      steps: [{action: exec, params: {command: ["/bin/echo", "-n", "{{.v}}", "--", "{{.v}}"]}}]
    - name: written-option
      matchers: ['k="opt"']
      steps: [{action: exec, params: {command: ["/bin/echo", "--name={{.v}}", "{{.v}}"]}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	check := func(kind, v string) (string, string) {
		labels := map[string]string{"k": kind, "v": v}
		s := tree.Match(labels)[0].Steps[0]
		args, err := s.Render(labels)
		if err != nil {
			t.Fatal(err)
		}
		in := &GuardInput{Step: s, Args: args, Target: s.Action.Target(args)}
		return guardAllowList(in), guardArgument(in)
	}
	for _, c := range []struct {
		kind, v       string
		allow, option string // substrings of the vetoes; "" for none
	}{
		{"unit", "app-web.service", "", ""},
		{"unit", "db.service", "", ""},
		{"unit", "reboot.target", `unit "reboot.target" is outside the policy's units allow-list (app-*.service, db.service)`, ""},
		{"unit", "xapp-web.service", "outside", ""},
		{"static", "anything", "", ""},
		{"args", "hello", "", ""},
		{"args", "--version", "", `command[2] rendered from the alert's labels to "--version"`},
		{"args", "-rf", "", "would read as an option"},
		{"opt", "x", "", ""},
		{"opt", "-x", "", `command[2] rendered from the alert's labels to "-x"`},
	} {
		allow, option := check(c.kind, c.v)
		if (c.allow == "") != (allow == "") || !strings.Contains(allow, c.allow) {
			t.Errorf("%s %q: allow_list veto %q, want %q", c.kind, c.v, allow, c.allow)
		}
		if (c.option == "") != (option == "") || !strings.Contains(option, c.option) {
			t.Errorf("%s %q: argument veto %q, want %q", c.kind, c.v, option, c.option)
		}
	}
}

// A hostile alert carries labels naming another webhook URL and a token
// file: the policy's URL is fixed, so the attacker's server receives
// nothing and the secret goes nowhere but the configured receiver.
func TestHostileAlertCannotSteerWebhook(t *testing.T) {
	var stolen atomic.Int32
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { stolen.Add(1) }))
	defer attacker.Close()
	hook := newHookReceiver(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s3cr3t"), 0o600)
	token := filepath.Join(dir, "pager-token")
	os.WriteFile(token, []byte("pager"), 0o600)

	// The permissive policy the issue describes no longer loads.
	_, err := ParsePolicies("p.yaml", []byte(`policies:
  name: page
  steps: [{action: webhook, params: {url: "{{.url}}", bearer_token_file: "{{.token}}"}}]
`))
	if err == nil || !strings.Contains(err.Error(), "params.url: cannot be a template") || !strings.Contains(err.Error(), "params.bearer_token_file: cannot be a template") {
		t.Fatalf("templated webhook policy: %v", err)
	}

	h := startEngine(t, `
dry_run: false
policies:
  name: page
  steps: [{action: webhook, params: {url: "`+hook.url+`", bearer_token_file: "`+token+`"}}]
`)
	h.fire(map[string]string{"alertname": "Evil", "url": attacker.URL, "bearer_token_file": secret, "token": secret})
	recs := h.settle()
	if results(recs) != "success" || recs[0].Target.Name != strings.TrimPrefix(strings.TrimSuffix(hook.url, "/hook"), "http://") {
		t.Fatalf("records:%s", dump(recs))
	}
	if n := stolen.Load(); n != 0 {
		t.Fatalf("the attacker's server received %d requests", n)
	}
	hook.mu.Lock()
	auth := hook.auth[0]
	hook.mu.Unlock()
	if auth != "Bearer pager" {
		t.Errorf("Authorization = %q, want the configured token only", auth)
	}
}

// A hostile alert whose label renders to "--version" does not become an
// option of the program: the action is vetoed by the argument guard,
// audited and counted; a benign one runs; after a literal "--" the same
// value is an operand.
func TestHostileAlertCannotPassExecOptions(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: touch
      matchers: ['alertname="Touch"']
      steps: [{action: exec, params: {command: ["/usr/bin/touch", "{{.file}}"], dir: "$DIR", target: "{{.file}}"}}]
    - name: touch-operands
      matchers: ['alertname="TouchOperand"']
      steps: [{action: exec, params: {command: ["/usr/bin/touch", "--", "{{.file}}"], dir: "$DIR", target: "{{.file}}"}}]
`)
	h.fire(map[string]string{"alertname": "Touch", "file": "--version"})
	recs := h.settle()
	if results(recs) != "vetoed(argument)" || !strings.Contains(recs[0].Reason, `command[1] rendered from the alert's labels to "--version"`) {
		t.Fatalf("records:%s", dump(recs))
	}
	if got := testutil.ToFloat64(h.e.m.vetoes.WithLabelValues("touch", GuardArgument)); got != 1 {
		t.Errorf("vigil_remediation_vetoes_total{guard=argument} = %v", got)
	}
	h.fire(map[string]string{"alertname": "Touch", "file": "benign"})
	h.fire(map[string]string{"alertname": "TouchOperand", "file": "-dash"})
	recs = h.settle()
	if got := results(recs); got != "vetoed(argument) success success" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	entries, _ := os.ReadDir(h.dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, ","); got != "-dash,benign" {
		t.Errorf("files touched: %s, want -dash,benign", got)
	}
}

// A hostile alert naming reboot.target is vetoed by the allow_list guard
// before systemd is contacted, audited and counted, even in dry-run.
func TestHostileAlertCannotSteerSystemdUnit(t *testing.T) {
	var dialed atomic.Int32
	noSystemd := func(o *Options) {
		o.Systemd = func(context.Context) (*sdbus.Conn, error) {
			dialed.Add(1)
			return nil, context.Canceled
		}
	}
	for _, dry := range []string{"false", "true"} {
		h := startEngine(t, `
dry_run: `+dry+`
policies:
  routes:
    - name: restart
      matchers: ['alertname="UnitDown"']
      steps: [{action: systemd_restart, params: {unit: "{{.unit}}", units: ["app-*.service"]}}]
    - name: reset
      matchers: ['alertname="UnitFailed"']
      steps: [{action: systemd_reset_failed, params: {unit: "{{.unit}}", units: ["app-*.service"]}}]
    - name: scale
      matchers: ['alertname="Deep"']
      steps: [{action: systemd_scale, params: {template: "{{.t}}", units: ["worker@.service"], max: "3"}}]
`, noSystemd)
		h.fire(map[string]string{"alertname": "UnitDown", "unit": "reboot.target"})
		h.fire(map[string]string{"alertname": "UnitFailed", "unit": "sshd.service"})
		h.fire(map[string]string{"alertname": "Deep", "t": "getty@.service"})
		recs := h.settle()
		if got := results(recs); got != "vetoed(allow_list) vetoed(allow_list) vetoed(allow_list)" {
			t.Fatalf("dry_run=%s: results %q%s", dry, got, dump(recs))
		}
		if r := recs[0]; r.Target.String() != "Unit reboot.target" || r.Reason != `unit "reboot.target" is outside the policy's units allow-list (app-*.service)` || r.AlertLabels["unit"] != "reboot.target" {
			t.Errorf("record: %+v", r)
		}
		if got := testutil.ToFloat64(h.e.m.vetoes.WithLabelValues("restart", GuardAllowList)); got != 1 {
			t.Errorf("vigil_remediation_vetoes_total{policy=restart,guard=allow_list} = %v", got)
		}
	}
	if n := dialed.Load(); n != 0 {
		t.Fatalf("systemd was contacted %d times", n)
	}
}

// A hostile alert naming a node outside the policy's nodes is vetoed
// before the Kubernetes API is read or a Lease taken (here there is no
// API at all: an allowed node fails for that reason instead).
func TestHostileAlertCannotSteerNodeActions(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: cordon
      matchers: ['alertname="NodeBad"']
      steps: [{action: cordon, params: {node: "{{.node}}", nodes: ["worker-*"]}}]
    - name: drain
      matchers: ['alertname="NodeWorse"']
      steps: [{action: drain, params: {node: "{{.node}}", nodes: ["worker-*"]}}]
`)
	h.fire(map[string]string{"alertname": "NodeBad", "node": "control-plane-1"})
	h.fire(map[string]string{"alertname": "NodeWorse", "node": "etcd-0"})
	h.fire(map[string]string{"alertname": "NodeBad", "node": "worker-1"})
	recs := h.settle()
	if got := results(recs); got != "vetoed(allow_list) vetoed(allow_list) failed" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if !strings.Contains(recs[0].Reason, `node "control-plane-1" is outside the policy's nodes allow-list (worker-*)`) ||
		!strings.Contains(recs[2].Reason, "kubernetes is not configured") {
		t.Errorf("records:%s", dump(recs))
	}
	if got := testutil.ToFloat64(h.e.m.vetoes.WithLabelValues("drain", GuardAllowList)); got != 1 {
		t.Errorf("vigil_remediation_vetoes_total{policy=drain,guard=allow_list} = %v", got)
	}
}
