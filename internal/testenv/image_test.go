package testenv_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// loadArchive reads a docker-archive tar as containerd's import would: the
// image tagged ref, its config, and the files of its only layer.
func loadArchive(t *testing.T, path, ref string) (*v1.ConfigFile, map[string][]byte) {
	t.Helper()
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(path) })
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 1 || !cmp.Equal(m[0].RepoTags, []string{ref}) {
		t.Fatalf("%s: manifest.json %+v, want one image tagged %s", path, m, ref)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
		t.Errorf("%s: platform %s/%s, want linux/%s", ref, cf.OS, cf.Architecture, runtime.GOARCH)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%s: %d layers, %v", ref, len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Mode&0o111 == 0 {
			t.Errorf("%s: %s is not executable", ref, hdr.Name)
		}
		files[hdr.Name] = b
	}
	return cf, files
}

// writeExe writes an executable from an image's layer to a temp file.
func writeExe(t *testing.T, b []byte, base string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), base)
	if err := os.WriteFile(p, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPauseImage: the tar holds /pause as its entrypoint; the program
// exits 0 on SIGTERM and, as PID 1 of a PID namespace, reaps the orphans
// handed to it.
func TestPauseImage(t *testing.T) {
	tarPath := testenv.PauseImage(t)
	cf, files := loadArchive(t, tarPath, testenv.PauseRef)
	if !cmp.Equal(cf.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	if _, ok := files["pause"]; !ok {
		t.Fatalf("no /pause in the layer: %v", keys(files))
	}
	pause := writeExe(t, files["pause"], "pause")

	t.Run("exits 0 on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(pause)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // let it install its signal handlers
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("pause after SIGTERM: %v, want exit 0", err)
		}
	})

	t.Run("reaps orphans as PID 1", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root for a PID namespace")
		}
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			t.Skip("no nsenter")
		}
		cmd := exec.Command(pause)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		time.Sleep(200 * time.Millisecond)
		// sh starts sleep in the background and exits: sleep is
		// reparented to the namespace's PID 1, pause.
		out, err := exec.Command(nsenter, "-t", strconv.Itoa(cmd.Process.Pid), "-p", "--",
			"sh", "-c", "sleep 300 >/dev/null 2>&1 &").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		var orphan int
		testenv.Eventually(t, 5*time.Second, 50*time.Millisecond, "sleep reparented to pause", func(ctx context.Context) error {
			orphan = childOf(cmd.Process.Pid)
			if orphan == 0 {
				return errors.New("pause has no child")
			}
			return nil
		})
		if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 5*time.Second, 50*time.Millisecond, "the killed orphan reaped", func(ctx context.Context) error {
			if st, err := os.ReadFile("/proc/" + strconv.Itoa(orphan) + "/stat"); err == nil {
				return errors.New("still there: " + string(st))
			}
			return nil
		})
	})
}

// childOf returns a child process of pid (0 for none) from /proc.
func childOf(pid int) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		n, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + d.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so cut at the last ')'.
		s := string(st)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			return n
		}
	}
	return 0
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestGoImageLdflags: GoImage passes ldflags to the build; the program runs.
func TestGoImageLdflags(t *testing.T) {
	const ref = "vigil.local/hello:1"
	tarPath := testenv.GoImage(t, ref, "github.com/vigil-agent/vigil/internal/image/testdata/hello", "-X", "main.greeting=bonjour")
	cf, files := loadArchive(t, tarPath, ref)
	if !cmp.Equal(cf.Config.Entrypoint, []string{"/hello"}) {
		t.Errorf("entrypoint %q", cf.Config.Entrypoint)
	}
	out, err := exec.Command(writeExe(t, files["hello"], "hello")).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != "bonjour linux/"+runtime.GOARCH {
		t.Errorf("hello: %q, %v", got, err)
	}
}

// TestVigilImage: the agent image from this tree, tagged as the chart's
// default image, runs `vigil version` with the version flags of the build.
func TestVigilImage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent")
	}
	tarPath, ref := testenv.VigilImage(t)
	chart, err := os.ReadFile("../../deploy/helm/vigil/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(chart, []byte("\nappVersion: "+strings.TrimPrefix(ref, "ghcr.io/vigil-agent/vigil:")+"\n")) {
		t.Errorf("ref %s is not ghcr.io/vigil-agent/vigil:<appVersion of Chart.yaml>", ref)
	}
	cf, files := loadArchive(t, tarPath, ref)
	want := v1.Config{
		Entrypoint:   []string{"/vigil"},
		Cmd:          []string{"run"},
		User:         "0",
		WorkingDir:   "/",
		ExposedPorts: map[string]struct{}{"19100/tcp": {}},
		Labels:       cf.Config.Labels,
	}
	if diff := cmp.Diff(want, cf.Config); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}
	for _, k := range []string{"org.opencontainers.image.version", "org.opencontainers.image.revision", "org.opencontainers.image.source"} {
		if cf.Config.Labels[k] == "" {
			t.Errorf("no label %s", k)
		}
	}
	out, err := exec.Command(writeExe(t, files["vigil"], "vigil"), "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), cf.Config.Labels["org.opencontainers.image.version"]) {
		t.Errorf("vigil version: %v\n%s\nwant version %s", err, out, cf.Config.Labels["org.opencontainers.image.version"])
	}
}
