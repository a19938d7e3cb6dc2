// Command image builds Vigil's OCI image without Docker (`make image`,
// `make image-push`): it compiles ./cmd/vigil for each platform as a static,
// stripped binary with the Makefile's version ldflags, wraps each binary into
// a one-layer image on an empty base (internal/image), and writes
//
//	OUT/vigil-image/             an OCI image layout holding the index of all platforms
//	OUT/vigil-image-<arch>.tar   one docker-archive per platform (docker load, ctr images import, kind load)
//
// tagged REPOSITORY:TAG, then prints the index digest on stdout (the rest
// goes to stderr). With -push REGISTRY it also pushes the index to
// REGISTRY/vigil:TAG with the Docker config's credentials.
//
// The image is reproducible: the version and revision come from git, and
// every time in it is SOURCE_DATE_EPOCH or the commit time of HEAD, so the
// same tree gives the same digest. With -version, -revision and
// SOURCE_DATE_EPOCH it needs no git (a source archive builds the same image).
//
// This program is not part of the agent binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-agent/vigil/internal/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	var (
		root       = fs.String("C", ".", "repository root (where go.mod is)")
		version    = fs.String("version", "", "version written into the binary and the annotations (default: git describe --tags --always --dirty)")
		revision   = fs.String("revision", "", "revision written into the binary and the annotations (default: git rev-parse HEAD)")
		branch     = fs.String("branch", "main", "branch written into the binary (as the Makefile's LDFLAGS)")
		repository = fs.String("repository", image.VigilRepository, "repository of the tag in the OCI layout and the docker-archives")
		tag        = fs.String("tag", "", "image tag (default: appVersion of "+image.ChartFile+")")
		platforms  = fs.String("platforms", image.VigilPlatforms, "comma-separated os/arch[/variant] list")
		out        = fs.String("out", "bin", "output folder")
		push       = fs.String("push", "", "also push the index to REGISTRY/vigil:TAG (e.g. registry.example.com/team)")
	)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	plats, err := image.Platforms(*platforms)
	if err != nil {
		return err
	}
	rootDir, err := filepath.Abs(*root)
	if err != nil {
		return err
	}
	rel, err := release(ctx, rootDir, *version, *revision)
	if err != nil {
		return err
	}
	rel.Branch = *branch
	if *tag == "" {
		if *tag, err = image.ChartAppVersion(rootDir); err != nil {
			return err
		}
	}
	ref := *repository + ":" + *tag
	if _, err := image.ParseTag(ref); err != nil {
		return err
	}
	var pushRef string
	if *push != "" {
		pushRef = strings.TrimSuffix(*push, "/") + "/vigil:" + *tag
		if _, err := image.ParseTag(pushRef); err != nil {
			return fmt.Errorf("-push: %w", err)
		}
	}

	tmp, err := os.MkdirTemp("", "vigil-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	logf("vigil image %s: version %s, revision %s, created %s", ref, rel.Version, rel.Revision, rel.Created.Format("2006-01-02T15:04:05Z"))
	images, err := image.BuildVigil(ctx, rootDir, rel, plats, tmp)
	if err != nil {
		return err
	}
	idx, err := image.Index(rel.Annotations(), images...)
	if err != nil {
		return err
	}

	outDir := *out
	if !filepath.IsAbs(outDir) {
		outDir = filepath.Join(rootDir, outDir)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for i, img := range images {
		path := filepath.Join(outDir, "vigil-image-"+archName(plats[i])+".tar")
		if err := image.WriteDockerArchive(path, ref, img); err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		logf("  %-13s %s  %s", plats[i].String(), d, relPath(rootDir, path))
	}
	layoutDir := filepath.Join(outDir, "vigil-image")
	if err := image.WriteLayout(layoutDir, ref, idx); err != nil {
		return err
	}
	d, err := idx.Digest()
	if err != nil {
		return err
	}
	logf("  %-13s %s  %s (OCI layout)", "index", d, relPath(rootDir, layoutDir))
	if pushRef != "" {
		if err := image.Push(ctx, pushRef, idx); err != nil {
			return err
		}
		logf("pushed %s@%s", pushRef, d)
	}
	if ctx.Err() != nil {
		return errors.New("interrupted")
	}
	fmt.Println(d)
	return nil
}

// release is the release of the tree at root: version and revision from
// the flags, else from git; the time from SOURCE_DATE_EPOCH, else the commit
// time of HEAD. With both flags and SOURCE_DATE_EPOCH set, git is not needed
// (a source archive without .git builds the same image).
func release(ctx context.Context, root, version, revision string) (image.Release, error) {
	if epoch := os.Getenv("SOURCE_DATE_EPOCH"); version != "" && revision != "" && epoch != "" {
		sec, err := strconv.ParseInt(epoch, 10, 64)
		if err != nil {
			return image.Release{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
		}
		return image.Release{Version: version, Revision: revision, Created: time.Unix(sec, 0).UTC()}, nil
	}
	rel, err := image.ReleaseFromGit(ctx, root)
	if err != nil {
		return image.Release{}, err
	}
	if version != "" {
		rel.Version = version
	}
	if revision != "" {
		rel.Revision = revision
	}
	return rel, nil
}

// archName names a platform in a file name: "amd64", "arm64", "arm-v7".
func archName(p v1.Platform) string {
	if p.Variant != "" {
		return p.Architecture + "-" + p.Variant
	}
	return p.Architecture
}

// relPath shows path relative to root when it is inside it.
func relPath(root, path string) string {
	if r, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}
