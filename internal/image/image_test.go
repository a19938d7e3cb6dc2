package image_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/vigil-agent/vigil/internal/image"
)

const helloPkg = "./testdata/hello"

var (
	amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}
	arm64 = v1.Platform{OS: "linux", Architecture: "arm64"}
	// when is the fixed time of the test images (a commit time).
	when = time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
)

// hello builds testdata/hello for p into a new temporary folder, with its
// greeting set through ldflags.
func hello(t *testing.T, p v1.Platform) string {
	t.Helper()
	if testing.Short() {
		t.Skip("-short (make test-unit): builds binaries with the go command")
	}
	bin, err := image.GoBuild{Package: helloPkg, Platform: p, LDFlags: []string{"-X", "main.greeting=hi"}}.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func testConfig() image.Config {
	return image.Config{
		Path:         "/hello",
		Cmd:          []string{"-v"},
		Env:          []string{"A=1"},
		User:         "65534",
		ExposedPorts: []string{"8080"},
		Annotations: map[string]string{
			image.AnnotationVersion:  "v1.2.3",
			image.AnnotationRevision: "0123abcd",
			image.AnnotationSource:   "https://example.com/hello",
		},
		Created: when,
	}
}

func build(t *testing.T, bin string, p v1.Platform, c image.Config) v1.Image {
	t.Helper()
	img, err := image.Build(bin, p, c)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img); err != nil {
		t.Fatalf("invalid image: %v", err)
	}
	return img
}

func digest(t *testing.T, d interface{ Digest() (v1.Hash, error) }) v1.Hash {
	t.Helper()
	h, err := d.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// twoPlatforms builds hello for amd64 and arm64 and their index.
func twoPlatforms(t *testing.T) (v1.ImageIndex, []string) {
	t.Helper()
	bins := []string{hello(t, amd64), hello(t, arm64)}
	idx, err := image.Index(testConfig().Annotations,
		build(t, bins[0], amd64, testConfig()), build(t, bins[1], arm64, testConfig()))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid index: %v", err)
	}
	return idx, bins
}

// TestReproducibleImage: the same tree gives the same binary, image and index
// digests, built twice from scratch; another time gives another digest.
func TestReproducibleImage(t *testing.T) {
	idx1, bins1 := twoPlatforms(t)
	idx2, bins2 := twoPlatforms(t)
	for i := range bins1 {
		a, _ := os.ReadFile(bins1[i])
		b, _ := os.ReadFile(bins2[i])
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s and %s differ: the binary build is not reproducible", bins1[i], bins2[i])
		}
	}
	if d1, d2 := digest(t, idx1), digest(t, idx2); d1 != d2 {
		t.Errorf("same input, index digests %s and %s", d1, d2)
	}
	c := testConfig()
	c.Created = when.Add(time.Second)
	if d1, d2 := digest(t, build(t, bins1[0], amd64, testConfig())), digest(t, build(t, bins1[0], amd64, c)); d1 == d2 {
		t.Errorf("another creation time, same digest %s", d1)
	}
}

// TestImageIndex: the index lists linux/amd64 and linux/arm64 with OCI
// media types and the annotations, and each image's config says how to run
// the binary.
func TestImageIndex(t *testing.T) {
	idx, _ := twoPlatforms(t)
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s", im.MediaType)
	}
	want := testConfig().Annotations
	if diff := cmp.Diff(want, im.Annotations); diff != "" {
		t.Errorf("index annotations (-want +got):\n%s", diff)
	}
	var plats []string
	for _, d := range im.Manifests {
		plats = append(plats, d.Platform.String())
		if d.MediaType != types.OCIManifestSchema1 {
			t.Errorf("%s: media type %s", d.Platform, d.MediaType)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, m.Annotations); diff != "" {
			t.Errorf("%s: manifest annotations (-want +got):\n%s", d.Platform, diff)
		}
		if len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
			t.Errorf("%s: layers %+v, want one %s", d.Platform, m.Layers, types.OCILayer)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != d.Platform.Architecture || cf.OS != "linux" {
			t.Errorf("%s: config says %s/%s", d.Platform, cf.OS, cf.Architecture)
		}
		if !cf.Created.Time.Equal(when) || len(cf.History) != 1 || !cf.History[0].Created.Time.Equal(when) {
			t.Errorf("%s: created %v, history %+v; want %v", d.Platform, cf.Created, cf.History, when)
		}
		wantCfg := v1.Config{
			Entrypoint:   []string{"/hello"},
			Cmd:          []string{"-v"},
			Env:          []string{"A=1"},
			User:         "65534",
			WorkingDir:   "/",
			ExposedPorts: map[string]struct{}{"8080/tcp": {}},
			Labels:       want,
		}
		if diff := cmp.Diff(wantCfg, cf.Config); diff != "" {
			t.Errorf("%s: config (-want +got):\n%s", d.Platform, diff)
		}
	}
	if diff := cmp.Diff([]string{"linux/amd64", "linux/arm64"}, plats); diff != "" {
		t.Errorf("index platforms (-want +got):\n%s", diff)
	}
}

