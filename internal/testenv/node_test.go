package testenv_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// hostState is what a real node could leave behind on the host, read from
// the host's own namespaces.
type hostState struct {
	links, routes, iptables, mounts string
	paths                           map[string]bool
	tunables                        map[string]string
}

// nodeFootprint are host paths the kubelet, containerd, runc, the CNI
// plugins and kube-proxy write by default.
var nodeFootprint = []string{
	"/var/lib/kubelet", "/var/lib/containerd", "/var/lib/cni", "/var/log/pods",
	"/var/log/containers", "/opt/containerd", "/opt/cni", "/run/containerd",
	"/run/nri", "/run/runc", "/etc/cni", "/etc/kubernetes", "/var/run/netns",
	"/run/xtables.lock", "/var/lib/kube-proxy",
}

// hostTunables are the global sysctls the kubelet and kube-proxy would set.
var hostTunables = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes", "net/netfilter/nf_conntrack_max",
}

func readHostState(t *testing.T) hostState {
	t.Helper()
	out := func(name string, args ...string) string {
		b, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v: %s", name, args, err, b)
		}
		return string(b)
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	s := hostState{
		links:    out("ip", "-o", "link", "show"),
		routes:   out("ip", "route", "show"),
		iptables: out("iptables-save"),
		mounts:   string(mi),
		paths:    map[string]bool{},
		tunables: map[string]string{},
	}
	for _, p := range nodeFootprint {
		_, err := os.Lstat(p)
		s.paths[p] = err == nil
	}
	for _, p := range hostTunables {
		b, _ := os.ReadFile(filepath.Join("/proc/sys", p))
		s.tunables[p] = strings.TrimSpace(string(b))
	}
	return s
}

// linesWith returns the lines of s that contain any of subs.
func linesWith(s string, subs ...string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		for _, sub := range subs {
			if sub != "" && strings.Contains(sc.Text(), sub) {
				out = append(out, sc.Text())
				break
			}
		}
	}
	return out
}

// nodeProcesses returns the host's processes that belong to the node: in
// its cgroup subtree, or started with a path in its folder.
func nodeProcesses(n *testenv.Node) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		cg, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cgroup"))
		cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		c := strings.ReplaceAll(string(cmd), "\x00", " ")
		if strings.Contains(string(cg), n.CgroupRoot+"/") || strings.Contains(c, n.Dir) {
			out = append(out, e.Name()+": "+c)
		}
	}
	return out
}

