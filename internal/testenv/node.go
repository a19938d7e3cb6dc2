package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A real node is a kubelet with containerd, runc, the CNI plugins (bridge,
// host-local, loopback, portmap) and kube-proxy, registered with the test
// plane and running real containers. See [KubeOptions.RealNode].
//
// Its daemons run inside one extra network and mount namespace, held by a
// long-lived process ("holder"), so that everything a node changes lives
// there and vanishes with it: the pod bridge, veths, iptables rules, pod and
// Service IPs, and the mounts of pods' volumes and root filesystems. Inside
// that mount namespace the node's own folder is bind-mounted over /var/lib,
// /var/log, /run and /opt, so the paths the kubelet and containerd write
// regardless of their flags (/var/lib/kubelet/pki, /var/log/containers,
// /opt/containerd, /run/nri…) land in the test's temp folder, and a pod's
// hostPath /var/log/pods is [Node.HostPath]("/var/log/pods"). The kernel, the
// PID namespace and the cgroup tree are the host's, which is what a node
// agent must see: the node's processes live in the cgroup subtree
// [Node.CgroupRoot] of every hierarchy.
//
// Addressing: the node and the host share a veth link, 10.250.N.0/30 (host
// .1, node .2); pods get 10.245.N.0/24 behind the node's bridge, routed from
// the host through the node, so a process on the host (Prometheus, a test)
// reaches pod IPs directly, and pods reach the host's services on
// [Node.HostIP]. N is chosen per node so that nodes of concurrent tests do
// not collide.
type Node struct {
	// Name is the Node object's name.
	Name string
	// IP is the node's InternalIP: the kubelet listens there (port 10250).
	IP string
	// HostIP is the host's end of the node's link. Pods reach the host
	// here: a host service that pods must reach listens on HostIP (the API
	// server does).
	HostIP string
	// PodCIDR is the range pod IPs come from.
	PodCIDR string
	// CgroupRoot is the node's cgroup subtree ("/vigil-node-N"), the
	// kubelet's cgroupRoot: pods live under CgroupRoot/kubepods.
	CgroupRoot string
	// Dir is the node's folder in the test's temp folder.
	Dir string
	// Processes of the node, for logs and restarts.
	Containerd, Kubelet, KubeProxy *Process

	t         TB
	index     int
	holder    *Process
	hostLink  string
	socket    string
	ctrBin    string
	cgroupDir []string // <hierarchy>/<CgroupRoot> of every cgroup hierarchy
}

// nodeOverlays are the host folders the node's mount namespace replaces with
// folders of its own (they must exist on the host: a mount point is never
// created there). /run covers /var/run, a symlink to it on Debian.
var nodeOverlays = []string{"/var/lib", "/var/log", "/run", "/opt"}

// kernelTunables are the /proc/sys files the kubelet writes at start
// (container_manager_linux.go, setupKernelTunables). They are global to the
// host, not to a namespace, so inside the node's mount namespace each is
// covered with a file of the node's own holding the value the kubelet wants:
// the kubelet finds them set and the host's values stay as they were.
var kernelTunables = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// nodeBinaries are the cached binaries a real node needs.
var nodeBinaries = []string{
	"containerd", "ctr", "containerd-shim-runc-v2", "runc",
	"bridge", "host-local", "loopback", "portmap",
	"kubelet", "kube-proxy",
}

// prepareNode checks the node's requirements, creates its cgroup subtree,
// its namespaces and its link to the host. The control plane starts after
// it, listening on HostIP; [Node.start] then starts the daemons.
func prepareNode(t TB, dir string) *Node {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "a real node needs root (namespaces, cgroups, mounts)")
	}
	for _, b := range nodeBinaries {
		Binary(t, b)
	}
	for _, c := range []string{"unshare", "nsenter", "ip", "iptables", "mount"} {
		if _, err := exec.LookPath(c); err != nil {
			unavailable(t, "a real node needs %s on PATH (make deps)", c)
		}
	}
	n := &Node{t: t, Dir: filepath.Join(dir, "node")}
	n.socket = filepath.Join(n.Dir, "containerd.sock")
	n.ctrBin = Binary(t, "ctr")
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	// Cleanup runs in reverse order: this one, registered before any node
	// process, runs after every daemon's own stop.
	t.Cleanup(n.teardown)
	n.claimSubnet()
	n.makeCgroups()
	n.startHolder()
	n.wireNetwork()
	return n
}

