package rules

import (
	"strings"
	"testing"
)

func TestPrometheusRuleObjectIsAccepted(t *testing.T) {
	rs, err := LoadRuleFiles("testdata/prometheusrule.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g := rs.Groups["testdata/prometheusrule.yaml"].Groups
	if len(g) != 1 || g[0].Name != "shop.rules" || g[0].Rules[0].Alert != "ShopDown" {
		t.Fatalf("unexpected groups: %+v", g)
	}
}

func TestBadRuleFileNamesFileLineGroupAndRule(t *testing.T) {
	_, err := LoadRuleFiles("testdata/bad.rules.yml")
	if err == nil {
		t.Fatal("a broken rule file loaded")
	}
	msg := err.Error()
	for _, want := range []string{
		`testdata/bad.rules.yml: 9:15: group "broken", rule 1, "Broken":`,
		`group "broken", rule 2, "job:up:sum": field 'expr' must be set in rule`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not contain %q:\n%s", want, msg)
		}
	}
}

func TestPrometheusRuleErrorsKeepOriginalLineNumbers(t *testing.T) {
	_, err := LoadRuleFiles("testdata/badspec.yaml")
	if err == nil {
		t.Fatal("unknown field accepted")
	}
	// "lables" is on line 12 of the object.
	if !strings.Contains(err.Error(), "line 12: field lables not found") {
		t.Fatalf("error does not point at line 12: %v", err)
	}
}

func TestOtherKubernetesObjectsAreRejected(t *testing.T) {
	_, errs := ParseRules("cm.yaml", []byte("apiVersion: v1\nkind: ConfigMap\ndata: {}\n"))
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "not a rule file") {
		t.Fatalf("got %v", errs)
	}
}

func TestExpandRuleFiles(t *testing.T) {
	files, err := ExpandRuleFiles([]string{"embedded:*.rules.yml", "testdata/*.yaml", "embedded:*.rules.yml"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"embedded:node.rules.yml", "embedded:sources.rules.yml", "embedded:workload.rules.yml", "testdata/badspec.yaml", "testdata/prometheusrule.yaml"}
	if strings.Join(files, ",") != strings.Join(want, ",") {
		t.Fatalf("got %v, want %v", files, want)
	}
	if _, err := ExpandRuleFiles([]string{"testdata/missing.yml"}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("a missing plain path is not an error: %v", err)
	}
	if files, err := ExpandRuleFiles([]string{"testdata/*.nothing"}); err != nil || len(files) != 0 {
		t.Fatalf("an empty glob: %v %v", files, err)
	}
}

func TestConfigValidate(t *testing.T) {
	c := NewConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
	c = NewConfig()
	c.EvaluationInterval = 0
	c.RuleFiles = []string{"testdata/bad.rules.yml"}
	c.AlertmanagerWebhook.Enabled = true
	c.RemoteQueries = []RemoteQueryConfig{{Name: "c", URL: "ftp://x", Groups: []string{"("}}}
	err := c.Validate()
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	for _, want := range []string{
		"evaluation_interval: must be at least 100ms",
		"alertmanager_webhook: needs authentication",
		"remote_queries[0].url: must be an http(s) URL",
		"remote_queries[0].groups[0]: error parsing regexp",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	// Validate reads no file; Check loads the rule files.
	if strings.Contains(err.Error(), "rule_files") {
		t.Errorf("Validate read the rule files: %v", err)
	}
	if _, err := c.Check(); err == nil || !strings.Contains(err.Error(), `rule_files: testdata/bad.rules.yml: 9:15: group "broken"`) {
		t.Errorf("Check: %v", err)
	}
}

// The token and TLS files the section names are read by Check, not by
// Validate: a missing one is an error naming its field, before anything is
// applied.
func TestCheckReadsTokenAndTLSFiles(t *testing.T) {
	c := NewConfig()
	c.RuleFiles = nil
	c.AlertmanagerWebhook.Enabled = true
	c.AlertmanagerWebhook.BearerTokenFile = "testdata/missing-token"
	c.RemoteQueries = []RemoteQueryConfig{{Name: "central", URL: "http://prometheus:9090", Groups: []string{".*"}}}
	c.RemoteQueries[0].TLS.CAFile = "testdata/missing-ca.pem"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate read a file: %v", err)
	}
	_, err := c.Check()
	for _, want := range []string{"alertmanager_webhook.bearer_token_file", "remote_queries[0].tls.ca_file"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v; want %s", err, want)
		}
	}
}
