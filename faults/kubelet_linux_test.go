package faults

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Annotations on a pod template that the stand-in kubelet reads.
const (
	annApp    = "faults.vigil.dev/app"    // "true": run the fault app for this pod
	annListen = "faults.vigil.dev/listen" // ip:port to listen on (default: podIP:8080)
	annCall   = "faults.vigil.dev/call"   // URL of the dependency the app calls
	annWork   = "faults.vigil.dev/workers"
	annServ   = "faults.vigil.dev/service-time"
	appPort   = 8080
)

// fakeKubelet stands in for the kubelet and the container runtime, which
// cannot run on this machine: for every pod kwok runs on its node it starts
// the fault app as a real process in a real memory cgroup laid out the way
// the kubelet's cgroupfs driver lays it out
// (…/kubepods/burstable/pod<uid>/<container id>), with the pod's memory limit,
// listening on the pod's IP (added to the loopback device), and restarts it
// when it exits (restartPolicy Always, with a 300 ms back-off instead of the
// kubelet's 10 s so that a crash loop is quick to see). Deleting the pod
// stops its process: SIGTERM, and SIGKILL 5 s later if it is still
// there. Everything Vigil observes (exits, OOM kills, TCP, HTTP) is real;
// only who starts the processes is not.
type fakeKubelet struct {
	t       *testing.T
	node    string
	exe     string
	ctrlDir string
	logDir  string
	cgRoot  string // where this kubelet's kubepods tree lives
	cgV2    bool

	mu   sync.Mutex
	pods map[string]*podRun // by pod UID
	ips  map[string]bool
	wg   sync.WaitGroup
}

type podRun struct {
	ns, name, app string
	cancel        context.CancelFunc
	starts        int
}

// memoryCgroupRoot returns the directory under which the kubelet makes its
// kubepods tree: the v1 memory hierarchy (or the unified one) at this
// process's own cgroup.
func memoryCgroupRoot(t *testing.T) (string, bool) {
	t.Helper()
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var v1, v2 string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1 = parts[2]
			}
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		return filepath.Join("/sys/fs/cgroup/memory", v1), false
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return filepath.Join("/sys/fs/cgroup", v2), true
	}
	t.Fatal("no memory cgroup hierarchy (neither v1 memory nor unified) is mounted")
	return "", false
}

func startFakeKubelet(t *testing.T, client kubernetes.Interface, node, ctrlDir string) *fakeKubelet {
	t.Helper()
	exe := faultAppBinary(t)
	root, v2 := memoryCgroupRoot(t)
	k := &fakeKubelet{
		t: t, node: node, exe: exe, ctrlDir: ctrlDir, logDir: t.TempDir(),
		cgRoot: filepath.Join(root, fmt.Sprintf("vigil-faults-%d", os.Getpid())), cgV2: v2,
		pods: map[string]*podRun{}, ips: map[string]bool{},
	}
	if err := os.MkdirAll(k.cgRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if v2 {
		// Children of the root need the memory controller enabled.
		_ = os.WriteFile(filepath.Join(filepath.Dir(k.cgRoot), "cgroup.subtree_control"), []byte("+memory"), 0o644)
		_ = os.WriteFile(filepath.Join(k.cgRoot, "cgroup.subtree_control"), []byte("+memory"), 0o644)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", node).String()
	}))
	inf := f.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { k.sync(o.(*corev1.Pod)) },
		UpdateFunc: func(_, o any) { k.sync(o.(*corev1.Pod)) },
		DeleteFunc: func(o any) {
			if p, ok := o.(*corev1.Pod); ok {
				k.stop(string(p.UID))
			} else if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				if p, ok := d.Obj.(*corev1.Pod); ok {
					k.stop(string(p.UID))
				}
			}
		},
	})
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
		k.mu.Lock()
		for uid := range k.pods {
			k.pods[uid].cancel()
		}
		k.mu.Unlock()
		k.wg.Wait()
		for ip := range k.ips {
			_ = exec.Command("ip", "addr", "del", ip+"/32", "dev", "lo").Run()
		}
		removeTree(k.cgRoot)
	})
	return k
}