// claimSubnet picks N and claims 10.245.N.0/24 by creating the host's link
// to the node: a name or route that exists already means another node has
// that N, and the next one is tried.
func (n *Node) claimSubnet() {
	t := n.t
	var b [2]byte
	_, _ = rand.Read(b[:])
	start := int(binary.BigEndian.Uint16(b[:]) % 250)
	for i := range 250 {
		idx := (start+i)%250 + 1
		link := fmt.Sprintf("vgln%d", idx)
		if _, err := net.InterfaceByName(link); err == nil {
			continue
		}
		if out, _ := exec.Command("ip", "route", "show", fmt.Sprintf("10.245.%d.0/24", idx)).Output(); len(strings.TrimSpace(string(out))) > 0 {
			continue
		}
		// The node's end is created in the host namespace under a temporary
		// name and moved into the node's namespace by wireNetwork.
		if err := run("ip", "link", "add", link, "type", "veth", "peer", "name", link+"n"); err != nil {
			if strings.Contains(err.Error(), "exists") {
				continue
			}
			t.Fatalf("testenv: node link: %v", err)
		}
		n.index, n.hostLink = idx, link
		n.Name = fmt.Sprintf("node-%d", idx)
		n.HostIP = fmt.Sprintf("10.250.%d.1", idx)
		n.IP = fmt.Sprintf("10.250.%d.2", idx)
		n.PodCIDR = fmt.Sprintf("10.245.%d.0/24", idx)
		n.CgroupRoot = fmt.Sprintf("/vigil-node-%d", idx)
		return
	}
	t.Fatalf("testenv: no free node subnet in 10.245.1-250.0/24")
}

// cgroupHierarchies returns the mount points of every cgroup (v1) and
// cgroup2 hierarchy on the host.
func cgroupHierarchies() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(post)
		pf := strings.Fields(pre)
		if len(fs) > 0 && len(pf) > 4 && (fs[0] == "cgroup" || fs[0] == "cgroup2") {
			out = append(out, pf[4])
		}
	}
	return out, sc.Err()
}

// makeCgroups creates CgroupRoot and CgroupRoot/runtime (the daemons' and
// shims' cgroup) in every hierarchy. cpuset children start with no CPUs or
// memory nodes, so those are copied from the parent.
func (n *Node) makeCgroups() {
	t := n.t
	hs, err := cgroupHierarchies()
	if err != nil || len(hs) == 0 {
		unavailable(t, "no cgroup hierarchies mounted (%v)", err)
	}
	for _, h := range hs {
		d := filepath.Join(h, n.CgroupRoot)
		for _, sub := range []string{d, filepath.Join(d, "runtime")} {
			if err := os.Mkdir(sub, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				t.Fatalf("testenv: cgroup %s: %v", sub, err)
			}
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				if v, err := os.ReadFile(filepath.Join(filepath.Dir(sub), f)); err == nil {
					_ = os.WriteFile(filepath.Join(sub, f), v, 0o644)
				}
			}
		}
		n.cgroupDir = append(n.cgroupDir, d)
	}
}

// joinArgs returns the arguments of the node's join script for a command:
// the script moves itself into CgroupRoot/runtime in every hierarchy, then
// enters the node's namespaces (unless holder is false) and runs the command.
func (n *Node) joinCommand(name string, inNode bool, path string, args ...string) Command {
	script := filepath.Join(n.Dir, "join.sh")
	if !fileExists(script) {
		writeFile(n.t, n.Dir, "join.sh", `#!/bin/sh
# join.sh PROCS... -- COMMAND...: joins each cgroup (its cgroup.procs file),
# then runs COMMAND.
while [ "$1" != "--" ]; do echo $$ > "$1" || exit 1; shift; done
shift
exec "$@"
`)
	}
	a := []string{script}
	for _, d := range n.cgroupDir {
		a = append(a, filepath.Join(d, "runtime", "cgroup.procs"))
	}
	a = append(a, "--")
	if inNode {
		a = append(a, "nsenter", "-t", strconv.Itoa(n.holder.Pid()), "-m", "-n", "--")
	}
	a = append(a, path)
	a = append(a, args...)
	return Command{Name: name, Path: "/bin/sh", Args: a, Dir: n.Dir}
}

