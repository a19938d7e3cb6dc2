package image

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// GoBuild is a `go build` of one main package into a static, stripped
// binary for one platform, the kind of binary an image of this package
// holds: CGO_ENABLED=0, -trimpath, -buildvcs=false, -ldflags "-s -w" and
// the extra LDFlags. With the same tree, toolchain and flags the binary is
// the same byte for byte.
type GoBuild struct {
	// Dir is the go command's working directory (inside the module);
	// empty means the current directory.
	Dir string
	// Package is the main package, as an import path or relative to Dir.
	Package string
	// Platform sets GOOS and GOARCH, and GOARM for arm's "v6"/"v7" variant.
	Platform v1.Platform
	// Tags are the build tags (-tags).
	Tags []string
	// LDFlags are added to "-s -w", e.g. "-X", "pkg.Var=value"; they are
	// joined with spaces into one -ldflags value, so quote a value that
	// holds spaces as the go command's flag parser expects: "'pkg.Var=a b'".
	LDFlags []string
	// Go is the go command; empty means "go" on PATH.
	Go string
}

// Build compiles the package into outDir (created if missing; empty means a
// new temporary folder, which the caller removes) and returns the binary's
// path, named after the package and platform ("vigil-linux-arm64"). The go
// command's output is part of the error when it fails.
func (b GoBuild) Build(ctx context.Context, outDir string) (string, error) {
	if b.Package == "" {
		return "", fmt.Errorf("go build: no package")
	}
	if b.Platform.OS == "" || b.Platform.Architecture == "" {
		return "", fmt.Errorf("go build %s: platform %q: need os/arch", b.Package, b.Platform.String())
	}
	var err error
	if outDir == "" {
		if outDir, err = os.MkdirTemp("", "vigil-gobuild-"); err != nil {
			return "", fmt.Errorf("go build %s: %w", b.Package, err)
		}
	} else if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("go build %s: %w", b.Package, err)
	}
	base := path.Base(strings.TrimSuffix(filepath.ToSlash(b.Package), "/"))
	if base == "." || base == "/" || base == "" {
		base = "main"
	}
	plat := b.Platform.OS + "-" + b.Platform.Architecture
	if b.Platform.Variant != "" {
		plat += "-" + b.Platform.Variant
	}
	out, err := filepath.Abs(filepath.Join(outDir, base+"-"+plat))
	if err != nil {
		return "", fmt.Errorf("go build %s: %w", b.Package, err)
	}

	goCmd := b.Go
	if goCmd == "" {
		goCmd = "go"
	}
	ldflags := append([]string{"-s", "-w"}, b.LDFlags...)
	args := []string{"build", "-trimpath", "-buildvcs=false"}
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	args = append(args, "-ldflags", strings.Join(ldflags, " "), "-o", out, b.Package)
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = b.Dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+b.Platform.OS, "GOARCH="+b.Platform.Architecture)
	if b.Platform.Architecture == "arm" && strings.HasPrefix(b.Platform.Variant, "v") {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(b.Platform.Variant, "v"))
	}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s for %s: %w\n%s", b.Package, b.Platform.String(), err, strings.TrimSpace(output.String()))
	}
	return out, nil
}
