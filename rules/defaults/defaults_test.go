package defaults_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/rules"
	"github.com/vigil-agent/vigil/rules/ruletest"
)

// The default rule set passes its own unit tests, as embedded in the
// binary.
func TestDefaultRulesPassTheirUnitTests(t *testing.T) {
	var out, errOut bytes.Buffer
	if !ruletest.Run(&out, &errOut, ruletest.Options{}, "embedded:tests/*.test.yml") {
		t.Fatalf("default rule tests failed:\n%s%s", out.String(), errOut.String())
	}
	files, err := filepath.Glob("tests/*.test.yml")
	if err != nil || len(files) < 3 {
		t.Fatalf("test files: %v %v", files, err)
	}
	if n := strings.Count(out.String(), "SUCCESS"); n != len(files) {
		t.Fatalf("%d of the %d test files passed:\n%s", n, len(files), out.String())
	}
}

// Every default alert has a test: an alert nobody exercises could be
// silently broken by a metric rename.
func TestEveryDefaultAlertIsTested(t *testing.T) {
	files, err := rules.ExpandRuleFiles([]string{"embedded:*.rules.yml"})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := rules.LoadRuleFiles(files...)
	if err != nil {
		t.Fatal(err)
	}
	testFiles, err := filepath.Glob("tests/*.test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests []byte
	for _, f := range testFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		tests = append(tests, b...)
	}
	for _, f := range files {
		for _, g := range rs.Groups[f].Groups {
			for _, r := range g.Rules {
				if r.Alert != "" && !bytes.Contains(tests, []byte("alertname: "+r.Alert+"\n")) {
					t.Errorf("alert %s (%s) has no alert_rule_test", r.Alert, f)
				}
			}
		}
	}
}

// Prometheus's own promtool accepts the rule files and passes the same
// unit tests: the files are plain Prometheus rule files and our runner
// agrees with promtool.
func TestPromtoolAgrees(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (Debian package prometheus, hack/apt/rules.txt)")
		}
		t.Skip("promtool not installed (apt-get install prometheus)")
	}
	ruleFiles, _ := filepath.Glob("*.rules.yml")
	out, err := exec.Command(promtool, append([]string{"check", "rules"}, ruleFiles...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	testFiles, _ := filepath.Glob("tests/*.test.yml")
	out, err = exec.Command(promtool, append([]string{"test", "rules"}, testFiles...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
