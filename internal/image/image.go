// Package image builds OCI images that hold one static binary, without Docker
// and without a registry, on github.com/google/go-containerregistry: Vigil's
// release image (`make image`, hack/image) and the test environment's images
// (internal/testenv: the pause image and small workloads for the real node).
//
// # What an image holds
//
// An image is one layer on an empty base (scratch): the binary at
// [Config.Path] with mode 0755 and an empty /tmp with mode 1777 (the sticky,
// world-writable temp folder programs expect). Nothing else: no shell, no
// libc, no /etc/passwd (the user is numeric, see [Config.User]) and no CA
// certificates. A program that talks TLS to servers signed by public CAs
// needs a bundle mounted (for example the host's /etc/ssl/certs) and
// SSL_CERT_FILE or SSL_CERT_DIR pointing at it; Vigil's exporters usually
// talk to in-cluster endpoints whose CA is configured explicitly.
//
// # Reproducible
//
// The same binary and [Config] give the same digest: the layer's tar has
// every entry owned by 0:0 with no user or group names, one modification
// time ([Config.Created], the Unix epoch when zero) and a fixed order; the
// gzip stream carries no name or time; the config's created time and
// history are [Config.Created] too. hack/image takes that time from
// SOURCE_DATE_EPOCH or the commit time of HEAD, so the same tree gives the
// same digest. The binary itself is reproducible when built by [GoBuild]
// (-trimpath, -buildvcs=false, fixed ldflags).
//
// # Writers
//
// [Index] gathers one image per platform into an OCI image index;
// [WriteLayout] writes it as an OCI image layout folder, [WriteDockerArchive]
// writes one platform's image as a docker-archive tar (what `docker load`,
// `ctr images import` and `kind load image-archive` read), and [Push] sends
// the index to a registry with the credentials of the Docker config
// (authn.DefaultKeychain).
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCI annotation keys (image-spec annotations.md) that the images carry on
// their manifests, on the index and, as labels, in their configs.
const (
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationURL         = "org.opencontainers.image.url"
	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationDescription = "org.opencontainers.image.description"
	// AnnotationRefName is the tag of an image in an OCI layout's index.json.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Config is what an image holds besides the binary's bytes: where the binary
// goes and how a runtime starts it.
type Config struct {
	// Path is the binary's absolute path in the image, e.g. "/vigil".
	Path string
	// Entrypoint is the command a container runs; empty means [Path].
	Entrypoint []string
	// Cmd holds the default arguments (a Pod's args replace them).
	Cmd []string
	// Env holds KEY=value pairs.
	Env []string
	// User is the numeric user (and optional ":group") the process runs
	// as; numeric because the image has no /etc/passwd. Empty means root.
	User string
	// WorkingDir is the process's working directory; empty means "/".
	WorkingDir string
	// ExposedPorts lists "port/proto" entries such as "19100/tcp".
	ExposedPorts []string
	// Annotations go on the image manifest and, as labels, into the
	// config (org.opencontainers.image.version, revision, source, …).
	Annotations map[string]string
	// Created is the image's creation time and the modification time of
	// every file in it; the zero value means the Unix epoch.
	Created time.Time
}

// created returns c.Created, or the Unix epoch for the zero time, in UTC
// and whole seconds (what a tar header and RFC 3339 keep).
func (c Config) created() time.Time {
	if c.Created.IsZero() {
		return time.Unix(0, 0).UTC()
	}
	return c.Created.UTC().Truncate(time.Second)
}

// Build wraps the static binary in the file binary into a one-layer image
// for platform p (OS and Architecture, Variant for arm).
func Build(binary string, p v1.Platform, c Config) (v1.Image, error) {
	if p.OS == "" || p.Architecture == "" {
		return nil, fmt.Errorf("image: platform %q: need os/arch", p.String())
	}
	if !path.IsAbs(c.Path) || path.Clean(c.Path) != c.Path || c.Path == "/" {
		return nil, fmt.Errorf("image: binary path %q: want a clean absolute file path", c.Path)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("image: read binary: %w", err)
	}
	created := c.created()
	layerTar, err := layerTar(c.Path, bin, created)
	if err != nil {
		return nil, fmt.Errorf("image: layer of %s: %w", binary, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, fmt.Errorf("image: layer of %s: %w", binary, err)
	}

	// Hide the tarball layer's Descriptor method: it carries an empty,
	// non-nil annotations map that the manifest's raw JSON drops, so that
	// Manifest() and RawManifest() would disagree (validate.Image says so).
	layer = plainLayer{layer}

	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "vigil internal/image: " + c.Path,
			Comment:   "static binary on an empty base",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("image: append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image: config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: c.Entrypoint,
		Cmd:        c.Cmd,
		Env:        c.Env,
		User:       c.User,
		WorkingDir: c.WorkingDir,
		Labels:     maps.Clone(c.Annotations),
	}
	if len(cf.Config.Entrypoint) == 0 {
		cf.Config.Entrypoint = []string{c.Path}
	}
	if cf.Config.WorkingDir == "" {
		cf.Config.WorkingDir = "/"
	}
	if len(c.ExposedPorts) > 0 {
		cf.Config.ExposedPorts = map[string]struct{}{}
		for _, port := range c.ExposedPorts {
			if !strings.Contains(port, "/") {
				port += "/tcp"
			}
			cf.Config.ExposedPorts[port] = struct{}{}
		}
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image: set config: %w", err)
	}
	if len(c.Annotations) > 0 {
		img = mutate.Annotations(img, c.Annotations).(v1.Image)
	}
	// Compute the digest now so that a broken image fails here, not in a
	// writer.
	if _, err := img.Digest(); err != nil {
		return nil, fmt.Errorf("image: digest: %w", err)
	}
	return img, nil
}

// plainLayer is a v1.Layer with only the interface's methods.
type plainLayer struct{ v1.Layer }

// layerTar returns the uncompressed layer: the parent folders of binPath,
// the binary (0755) and /tmp (1777), all owned by 0:0 and dated mtime.
func layerTar(binPath string, bin []byte, mtime time.Time) ([]byte, error) {
	name := strings.TrimPrefix(binPath, "/")
	var dirs []string
	for d := path.Dir(name); d != "."; d = path.Dir(d) {
		dirs = append(dirs, d+"/")
	}
	if name != "tmp" && !strings.HasPrefix(name, "tmp/") {
		dirs = append(dirs, "tmp/")
	}
	sort.Strings(dirs)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := func(name string, typ byte, mode, size int64) *tar.Header {
		return &tar.Header{
			Typeflag: typ,
			Name:     name,
			Mode:     mode,
			Size:     size,
			ModTime:  mtime,
			Format:   tar.FormatPAX,
		}
	}
	for _, d := range dirs {
		mode := int64(0o755)
		if d == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(hdr(d, tar.TypeDir, mode, 0)); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(hdr(name, tar.TypeReg, 0o755, int64(len(bin)))); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Index gathers images, one per platform, into an OCI image index with
// annotations. Each entry's platform is read from its image's config.
func Index(annotations map[string]string, images ...v1.Image) (v1.ImageIndex, error) {
	if len(images) == 0 {
		return nil, fmt.Errorf("image: index of no images")
	}
	var adds []mutate.IndexAddendum
	seen := map[string]bool{}
	for _, img := range images {
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, fmt.Errorf("image: index: config: %w", err)
		}
		p := cf.Platform()
		if p == nil {
			return nil, fmt.Errorf("image: index: image without a platform")
		}
		if seen[p.String()] {
			return nil, fmt.Errorf("image: index: two images for %s", p)
		}
		seen[p.String()] = true
		m, err := img.Manifest()
		if err != nil {
			return nil, fmt.Errorf("image: index: manifest: %w", err)
		}
		adds = append(adds, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: p, Annotations: maps.Clone(m.Annotations)},
		})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	if len(annotations) > 0 {
		idx = mutate.Annotations(idx, annotations).(v1.ImageIndex)
	}
	if _, err := idx.Digest(); err != nil {
		return nil, fmt.Errorf("image: index digest: %w", err)
	}
	return idx, nil
}

// Platforms parses a comma-separated list such as "linux/amd64,linux/arm64".
func Platforms(list string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := v1.ParsePlatform(s)
		if err != nil {
			return nil, fmt.Errorf("image: platform %q: %w", s, err)
		}
		if p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("image: platform %q: want os/arch[/variant]", s)
		}
		out = append(out, *p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("image: no platform in %q", list)
	}
	return out, nil
}
