package collectors

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No collector imports another: what they share (workload identity, the
// resolver, the registry) lives in collectors/workload and this package.
// Commands under a collector (collectors/ebpf/cmd/…) may import it.
func TestNoCollectorImportsAnother(t *testing.T) {
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	const module = "github.com/vigil-agent/vigil/collectors/"
	collectors := map[string]bool{}
	for _, e := range entries {
		if e.IsDir() && e.Name() != "workload" && e.Name() != "testdata" {
			collectors[e.Name()] = true
		}
	}
	if len(collectors) < 5 {
		t.Fatalf("found only %v", collectors)
	}
	for name := range collectors {
		ctx := build.Default
		ctx.GOOS = "linux"
		pkg, err := ctx.ImportDir(filepath.Join(".", name), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, imp := range append(append(pkg.Imports, pkg.TestImports...), pkg.XTestImports...) {
			other, ok := strings.CutPrefix(imp, module)
			if !ok {
				continue
			}
			other, _, _ = strings.Cut(other, "/")
			if collectors[other] && other != name {
				t.Errorf("collectors/%s imports %s: move what they share to collectors/workload", name, imp)
			}
		}
	}
}
