package faults

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func init() { extraScenarios = append(extraScenarios, fillScenario) }

// fillSize is the size of the fill scenario's filesystem.
const fillSize = 64 << 20

// fillState is the fill scenario's filesystem: an ext4 image on a loop
// device, mounted at dir.
type fillState struct {
	dir, dev string
}

// fill: a node filesystem fills up. The suite makes a 64 MiB ext4
// filesystem on a loop device and mounts it on the node at
// /tmp/vigil-fill-N (ext4: the default filesystem alerts leave tmpfs out);
// a fault app pod with a hostPath volume on it writes a file until ENOSPC
// (fault app mode fill). Vigil, installed from the chart with the node's /
// at /host/root, reads the node's mount table and stat's the mount there;
// VigilNodeFilesystemAlmostFull (under 5 % left, for 2 m) fires for that
// mount point. What to delete is a person's decision (evicting the pod or
// cordoning the node moves work without freeing the space), so the policy
// only escalates: the suite checks the escalation's labels (mount point,
// loop device, ext4) and that nothing was touched.
//
// In the test environment the node is a mount namespace of this host
// (internal/testenv): the agent reads the host's mount table (its procfs
// is the host's, pid 1's mountinfo) and stat's each mount in the node's
// tree, so the filesystem is mounted in both, at the same path: the same
// device, so the same filesystem, as on a real node where they are one.
func fillScenario() scenario {
	about := func(l map[string]string, _ string, st any) bool {
		return l["mountpoint"] == st.(*fillState).dir
	}
	escalated := escalatedOnlyAbout("fill", "nothing touched", about)
	return scenario{
		name: "fill", long: true, notify: true, app: "filler", about: about,
		setup: func(t *testing.T, e *env, ns string) any {
			fs := mountFill(t, e.c.k.Node)
			e.c.deploy(t, ns, "filler", appOpts{replicas: 1, hostDir: fs.dir, env: map[string]string{"FAULTS_FILL_DIR": "/data"}})
			// Gone before the filesystem is unmounted (cleanups run last
			// first), so that the loop device is free to detach.
			t.Cleanup(func() { e.c.deleteApp(t, ns, "filler") })
			return fs
		},
		inject: func(t *testing.T, e *env, ns string, _ any) time.Time {
			control(t, e.ctrl, "app-"+ns+"-filler", "fill")
			return time.Now()
		},
		// Nothing is to be acted on: any action is collateral.
		atFault: func(record, string, any) bool { return false },
		finish: func(ctx context.Context, t *testing.T, e *env, ns string, st any, t0 time.Time, res *result) {
			escalated(ctx, t, e, ns, st, t0, res)
			fs := st.(*fillState)
			x, ok := waitEscalationAbout(ctx, e, func(l map[string]string) bool { return about(l, ns, st) })
			if !ok {
				return
			}
			l := x.Alert.Labels
			if !strings.HasPrefix(l["alertname"], "VigilNodeFilesystem") || l["device"] != fs.dev || l["fstype"] != "ext4" {
				t.Errorf("fill: escalated alert's labels %v; want a VigilNodeFilesystem* alert for device %s, fstype ext4, mount point %s", l, fs.dev, fs.dir)
			}
			res.Notes = fmt.Sprintf("%s for %s (ext4, %d MiB, at /tmp/vigil-fill-N)", l["alertname"], l["device"], fillSize>>20)
		},
		clear: func(t *testing.T, e *env, ns string, _ any) { control(t, e.ctrl, "app-"+ns+"-filler", "") },
	}
}

// mountFill makes the fill scenario's filesystem: an ext4 image in the
// test's temp folder on a loop device, mounted at a new /tmp/vigil-fill-N
// on the host and in the node's mount namespace. Every step is undone when
// the test ends, whichever way it ends.
func mountFill(t *testing.T, n *testenv.Node) *fillState {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "vigil-fill-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("fill: %v", err)
		}
	})
	img := filepath.Join(t.TempDir(), "fill.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, fillSize); err != nil {
		t.Fatal(err)
	}
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("fill: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	run("mkfs.ext4", "-q", "-F", img)
	dev := run("losetup", "--find", "--show", img)
	t.Cleanup(func() {
		// On a device still open (a container's mount not yet gone) this
		// only sets autoclear: the kernel detaches it on the last close.
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("fill: losetup -d %s: %v: %s", dev, err, out)
		}
	})
	run("mount", "-t", "ext4", dev, dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("fill: umount %s: %v: %s", dir, err, out)
		}
	})
	if out, err := n.Output("mount", "-t", "ext4", dev, dir); err != nil {
		t.Fatalf("fill: mount in the node: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if _, err := n.Output("umount", dir); err != nil {
			t.Errorf("fill: umount in the node: %v", err)
		}
	})
	t.Logf("fill: %d MiB ext4 on %s at %s (host and node)", fillSize>>20, dev, dir)
	return &fillState{dir: dir, dev: dev}
}

// deleteApp deletes Deployment ns/name and waits, at most a minute, until
// its pods are gone (a slow deletion is logged, not failed).
func (c *cluster) deleteApp(t *testing.T, ns, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.client.AppsV1().Deployments(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Logf("delete deployment %s/%s: %v", ns, name, err)
		return
	}
	err := poll(ctx, func() bool {
		pods, err := c.pods(ctx, ns, name)
		return err == nil && len(pods) == 0
	})
	if err != nil {
		t.Logf("pods of %s/%s still there after a minute", ns, name)
	}
}