// startHolder starts the process that holds the node's namespaces, then
// sets up the mounts inside them.
func (n *Node) startHolder() {
	t := n.t
	n.holder = StartProcess(t, n.joinCommand("node-namespaces", false,
		"unshare", "--mount", "--net", "--propagation", "private", "--", "sleep", "infinity"))
	// unshare execs sleep once the namespaces exist; wait for that.
	holderNS := func() error {
		a, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", n.holder.Pid()))
		if err != nil {
			return err
		}
		b, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			return err
		}
		if a == b {
			return errors.New("not yet in its own network namespace")
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", n.holder.Pid()))
		if !strings.HasSuffix(exe, "/sleep") {
			return errors.New("not yet running sleep")
		}
		return nil
	}
	if err := poll(t.Context(), 10*time.Second, 20*time.Millisecond, func(context.Context) error { return holderNS() }); err != nil {
		t.Fatalf("testenv: node namespaces: %v", err)
	}

	var script strings.Builder
	script.WriteString("set -e\n")
	root := filepath.Join(n.Dir, "root")
	for _, d := range nodeOverlays {
		src := filepath.Join(root, d)
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		fmt.Fprintf(&script, "mount --bind %s %s\n", src, d)
	}
	sysctl := filepath.Join(n.Dir, "sysctl")
	if err := os.MkdirAll(sysctl, 0o755); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	for name, v := range kernelTunables {
		f := writeFile(t, sysctl, strings.ReplaceAll(name, "/", "."), v+"\n")
		fmt.Fprintf(&script, "mount --bind %s /proc/sys/%s\n", f, name)
	}
	// The node's / is then made shared, as systemd makes it on a real
	// node: the namespace was made private (nothing in it propagates to
	// the host, nor the other way), and its mounts now form peer groups of
	// their own, so a pod that mounts a host folder with mountPropagation
	// HostToContainer (the runtime refuses it on a private mount) sees the
	// mounts made in the node after it started.
	script.WriteString("mount --make-rshared /\n")
	if err := n.inNode("sh", "-c", script.String()); err != nil {
		t.Fatalf("testenv: node mounts: %v", err)
	}
	// Folders the daemons expect.
	for _, d := range []string{"var/lib/kubelet", "var/log/pods", "var/log/containers", "run/containerd", "opt/cni/bin", "etc/cni/net.d"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
}

// wireNetwork moves the node's end of the link into its namespace and
// addresses both ends, routes the pod range through the node, and turns on
// forwarding inside the node. It also makes the pods' bridge, which the
// bridge plugin then adopts, with a MAC address of its own: a bridge
// without one takes the lowest MAC of its ports, so deleting a pod could
// change the gateway's MAC under the other pods, which then could not
// answer anyone outside their subnet until their ARP entries expired.
func (n *Node) wireNetwork() {
	t := n.t
	pid := strconv.Itoa(n.holder.Pid())
	steps := [][]string{
		{"ip", "link", "set", n.hostLink + "n", "netns", pid},
		{"ip", "addr", "add", n.HostIP + "/30", "dev", n.hostLink},
		{"ip", "link", "set", n.hostLink, "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			t.Fatalf("testenv: node network: %v", err)
		}
	}
	inside := fmt.Sprintf(`set -e
ip link set lo up
ip link set %[1]sn name eth0
ip addr add %[2]s/30 dev eth0
ip link set eth0 up
ip route add default via %[3]s
echo 1 > /proc/sys/net/ipv4/ip_forward
ip link add cni0 type bridge
ip link set cni0 address 02:42:0a:f5:%02[4]x:01
ip link set cni0 up
`, n.hostLink, n.IP, n.HostIP, n.index)
	if err := n.inNode("sh", "-c", inside); err != nil {
		t.Fatalf("testenv: node network: %v", err)
	}
	if err := run("ip", "route", "add", n.PodCIDR, "via", n.IP); err != nil {
		t.Fatalf("testenv: route to pods: %v", err)
	}
}

// inNode runs a command inside the node's namespaces and returns an error
// with its output when it fails.
func (n *Node) inNode(name string, args ...string) error {
	_, err := n.Output(name, args...)
	return err
}

// Output runs a command inside the node's network and mount namespaces (as
// the node's daemons see the world) and returns its combined output.
func (n *Node) Output(name string, args ...string) (string, error) {
	a := append([]string{"-t", strconv.Itoa(n.holder.Pid()), "-m", "-n", "--", name}, args...)
	out, err := exec.Command("nsenter", a...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// run runs a host command and returns an error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// HostPath returns where a path on the node (a hostPath volume's path, say)
// is on the host: under the node's folder for the overlaid folders
// (/var/lib, /var/log, /run, /opt), the path itself otherwise.
func (n *Node) HostPath(p string) string {
	p = filepath.Clean(p)
	for _, d := range nodeOverlays {
		if p == d || strings.HasPrefix(p, d+"/") {
			return filepath.Join(n.Dir, "root", p)
		}
	}
	return p
}

// start starts containerd, imports the pause image, then the kubelet and
// kube-proxy, and waits until the Node is Ready.
func (n *Node) start(k *Kube) {
	t := n.t
	start := time.Now()
	cniDir := filepath.Dir(Binary(t, "bridge"))
	for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
		if filepath.Dir(Binary(t, p)) != cniDir {
			t.Fatalf("testenv: CNI plugins are not in one folder")
		}
	}
	root := filepath.Join(n.Dir, "root")
	writeFile(t, filepath.Join(root, "etc/cni/net.d"), "10-vigil.conflist", fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "vigil-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": %q}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": %q
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, n.PodCIDR, filepath.Join(n.Dir, "cni-ipam")))
	runcBin := Binary(t, "runc")
	pauseTar := PauseImage(t)
	cfg := writeFile(t, n.Dir, "containerd.toml", fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[5]q
[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[7]q]
    conf_dir = %[8]q
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
[plugins.'io.containerd.nri.v1.nri']
  disable = true
`, filepath.Join(n.Dir, "containerd", "root"), filepath.Join(n.Dir, "containerd", "state"),
		n.socket, n.socket+".ttrpc", PauseRef, runcBin, cniDir, filepath.Join(root, "etc/cni/net.d")))

	// containerd finds its shim, and the shim runc, on PATH.
	path := strings.Join([]string{filepath.Dir(Binary(t, "containerd-shim-runc-v2")), filepath.Dir(runcBin), os.Getenv("PATH")}, ":")
	c := n.joinCommand("containerd", true, Binary(t, "containerd"), "--config="+cfg, "--log-level=warn")
	c.Env = []string{"PATH=" + path}
	c.Ready = SocketReady(n.socket)
	n.Containerd = StartProcess(t, c)
	n.ImportImage(t, pauseTar)

	// The kubelet: a client certificate as system:node:<name>, a serving
	// certificate for its IP, and a configuration for this kernel (cgroup v1,
	// cgroupfs, no swap check, no evictions on a busy test disk).
	nodeKey, err := k.ca.issue("system:node:"+n.Name, []string{"system:nodes"}, nil)
	if err != nil {
		t.Fatalf("testenv: kubelet certificate: %v", err)
	}
	kubeletKubeconfig := k.writeKubeconfigFor(n.Dir, "kubelet", "system:node:"+n.Name, nodeKey)
	serving, err := k.ca.issue(n.Name, nil, []string{n.IP, n.Name})
	if err != nil {
		t.Fatalf("testenv: kubelet serving certificate: %v", err)
	}
	writeFile(t, n.Dir, "kubelet.crt", string(serving.certPEM))
	writeFile(t, n.Dir, "kubelet.key", string(serving.keyPEM))
	resolv := writeFile(t, n.Dir, "resolv.conf", "nameserver 127.0.0.1\noptions ndots:1\n")
	kubeletCfg := writeFile(t, n.Dir, "kubelet.yaml", fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: %[1]s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: %[2]s
tlsPrivateKeyFile: %[3]s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[4]s}
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://%[5]s
cgroupDriver: cgroupfs
cgroupRoot: %[6]s
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
protectKernelDefaults: false
resolvConf: %[7]s
podCIDR: %[8]s
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "0%%"
  nodefs.inodesFree: "0%%"
  imagefs.available: "0%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
syncFrequency: 5s
fileCheckFrequency: 5s
nodeStatusUpdateFrequency: 5s
nodeStatusReportFrequency: 10s
containerLogMaxSize: 10Mi
containerLogMaxFiles: 2
localStorageCapacityIsolation: false
`, n.IP, filepath.Join(n.Dir, "kubelet.crt"), filepath.Join(n.Dir, "kubelet.key"), k.CAFile,
		n.socket, n.CgroupRoot, resolv, n.PodCIDR))
	kc := n.joinCommand("kubelet", true, Binary(t, "kubelet"),
		"--config="+kubeletCfg,
		"--kubeconfig="+kubeletKubeconfig,
		"--hostname-override="+n.Name,
		"--node-ip="+n.IP,
		"--v=1",
	)
	kc.Env = []string{"PATH=" + path}
	n.Kubelet = StartProcess(t, kc)

	proxyKubeconfig := k.writeKubeconfig(n.Dir, "kube-proxy", "system:kube-proxy")
	proxyCfg := writeFile(t, n.Dir, "kube-proxy.yaml", fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]s
