package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"go.yaml.in/yaml/v3"
)

// Vigil's image: what `make image` (hack/image) builds and what
// internal/testenv loads into the test node, from the same code.
const (
	// VigilRepository is the repository the chart and the kustomize base
	// pull from; the tag is the chart's appVersion.
	VigilRepository = "ghcr.io/vigil-agent/vigil"
	// VigilPackage is the agent's main package.
	VigilPackage = "github.com/vigil-agent/vigil/cmd/vigil"
	// VigilPath is the agent binary's path in the image (its entrypoint).
	VigilPath = "/vigil"
	// VigilPort is the agent's HTTP port (metrics, API, probes).
	VigilPort = 19100
	// VigilSource is the source repository named in the annotations.
	VigilSource = "https://github.com/vigil-agent/vigil"
	// ChartFile is the chart's Chart.yaml, relative to the repository root;
	// its appVersion is the image tag of the release.
	ChartFile = "deploy/helm/vigil/Chart.yaml"
	// VigilPlatforms are the platforms `make image` builds by default.
	VigilPlatforms = "linux/amd64,linux/arm64"
	// versionPackage receives the version ldflags (as the Makefile's LDFLAGS).
	versionPackage = "github.com/prometheus/common/version"
)

// Release identifies what is built: it sets the binary's version variables
// (as `make build` does) and the image's annotations and time.
type Release struct {
	// Version is `git describe --tags --always --dirty` (Makefile VERSION).
	Version string
	// Revision is the commit (Makefile REVISION).
	Revision string
	// Branch is the branch name written into the binary.
	Branch string
	// Created is the image's time: SOURCE_DATE_EPOCH, or the commit time of
	// HEAD, so that the same tree gives the same digest.
	Created time.Time
}

// ReleaseFromGit reads the release of the repository at dir the way the
// Makefile does: version from `git describe --tags --always --dirty`,
// revision from `git rev-parse HEAD`, branch "main" (as the Makefile's
// LDFLAGS), and the time from SOURCE_DATE_EPOCH when set, else the commit
// time of HEAD (`git log -1 --format=%ct`).
func ReleaseFromGit(ctx context.Context, dir string) (Release, error) {
	git := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = dir
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(string(out)), nil
	}
	var r Release
	var err error
	if r.Version, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
		return Release{}, fmt.Errorf("release version: %w", err)
	}
	if r.Revision, err = git("rev-parse", "HEAD"); err != nil {
		return Release{}, fmt.Errorf("release revision: %w", err)
	}
	r.Branch = "main"
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		if epoch, err = git("log", "-1", "--format=%ct"); err != nil {
			return Release{}, fmt.Errorf("release time: %w", err)
		}
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return Release{}, fmt.Errorf("release time %q: %w", epoch, err)
	}
	r.Created = time.Unix(sec, 0).UTC()
	return r, nil
}

// LDFlags returns the -X flags that set the binary's version, revision and
// branch, as the Makefile's LDFLAGS.
func (r Release) LDFlags() []string {
	var out []string
	for _, kv := range [][2]string{{"Version", r.Version}, {"Revision", r.Revision}, {"Branch", r.Branch}} {
		if kv[1] != "" {
			out = append(out, "-X", versionPackage+"."+kv[0]+"="+kv[1])
		}
	}
	return out
}

// Annotations returns the OCI annotations of Vigil's manifests and index.
func (r Release) Annotations() map[string]string {
	created := Config{Created: r.Created}.created()
	a := map[string]string{
		AnnotationTitle:       "vigil",
		AnnotationDescription: "Vigil node agent: eBPF, metrics and logs, local rules and guarded self-healing",
		AnnotationSource:      VigilSource,
		AnnotationURL:         VigilSource,
		AnnotationCreated:     created.Format(time.RFC3339),
	}
	if r.Version != "" {
		a[AnnotationVersion] = r.Version
	}
	if r.Revision != "" {
		a[AnnotationRevision] = r.Revision
	}
	return a
}

// VigilConfig is the agent image's configuration: entrypoint /vigil with
// default arguments "run" (the DaemonSet's args replace them), user 0
// (the agent reads other users' /proc/<pid>; the DaemonSet says so too),
// port 19100/tcp and r's annotations.
func VigilConfig(r Release) Config {
	return Config{
		Path:         VigilPath,
		Entrypoint:   []string{VigilPath},
		Cmd:          []string{"run"},
		User:         "0",
		WorkingDir:   "/",
		ExposedPorts: []string{strconv.Itoa(VigilPort) + "/tcp"},
		Annotations:  r.Annotations(),
		Created:      r.Created,
	}
}

// VigilGoBuild is the build of the agent binary for platform p from the
// repository at root, with the version ldflags of r and the build tags of
// `make build` (none).
func VigilGoBuild(root string, p v1.Platform, r Release) GoBuild {
	return GoBuild{Dir: root, Package: VigilPackage, Platform: p, LDFlags: r.LDFlags()}
}

// BuildVigil builds the agent for each platform into tmp (a folder the
// caller owns) and wraps each binary into an image with [VigilConfig].
// The images are in the order of platforms.
func BuildVigil(ctx context.Context, root string, r Release, platforms []v1.Platform, tmp string) ([]v1.Image, error) {
	var images []v1.Image
	for _, p := range platforms {
		bin, err := VigilGoBuild(root, p, r).Build(ctx, tmp)
		if err != nil {
			return nil, err
		}
		img, err := Build(bin, p, VigilConfig(r))
		if err != nil {
			return nil, fmt.Errorf("vigil image for %s: %w", p.String(), err)
		}
		images = append(images, img)
	}
	return images, nil
}

// VigilRef is the agent image's reference for tag ("ghcr.io/vigil-agent/vigil:v0.1.0").
func VigilRef(tag string) string { return VigilRepository + ":" + tag }

// ChartAppVersion reads appVersion from the chart's Chart.yaml under the
// repository root: the image tag the chart and the kustomize base use.
func ChartAppVersion(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, ChartFile))
	if err != nil {
		return "", fmt.Errorf("chart appVersion: %w", err)
	}
	var chart struct {
		AppVersion string `yaml:"appVersion"`
	}
	if err := yaml.Unmarshal(b, &chart); err != nil {
		return "", fmt.Errorf("chart appVersion: %s: %w", ChartFile, err)
	}
	if chart.AppVersion == "" {
		return "", fmt.Errorf("chart appVersion: %s has none", ChartFile)
	}
	return chart.AppVersion, nil
}
