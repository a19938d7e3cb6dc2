package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ParseTag parses a fully qualified image reference with an explicit
// registry and tag, such as "ghcr.io/vigil-agent/vigil:v0.1.0" or
// "vigil.local/pause:1". A short name ("vigil:1") is refused: containerd
// would store it as docker.io/library/vigil:1, which a Pod naming "vigil:1"
// happens to find but which surprises everyone else.
func ParseTag(ref string) (name.Tag, error) {
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return name.Tag{}, fmt.Errorf("image: reference %q: %w", ref, err)
	}
	if reg := tag.RegistryStr(); len(ref) <= len(reg) || ref[:len(reg)+1] != reg+"/" {
		return name.Tag{}, fmt.Errorf("image: reference %q: not fully qualified (want REGISTRY/REPOSITORY:TAG)", ref)
	}
	return tag, nil
}

// WriteLayout writes idx as an OCI image layout in dir: dir/index.json names
// the index (its org.opencontainers.image.ref.name annotation is ref's tag,
// io.containerd.image.name the whole ref), and dir/blobs holds the index, the manifests, configs and
// layers. A layout already in dir is replaced; a dir holding anything else
// is refused.
func WriteLayout(dir, ref string, idx v1.ImageIndex) error {
	tag, err := ParseTag(ref)
	if err != nil {
		return err
	}
	if err := removeLayout(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		AnnotationRefName:           tag.TagStr(),
		annotationContainerdRefName: tag.String(),
	})); err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	// The layout writer leaves blobs 0600 and index.json 0755: make every
	// file 0644 and every folder 0755, as for any other build output.
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := fs.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(path, mode)
	})
	if err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	return nil
}

// annotationContainerdRefName is the full reference containerd gives an
// image it imports from an OCI layout archive (`ctr images import`).
const annotationContainerdRefName = "io.containerd.image.name"

// removeLayout removes dir if it is an OCI layout (has an oci-layout file)
// or an empty folder, and refuses to touch anything else.
func removeLayout(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("image: OCI layout %s: %w", dir, err)
	}
	if len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
			return fmt.Errorf("image: OCI layout %s: folder exists and is not an OCI layout; not replacing it", dir)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("image: replace OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteDockerArchive writes img as a docker-archive tar (the format of
// `docker save`) tagged ref, which must be fully qualified (see [ParseTag]).
// `docker load -i`, `ctr -n k8s.io images import --local` and `kind load
// image-archive` read it. A docker-archive holds one platform: write one
// per architecture.
func WriteDockerArchive(path, ref string, img v1.Image) error {
	tag, err := ParseTag(ref)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("image: docker-archive %s: %w", path, err)
	}
	return nil
}

// Push uploads idx with its images and layers to a registry and tags it
// ref (fully qualified, see [ParseTag]). Credentials come from the Docker
// config (~/.docker/config.json, credential helpers) via
// authn.DefaultKeychain; registries on localhost, loopback and private
// addresses are spoken to over plain HTTP, others over HTTPS.
func Push(ctx context.Context, ref string, idx v1.ImageIndex) error {
	tag, err := ParseTag(ref)
	if err != nil {
		return err
	}
	if err := remote.WriteIndex(tag, idx,
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(authn.DefaultKeychain),
	); err != nil {
		return fmt.Errorf("image: push %s: %w", ref, err)
	}
	return nil
}