// removeTree removes a cgroup tree, leaves first (rmdir only: cgroup files
// cannot be unlinked).
func removeTree(dir string) {
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		for j := 0; j < 100 && os.Remove(dirs[i]) != nil; j++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func (k *fakeKubelet) sync(p *corev1.Pod) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		k.stop(string(p.UID))
		return
	}
	if p.Annotations[annApp] != "true" || p.Status.PodIP == "" {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.pods[string(p.UID)]; ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &podRun{ns: p.Namespace, name: p.Name, app: p.Labels["app"], cancel: cancel}
	k.pods[string(p.UID)] = run
	listen := p.Annotations[annListen]
	if listen == "" {
		listen = p.Status.PodIP + ":" + strconv.Itoa(appPort)
	}
	if ip, _, err := splitHostPort(listen); err == nil && !k.ips[ip] {
		k.ips[ip] = true
		if out, err := exec.Command("ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput(); err != nil && !strings.Contains(string(out), "exists") {
			k.t.Logf("fake kubelet: ip addr add %s: %v: %s", ip, err, out)
		}
	}
	var limit int64
	for _, c := range p.Spec.Containers {
		if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
			limit = q.Value()
		}
	}
	podDir := filepath.Join(k.cgRoot, "kubepods", "burstable", "pod"+string(p.UID))
	env := []string{
		envAddr + "=" + listen,
		envControl + "=" + filepath.Join(k.ctrlDir, "pod-"+p.Name) + "," + filepath.Join(k.ctrlDir, "app-"+p.Namespace+"-"+p.Labels["app"]),
		envCall + "=" + p.Annotations[annCall],
		envWorkers + "=" + p.Annotations[annWork],
		envService + "=" + p.Annotations[annServ],
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
	}
	// The container's own environment, as the runtime passes it (literal
	// values only: the suite sets no references).
	for _, c := range p.Spec.Containers {
		for _, v := range c.Env {
			env = append(env, v.Name+"="+v.Value)
		}
	}
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		defer removeTree(podDir)
		for ctx.Err() == nil {
			k.runOnce(ctx, run, podDir, limit, env)
			select {
			case <-ctx.Done():
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
}

// runOnce starts the pod's container once, in a new container cgroup, and
// waits for it to exit or for the pod to go.
func (k *fakeKubelet) runOnce(ctx context.Context, run *podRun, podDir string, limit int64, env []string) {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	dir := filepath.Join(podDir, hex.EncodeToString(id))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		k.t.Logf("fake kubelet: %v", err)
		return
	}
	defer removeTree(dir)
	if limit > 0 {
		file, val := "memory.limit_in_bytes", strconv.FormatInt(limit, 10)
		if k.cgV2 {
			file = "memory.max"
			_ = os.WriteFile(filepath.Join(dir, "memory.swap.max"), []byte("0"), 0o644)
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(val), 0o644); err != nil {
			k.t.Logf("fake kubelet: set memory limit: %v", err)
		}
	}
	log, err := os.OpenFile(filepath.Join(k.logDir, run.ns+"_"+run.name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer log.Close()
	cmd := exec.Command("sh", "-c", `echo $$ > "$0/cgroup.procs" && exec "$@"`, dir, k.exe)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		k.t.Logf("fake kubelet: start %s/%s: %v", run.ns, run.name, err)
		return
	}
	k.mu.Lock()
	run.starts++
	k.mu.Unlock()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// As the kubelet stops a container: SIGTERM, then SIGKILL after
		// the grace period (here 5 s, not the default 30 s).
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopGrace):
			_ = cmd.Process.Kill()
			<-done
		}
	}
}

// stopGrace is the stand-in's termination grace period.
const stopGrace = 5 * time.Second

func (k *fakeKubelet) stop(uid string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if r, ok := k.pods[uid]; ok {
		r.cancel()
	}
}

// starts returns how many times the pod's container was started.
func (k *fakeKubelet) starts(ns, name string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.pods {
		if r.ns == ns && r.name == name {
			return r.starts
		}
	}
	return 0
}