mode: iptables
hostnameOverride: %[2]s
bindAddress: %[3]s
clusterCIDR: %[4]s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
iptables:
  masqueradeAll: true
  syncPeriod: 5s
  minSyncPeriod: 0s
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, proxyKubeconfig, n.Name, n.IP, n.PodCIDR))
	pc := n.joinCommand("kube-proxy", true, Binary(t, "kube-proxy"), "--config="+proxyCfg)
	pc.Env = []string{"PATH=" + path}
	n.KubeProxy = StartProcess(t, pc)

	client := k.Client()
	err = poll(t.Context(), 2*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		for _, p := range []*Process{n.Containerd, n.Kubelet, n.KubeProxy} {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("%s exited (%v); log tail:\n%s", p.Name(), err, p.LogTail(40))
			}
		}
		node, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !nodeReady(node) {
			return fmt.Errorf("node %s not Ready", n.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: real node: %v", err)
	}
	t.Logf("testenv: node %s Ready in %s (IP %s, pods %s, cgroups %s, folder %s)",
		n.Name, time.Since(start).Round(time.Millisecond), n.IP, n.PodCIDR, n.CgroupRoot, n.Dir)
}

// ImportImage imports a docker-archive or OCI tar (see [GoImage]) into the
// node's containerd, where pods with imagePullPolicy: Never find it.
func (n *Node) ImportImage(t TB, tarPath string) {
	t.Helper()
	out, err := exec.Command(n.ctrBin, "--address", n.socket, "-n", "k8s.io",
		"images", "import", "--local", "--no-unpack=false", tarPath).CombinedOutput()
	if err != nil {
		t.Fatalf("testenv: import %s into the node: %v: %s", tarPath, err, out)
	}
}

