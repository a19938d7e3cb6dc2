package testenv

import (
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-agent/vigil/internal/image"
)

// PauseRef is the pause image's reference: the test node's pod sandbox image
// (containerd's pinned sandbox image), loaded by [PauseImage]'s tar.
const PauseRef = "vigil.local/pause:1"

// PausePackage is the pause program's package (internal/testenv/pause).
const PausePackage = "github.com/vigil-agent/vigil/internal/testenv/pause"

// hostPlatform is the platform of the images the test node runs.
func hostPlatform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// GoImage builds the Go main package pkg (an import path inside this
// repository, e.g. "github.com/vigil-agent/vigil/internal/testenv/pause")
// for linux and the host's GOARCH as a static, stripped binary with the
// extra ldflags, wraps it into a one-layer image with internal/image (the
// binary at /<last element of pkg>, which is the entrypoint; an empty /tmp;
// nothing else) and writes a docker-archive tar tagged ref (fully
// qualified, e.g. "vigil.local/app:1") into t.TempDir(). It returns the tar's
// path, for `ctr -n k8s.io images import --local PATH`; Pods then name ref
// with imagePullPolicy: Never. It fails the test on any error.
func GoImage(t TB, ref, pkg string, ldflags ...string) string {
	t.Helper()
	if short() {
		t.Skipf("-short (make test-unit): builds the image %s with the go command", ref)
	}
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	dir := t.TempDir()
	p := hostPlatform()
	bin, err := image.GoBuild{Dir: root, Package: pkg, Platform: p, LDFlags: ldflags}.Build(t.Context(), dir)
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	name := path.Base(strings.TrimSuffix(pkg, "/"))
	img, err := image.Build(bin, p, image.Config{
		Path:        "/" + name,
		Annotations: map[string]string{image.AnnotationTitle: name},
	})
	if err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	tarPath := filepath.Join(dir, name+"-image.tar")
	if err := image.WriteDockerArchive(tarPath, ref, img); err != nil {
		t.Fatalf("image %s: %v", ref, err)
	}
	if err := os.Remove(bin); err != nil {
		t.Logf("image %s: %v", ref, err)
	}
	t.Logf("image %s: built %s in %v", ref, pkg, time.Since(start).Round(time.Millisecond))
	return tarPath
}

// PauseImage builds the pause image ([PauseRef], from internal/testenv/pause)
// and returns its docker-archive tar; see [GoImage].
func PauseImage(t TB) string {
	t.Helper()
	return GoImage(t, PauseRef, PausePackage)
}

// VigilImage builds the agent's image from this tree for the host's
// architecture with the same code as `make image` (internal/image:
// [image.BuildVigil], the same binary flags, configuration and annotations),
// tagged as the chart and the kustomize base name it by default,
// ghcr.io/vigil-agent/vigil:<appVersion of Chart.yaml>. It returns the
// docker-archive tar's path (in t.TempDir()) and that reference. The version
// and time come from git as for `make image`; without git, the version is
// the chart's appVersion and the time the Unix epoch.
func VigilImage(t TB) (tarPath, ref string) {
	t.Helper()
	if short() {
		t.Skipf("-short (make test-unit): builds the Vigil image with the go command")
	}
	start := time.Now()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("vigil image: %v", err)
	}
	tag, err := image.ChartAppVersion(root)
	if err != nil {
		t.Fatalf("vigil image: %v", err)
	}
	ref = image.VigilRef(tag)
	rel, err := image.ReleaseFromGit(t.Context(), root)
	if err != nil {
		t.Logf("vigil image: %v; version %s", err, tag)
		rel = image.Release{Version: tag, Revision: "unknown", Branch: "main"}
	}
	dir := t.TempDir()
	images, err := image.BuildVigil(t.Context(), root, rel, []v1.Platform{hostPlatform()}, dir)
	if err != nil {
		t.Fatalf("vigil image: %v", err)
	}
	tarPath = filepath.Join(dir, "vigil-image-"+runtime.GOARCH+".tar")
	if err := image.WriteDockerArchive(tarPath, ref, images[0]); err != nil {
		t.Fatalf("vigil image: %v", err)
	}
	t.Logf("vigil image %s (version %s): built in %v", ref, rel.Version, time.Since(start).Round(time.Millisecond))
	return tarPath, ref
}
