package testenv

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The harness finds binaries by the key build.sh files them under: both
// must hash a tool module the same way.
func TestToolKeyMatchesBuildScript(t *testing.T) {
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"etcd", "kube", "otelcol", "victorialogs"} {
		out, err := exec.Command("bash", filepath.Join(root, "hack/testenv/build.sh"), "--key", tool).Output()
		if err != nil {
			t.Fatalf("build.sh --key %s: %v", tool, err)
		}
		got, err := toolKey(filepath.Join(root, "tools", tool))
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.TrimSpace(string(out)); got != want {
			t.Errorf("toolKey(%s) = %s, build.sh says %s", tool, got, want)
		}
	}
}

func TestMergeFlags(t *testing.T) {
	got := mergeFlags([]string{"--a=1", "--b=2"}, []string{"--b=3", "--c=4"})
	if strings.Join(got, " ") != "--a=1 --b=3 --c=4" {
		t.Fatalf("mergeFlags = %v", got)
	}
}
