//go:build linux

package host

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestRealFilesystemFillingUp mounts a real 32 MiB ext4 image on a loop
// device, as the fault suite's node-filesystem scenario does, and fills
// it: the collector reports the mount with node_exporter's labels, and the
// available share falls below VigilNodeFilesystemAlmostFull's 5 % while the
// filesystem stays writable (node_filesystem_readonly 0), the inputs of
// the default node alerts.
func TestRealFilesystemFillingUp(t *testing.T) {
	testenv.RequireRoot(t, "mounting a loop device")
	for _, tool := range []string{"mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (hack/apt/host.txt installs e2fsprogs and util-linux): %v", tool, err)
		}
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	run := func(name string, args ...string) {
		t.Helper()
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 32<<20); err != nil {
		t.Fatal(err)
	}
	run("mkfs.ext4", "-q", "-F", "-m", "0", img)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	run("mount", "-o", "loop", img, mnt)
	t.Cleanup(func() { run("umount", "-d", mnt) })

	c, err := New(NewConfig(), collectors.Settings{Paths: collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	var files float64
	read := func() (size, avail, ro float64, labels map[string]string) {
		t.Helper()
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(asPrometheus{c})
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		size, avail, ro, files = -1, -1, -1, -1
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				l := map[string]string{}
				for _, lp := range m.GetLabel() {
					l[lp.GetName()] = lp.GetValue()
				}
				if l["mountpoint"] != mnt {
					continue
				}
				labels = l
				switch mf.GetName() {
				case "node_filesystem_size_bytes":
					size = m.GetGauge().GetValue()
				case "node_filesystem_avail_bytes":
					avail = m.GetGauge().GetValue()
				case "node_filesystem_readonly":
					ro = m.GetGauge().GetValue()
				case "node_filesystem_files":
					files = m.GetGauge().GetValue()
				}
			}
		}
		if size <= 0 || avail < 0 || ro < 0 || files <= 0 {
			t.Fatalf("mount %s not reported (size %v, avail %v, readonly %v, inodes %v)", mnt, size, avail, ro, files)
		}
		return size, avail, ro, labels
	}

	size, avail, ro, labels := read()
	if labels["fstype"] != "ext4" || !strings.HasPrefix(labels["device"], "/dev/loop") {
		t.Errorf("labels %v, want fstype ext4 and a /dev/loop device", labels)
	}
	if avail/size < 0.8 || ro != 0 {
		t.Fatalf("fresh filesystem: %v of %v available, readonly %v", avail, size, ro)
	}
	before := avail

	// Fill it to within 64 KiB of full.
	f, err := os.Create(filepath.Join(mnt, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	for n := int(avail)/len(buf) - 1; n > 0; n-- {
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	size, avail, ro, _ = read()
	if avail/size >= 0.05 || ro != 0 {
		t.Errorf("filled: %v of %v bytes available (%.3f), readonly %v; want under 5 %% and writable", avail, size, avail/size, ro)
	}
	t.Logf("%s on %s: %s available before, %s after filling (%.1f%% of %s)", labels["device"], mnt,
		mib(before), mib(avail), 100*avail/size, mib(size))
}

func mib(v float64) string { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