// TestRealNode starts the plane with a real node, runs a pod on it and
// checks what an SRE would: the node is Ready with the control plane's
// version and its InternalIP, the pod runs as a real container in the
// node's cgroups, the kubelet writes its CRI log folder, ClusterIP Services
// route (kube-proxy), and the API server reaches the kubelet (kubectl
// logs). After the node stops, nothing of it is left on the host: no
// processes, mounts, cgroups, iptables rules, links or routes, files in
// the places these daemons write by default, and no changed sysctls.
func TestRealNode(t *testing.T) {
	testenv.RequireRoot(t, "a real node")
	before := readHostState(t)
	var node testenv.Node
	t.Run("Run", func(t *testing.T) {
		start := time.Now()
		k := testenv.StartKubernetesWith(t, testenv.KubeOptions{RealNode: true})
		t.Logf("plane and real node up in %s", time.Since(start).Round(time.Millisecond))
		n := k.Node
		node = *n
		ctx := t.Context()
		c := k.Client()

		got, err := c.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if v := got.Status.NodeInfo.KubeletVersion; v != "v1.37.2" {
			t.Errorf("kubelet version %q, want v1.37.2", v)
		}
		if rt := got.Status.NodeInfo.ContainerRuntimeVersion; !strings.HasPrefix(rt, "containerd://") {
			t.Errorf("container runtime %q, want containerd://…", rt)
		}
		var internal string
		for _, a := range got.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				internal = a.Address
			}
		}
		if internal != n.IP {
			t.Errorf("InternalIP %q, want %q", internal, n.IP)
		}
		if out, err := k.Kubectl(t, "get", "nodes", "-o", "name"); err != nil || !strings.Contains(out, "node/"+n.Name) {
			t.Errorf("kubectl get nodes: %q, %v", out, err)
		}

		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "sleeper", Namespace: "default"},
			Spec: corev1.PodSpec{
				Containers: []corev1.Container{{
					Name: "sleeper", Image: testenv.PauseRef, ImagePullPolicy: corev1.PullNever,
				}},
				TerminationGracePeriodSeconds: new(int64),
			},
		}
		if _, err := c.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var running *corev1.Pod
		testenv.Eventually(t, time.Minute, 200*time.Millisecond, "pod sleeper Running and Ready", func(ctx context.Context) error {
			p, err := c.CoreV1().Pods("default").Get(ctx, "sleeper", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Status.Phase != corev1.PodRunning || len(p.Status.ContainerStatuses) == 0 || !p.Status.ContainerStatuses[0].Ready {
				return fmt.Errorf("phase %s, statuses %+v", p.Status.Phase, p.Status.ContainerStatuses)
			}
			running = p
			return nil
		})
		if running.Spec.NodeName != n.Name {
			t.Errorf("pod on node %q, want %q", running.Spec.NodeName, n.Name)
		}
		if !strings.HasPrefix(running.Status.PodIP, strings.TrimSuffix(n.PodCIDR, "0/24")) {
			t.Errorf("pod IP %q outside the node's pod range %s", running.Status.PodIP, n.PodCIDR)
		}
		// The container is a real process in the node's pod cgroups, and its
		// CRI log file is where an agent's hostPath /var/log/pods finds it.
		cid := running.Status.ContainerStatuses[0].ContainerID
		id := strings.TrimPrefix(cid, "containerd://")
		var inPodCgroup bool
		for _, line := range nodeProcesses(n) {
			pid, _, _ := strings.Cut(line, ":")
			cg, _ := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
			if strings.Contains(string(cg), n.CgroupRoot+"/kubepods/") && strings.Contains(string(cg), id) {
				inPodCgroup = true
			}
		}
		if !inPodCgroup {
			t.Errorf("no process in %s/kubepods/…/%s", n.CgroupRoot, id)
		}
		logDir := filepath.Join(n.HostPath("/var/log/pods"), fmt.Sprintf("default_sleeper_%s", running.UID), "sleeper")
		if _, err := os.Stat(filepath.Join(logDir, "0.log")); err != nil {
			t.Errorf("CRI log: %v", err)
		}
		if _, err := k.Kubectl(t, "logs", "-n", "default", "sleeper"); err != nil {
			t.Errorf("API server to kubelet: %v", err)
		}
		// kube-proxy routes the kubernetes Service's ClusterIP to the API
		// server, from inside the node as from its pods.
		svc, err := c.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		testenv.Eventually(t, 30*time.Second, 200*time.Millisecond, "ClusterIP routes", func(ctx context.Context) error {
			out, err := n.Output("curl", "-sk", "--max-time", "2", "https://"+svc.Spec.ClusterIP+"/readyz")
			if err != nil {
				return err
			}
			if strings.TrimSpace(out) != "ok" {
				return fmt.Errorf("readyz through the ClusterIP: %q", out)
			}
			return nil
		})
		if len(nodeProcesses(n)) == 0 {
			t.Errorf("no node processes found while it runs: the leftover check below would prove nothing")
		}
	})
	if node.Name == "" {
		return
	}

	after := readHostState(t)
	if ps := nodeProcesses(&node); len(ps) > 0 {
		t.Errorf("processes left:\n%s", strings.Join(ps, "\n"))
	}
	if m := linesWith(after.mounts, node.Dir, node.CgroupRoot); len(m) > 0 {
		t.Errorf("mounts left:\n%s", strings.Join(m, "\n"))
	}
	hs, _ := filepath.Glob("/sys/fs/cgroup/*" + node.CgroupRoot)
	if len(hs) > 0 {
		t.Errorf("cgroups left: %v", hs)
	}
	if after.iptables != before.iptables {
		t.Errorf("host iptables changed:\nbefore:\n%s\nafter:\n%s", before.iptables, after.iptables)
	}
	if l := linesWith(after.links, "vgln", "cni0", "veth"); len(l) > len(linesWith(before.links, "vgln", "cni0", "veth")) {
		t.Errorf("links left:\n%s", strings.Join(l, "\n"))
	}
	if r := linesWith(after.routes, node.PodCIDR, node.HostIP); len(r) > 0 {
		t.Errorf("routes left:\n%s", strings.Join(r, "\n"))
	}
	for p, had := range before.paths {
		if !had && after.paths[p] {
			t.Errorf("file left on the host: %s", p)
		}
	}
	for p, v := range before.tunables {
		if after.tunables[p] != v {
			t.Errorf("sysctl %s changed: %q, was %q", p, after.tunables[p], v)
		}
	}
}
