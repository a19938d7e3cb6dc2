package ruletest

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestPassingFile(t *testing.T) {
	var out, errOut bytes.Buffer
	if !Run(&out, &errOut, Options{}, "testdata/pass.test.yml") {
		t.Fatalf("failed:\n%s%s", out.String(), errOut.String())
	}
}

func TestFailingFileReportsLikePromtool(t *testing.T) {
	var out, errOut bytes.Buffer
	if Run(&out, &errOut, Options{}, "testdata/fail.test.yml") {
		t.Fatal("a failing test file passed")
	}
	for _, want := range []string{
		"alertname: InstanceDown, time: 5m",
		`expr: "job:up:sum", time: 5m`,
		`exp: {__name__="job:up:sum", job="api"} 3E+00`,
		`got: {__name__="job:up:sum", job="api"} 2E+00`,
	} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("missing %q in:\n%s", want, errOut.String())
		}
	}
	// --run selects no group: nothing fails.
	if !Run(&out, &errOut, Options{Run: []string{"^nothing$"}}, "testdata/fail.test.yml") {
		t.Error("--run did not filter test groups")
	}
}

// promtool reaches the same verdicts on the same files.
func TestSameVerdictAsPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is missing (Debian package prometheus)")
		}
		t.Skip("promtool not installed")
	}
	for file, pass := range map[string]bool{"testdata/pass.test.yml": true, "testdata/fail.test.yml": false} {
		err := exec.Command(promtool, "test", "rules", file).Run()
		if (err == nil) != pass {
			t.Errorf("promtool on %s: err=%v, want pass=%v", file, err, pass)
		}
		var out, errOut bytes.Buffer
		if Run(&out, &errOut, Options{}, file) != pass {
			t.Errorf("vigil on %s: want pass=%v", file, pass)
		}
	}
}