// Socket returns the path of the node's containerd socket (ctr --address).
func (n *Node) Socket() string { return n.socket }

// Ctr runs containerd's ctr against the node's containerd (namespace
// k8s.io) and returns its output.
func (n *Node) Ctr(args ...string) (string, error) {
	a := append([]string{"--address", n.socket, "-n", "k8s.io"}, args...)
	out, err := exec.Command(n.ctrBin, a...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// teardown stops whatever the daemons left (containers and shims, which
// live in the node's cgroups), the namespaces' holder, and removes the
// node's cgroups. The daemons themselves were stopped by their own cleanup,
// which runs before this one.
func (n *Node) teardown() {
	t := n.t
	// Every process of the node is in its cgroup subtree: kill until empty.
	if len(n.cgroupDir) > 0 {
		var killed []int
		err := poll(context.Background(), 30*time.Second, 50*time.Millisecond, func(context.Context) error {
			pids := n.processes()
			for _, p := range pids {
				_ = syscall.Kill(p, syscall.SIGKILL)
				if !slices.Contains(killed, p) {
					killed = append(killed, p)
				}
			}
			if len(pids) > 0 {
				return fmt.Errorf("%d processes left: %v", len(pids), pids)
			}
			return nil
		})
		if err != nil {
			t.Logf("testenv: node teardown: %v", err)
		}
		// Shims are orphans: they leave the cgroup when killed but stay
		// zombies until init reaps them.
		err = poll(context.Background(), 10*time.Second, 50*time.Millisecond, func(context.Context) error {
			for _, p := range killed {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", p)); err == nil {
					return fmt.Errorf("process %d not reaped yet", p)
				}
			}
			return nil
		})
		if err != nil {
			t.Logf("testenv: node teardown: %v", err)
		}
	}
	if n.holder != nil {
		_ = n.holder.Stop()
	}
	// Remove the cgroups, deepest first; a cgroup whose last task just
	// exited can be busy for a moment.
	for _, d := range n.cgroupDir {
		err := poll(context.Background(), 10*time.Second, 50*time.Millisecond, func(context.Context) error {
			return removeCgroupTree(d)
		})
		if err != nil {
			t.Logf("testenv: node teardown: %v", err)
		}
	}
	// The link and its route go with the network namespace; wait for it.
	if n.hostLink != "" {
		err := poll(context.Background(), 10*time.Second, 50*time.Millisecond, func(context.Context) error {
			if _, err := net.InterfaceByName(n.hostLink); err == nil {
				return fmt.Errorf("link %s still there", n.hostLink)
			}
			return nil
		})
		if err != nil {
			_ = run("ip", "link", "del", n.hostLink)
		}
	}
}

// processes returns the PIDs in the node's cgroup subtree.
func (n *Node) processes() []int {
	var pids []int
	for _, d := range n.cgroupDir {
		_ = filepath.WalkDir(d, func(p string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
				return nil
			}
			b, _ := os.ReadFile(p)
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return nil
		})
	}
	return pids
}

// removeCgroupTree removes a cgroup folder and its children, deepest first.
func removeCgroupTree(root string) error {
	var dirs []string
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Remove(dirs[i]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