// TestImageLayerHoldsTheBinary: the layer holds /tmp (1777) and the entrypoint,
// which is the binary itself, executable, owned by root, dated the
// creation time; the binary is static and stripped and runs.
func TestImageLayerHoldsTheBinary(t *testing.T) {
	for _, p := range []v1.Platform{amd64, arm64} {
		t.Run(p.Architecture, func(t *testing.T) {
			bin := hello(t, p)
			img := build(t, bin, p, testConfig())
			files := layerFiles(t, img)
			var names []string
			for _, f := range files {
				names = append(names, f.hdr.Name)
				if f.hdr.Uid != 0 || f.hdr.Gid != 0 || f.hdr.Uname != "" || f.hdr.Gname != "" || !f.hdr.ModTime.Equal(when) {
					t.Errorf("%s: owner %d:%d (%q:%q) time %v; want 0:0 at %v", f.hdr.Name, f.hdr.Uid, f.hdr.Gid, f.hdr.Uname, f.hdr.Gname, f.hdr.ModTime, when)
				}
			}
			if diff := cmp.Diff([]string{"tmp/", "hello"}, names); diff != "" {
				t.Fatalf("layer entries (-want +got):\n%s", diff)
			}
			if tmp := files[0].hdr; tmp.Typeflag != tar.TypeDir || tmp.Mode != 0o1777 {
				t.Errorf("tmp/: type %c mode %o, want a folder 1777", tmp.Typeflag, tmp.Mode)
			}
			entry := files[1]
			if entry.hdr.Typeflag != tar.TypeReg || entry.hdr.Mode != 0o755 {
				t.Errorf("hello: type %c mode %o, want a 0755 file", entry.hdr.Typeflag, entry.hdr.Mode)
			}
			want, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(entry.data, want) {
				t.Errorf("the entrypoint's bytes (%d) are not the binary's (%d)", len(entry.data), len(want))
			}
			checkStaticStripped(t, entry.data, p.Architecture)
			if p.Architecture == runtime.GOARCH {
				exe := filepath.Join(t.TempDir(), "hello")
				if err := os.WriteFile(exe, entry.data, 0o755); err != nil {
					t.Fatal(err)
				}
				out, err := exec.Command(exe).CombinedOutput()
				if got := strings.TrimSpace(string(out)); err != nil || got != "hi linux/"+runtime.GOARCH {
					t.Errorf("running the entrypoint: %q, %v", got, err)
				}
			}
		})
	}
}

type file struct {
	hdr  *tar.Header
	data []byte
}

func layerFiles(t *testing.T, img v1.Image) []file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers: %d, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var out []file
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, file{hdr, data})
	}
}

// checkStaticStripped: an ELF for arch with no interpreter (static) and no
// symbol table (stripped).
func checkStaticStripped(t *testing.T, b []byte, arch string) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not an ELF file: %v", err)
	}
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[arch]
	if f.Machine != machine {
		t.Errorf("ELF machine %v, want %v", f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("program header %v: dynamically linked", p.Type)
		}
	}
	if s := f.Section(".symtab"); s != nil {
		t.Errorf("has .symtab: not stripped")
	}
	if s := f.Section(".debug_info"); s != nil {
		t.Errorf("has .debug_info: not stripped")
	}
}

