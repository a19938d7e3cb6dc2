package main

import (
	"os"
	"strings"
	"testing"
)

// The committed source parses, and a source with a mistake is refused with
// the mistake named, so that a wrong edit never reaches the manifests.
func TestParse(t *testing.T) {
	raw, err := os.ReadFile("../../rbac/rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parse(raw); err != nil {
		t.Fatalf("rules.yaml: %v", err)
	}
	for _, c := range []struct{ name, src, want string }{
		{"unknown key", "groups: [{name: node, rulez: []}]", "field rulez not found"},
		{"unknown group", "groups: [{name: galaxy, rules: [{comment: x, apiGroups: [''], resources: [pods], verbs: [get]}]}]", `group "galaxy": not one of`},
		{"wildcard", "groups: [{name: node, rules: [{comment: x, apiGroups: [''], resources: ['*'], verbs: [get]}]}]", "no wildcards"},
		{"no comment", "groups: [{name: node, rules: [{apiGroups: [''], resources: [nodes], verbs: [get]}]}]", "needs comment"},
		{"missing group", "groups: [{name: node, rules: [{comment: x, apiGroups: [''], resources: [nodes], verbs: [get]}]}]", `group "leases": missing or empty`},
	} {
		_, err := parse([]byte(c.src))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want it to say %q", c.name, err, c.want)
		}
	}
}