// TestImageDockerArchive: the tar reads back with tarball.ImageFromPath under
// its tag, with the same config and layer; short names are refused.
func TestImageDockerArchive(t *testing.T) {
	const ref = "ghcr.io/vigil-agent/vigil:v0.1.0"
	img := build(t, hello(t, arm64), arm64, testConfig())
	path := filepath.Join(t.TempDir(), "hello-arm64.tar")
	if err := image.WriteDockerArchive(path, ref, img); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !cmp.Equal(m[0].RepoTags, []string{ref}) {
		t.Errorf("manifest.json: %+v, want one image tagged %s", m, ref)
	}
	for _, get := range []struct {
		what string
		f    func(v1.Image) (v1.Hash, error)
	}{
		{"config", func(i v1.Image) (v1.Hash, error) { return i.ConfigName() }},
		{"layer", func(i v1.Image) (v1.Hash, error) {
			ls, err := i.Layers()
			if err != nil {
				return v1.Hash{}, err
			}
			return ls[0].Digest()
		}},
	} {
		want, err1 := get.f(img)
		got, err2 := get.f(back)
		if err1 != nil || err2 != nil || want != got {
			t.Errorf("%s: wrote %s, read %s (%v, %v)", get.what, want, got, err1, err2)
		}
	}
	if err := validate.Image(back); err != nil {
		t.Errorf("read back: %v", err)
	}
	for _, bad := range []string{"vigil:1", "vigil-agent/vigil:1", "ghcr.io/vigil-agent/vigil"} {
		if err := image.WriteDockerArchive(filepath.Join(t.TempDir(), "x.tar"), bad, img); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// TestImageOCILayout: index.json names the index under its tag; writing again
// replaces the layout; a folder that is not a layout is left alone.
func TestImageOCILayout(t *testing.T) {
	idx, _ := twoPlatforms(t)
	dir := filepath.Join(t.TempDir(), "layout")
	for range 2 {
		if err := image.WriteLayout(dir, "ghcr.io/vigil-agent/vigil:v0.1.0", idx); err != nil {
			t.Fatal(err)
		}
	}
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("index.json lists %d entries, want 1", len(im.Manifests))
	}
	d := im.Manifests[0]
	if d.Digest != digest(t, idx) || d.MediaType != types.OCIImageIndex || d.Annotations[image.AnnotationRefName] != "v0.1.0" {
		t.Errorf("index.json entry %+v, want the index %s named v0.1.0", d, digest(t, idx))
	}
	if d.Annotations["io.containerd.image.name"] != "ghcr.io/vigil-agent/vigil:v0.1.0" {
		t.Errorf("index.json entry annotations %v: no io.containerd.image.name", d.Annotations)
	}
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o644)
		if e.IsDir() {
			want = fs.ModeDir | 0o755
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inner, err := top.ImageIndex(d.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(inner); err != nil {
		t.Errorf("index in the layout: %v", err)
	}
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := image.WriteLayout(other, "ghcr.io/vigil-agent/vigil:v0.1.0", idx); err == nil {
		t.Error("replaced a folder that is not an OCI layout")
	}
	if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
		t.Errorf("the other folder's file: %v", err)
	}
}

// TestImagePush pushes the index to go-containerregistry's registry and reads it
// back: same digest, both platforms pullable.
func TestImagePush(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	idx, _ := twoPlatforms(t)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/team/vigil:v0.1.0"
	if err := image.Push(t.Context(), ref, idx); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Index(tag, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, got) != digest(t, idx) {
		t.Errorf("pushed %s, registry has %s", digest(t, idx), digest(t, got))
	}
	for _, p := range []v1.Platform{amd64, arm64} {
		img, err := remote.Image(tag, remote.WithContext(t.Context()), remote.WithPlatform(p))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if err := validate.Image(img); err != nil {
			t.Errorf("%s from the registry: %v", p, err)
		}
	}
}

// TestImageVigilConfig: the agent image's configuration, the version flags and
// the chart's tag.
func TestImageVigilConfig(t *testing.T) {
	r := image.Release{Version: "v0.1.0-3-gabc", Revision: "abc123", Branch: "main", Created: when}
	c := image.VigilConfig(r)
	if c.Path != "/vigil" || !cmp.Equal(c.Entrypoint, []string{"/vigil"}) || !cmp.Equal(c.Cmd, []string{"run"}) ||
		c.User != "0" || !cmp.Equal(c.ExposedPorts, []string{"19100/tcp"}) || !c.Created.Equal(when) {
		t.Errorf("VigilConfig: %+v", c)
	}
	for k, v := range map[string]string{
		image.AnnotationVersion:  "v0.1.0-3-gabc",
		image.AnnotationRevision: "abc123",
		image.AnnotationSource:   image.VigilSource,
		image.AnnotationCreated:  "2026-11-30T12:00:00Z",
	} {
		if c.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, c.Annotations[k], v)
		}
	}
	wantLD := []string{
		"-X", "github.com/prometheus/common/version.Version=v0.1.0-3-gabc",
		"-X", "github.com/prometheus/common/version.Revision=abc123",
		"-X", "github.com/prometheus/common/version.Branch=main",
	}
	if diff := cmp.Diff(wantLD, image.VigilGoBuild("/src", amd64, r).LDFlags); diff != "" {
		t.Errorf("ldflags (-want +got):\n%s", diff)
	}
	tag, err := image.ChartAppVersion("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := image.ParseTag(image.VigilRef(tag)); err != nil {
		t.Errorf("chart tag %q: %v", tag, err)
	}
}
