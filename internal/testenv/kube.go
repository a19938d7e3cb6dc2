package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// KubeOptions tune [StartKubernetesWith].
type KubeOptions struct {
	// Nodes is the number of kwok fake nodes (default 2, or none with
	// RealNode).
	Nodes int
	// RealNode adds a real node (see [Node]): a kubelet with containerd,
	// runc, the CNI plugins and kube-proxy, running real containers. The API
	// server then listens on the node's HostIP instead of 127.0.0.1, so that
	// the node and its pods reach it (through the kubernetes Service too).
	RealNode bool
	// APIServerArgs are extra kube-apiserver flags ("--flag=value"); a flag
	// given here replaces the harness's value for it.
	APIServerArgs []string
}

// Kube is a Kubernetes control plane started by [StartKubernetes]: etcd,
// kube-apiserver (authorization Node,RBAC), kube-controller-manager,
// kube-scheduler and kwok, which makes fake nodes Ready and turns the pods
// scheduled onto them Running and Ready with an IP from 10.244.0.0/16.
// Services get ClusterIPs from 10.96.0.0/16.
type Kube struct {
	// Kubeconfig is the path of an admin kubeconfig (user "admin" in group
	// system:masters).
	Kubeconfig string
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// CAFile is the path of the cluster CA certificate (PEM).
	CAFile string
	// Nodes are the names of the fake nodes, all Ready when StartKubernetes
	// returns.
	Nodes []string
	// Node is the real node, with [KubeOptions.RealNode]; nil otherwise.
	Node *Node
	// Processes of the plane, for restarts and logs.
	Etcd, APIServer, ControllerManager, Scheduler, Kwok *Process

	t     TB
	ca    *certAuthority
	admin keyPair
}

// StartKubernetes starts a control plane with two Ready kwok nodes and returns
// once the nodes are Ready and the "default" ServiceAccount exists (about
// 10 s). Each call starts its own plane on free ports with its data in the
// test's temp folder; everything stops at cleanup.
func StartKubernetes(t TB) *Kube {
	t.Helper()
	return StartKubernetesWith(t, KubeOptions{})
}

// StartKubernetesWith is [StartKubernetes] with options.
func StartKubernetesWith(t TB, opts KubeOptions) *Kube {
	t.Helper()
	if opts.Nodes == 0 && !opts.RealNode {
		opts.Nodes = 2
	}
	etcdBin := Binary(t, "etcd")
	apiBin := Binary(t, "kube-apiserver")
	cmBin := Binary(t, "kube-controller-manager")
	schedBin := Binary(t, "kube-scheduler")
	kwokBin := Binary(t, "kwok")
	stages := Binary(t, "kwok-stages.yaml")

	start := time.Now()
	dir := t.TempDir()
	k := &Kube{t: t}
	listen := "127.0.0.1"
	apiArgs := opts.APIServerArgs
	if opts.RealNode {
		k.Node = prepareNode(t, dir)
		listen = k.Node.HostIP
		apiArgs = append([]string{
			// The kubernetes Service's endpoint is the address pods reach.
			"--endpoint-reconciler-type=lease",
			"--kubelet-preferred-address-types=InternalIP",
			"--kubelet-client-certificate=" + filepath.Join(dir, "apiserver-kubelet.crt"),
			"--kubelet-client-key=" + filepath.Join(dir, "apiserver-kubelet.key"),
		}, apiArgs...)
	}
	k.writePKI(dir, listen)

	var etcdURL string
	etcdAttempt := 0
	k.Etcd = StartOnFreePorts(t, 2, func(ports []int) Command {
		etcdURL = "http://" + hostPort(ports[0])
		etcdAttempt++ // a fresh data folder for each attempt
		return etcdCommand(filepath.Join(dir, "etcd"+strconv.Itoa(etcdAttempt)), ports[0], ports[1], etcdBin)
	})

	saKey := filepath.Join(dir, "sa.key")
	k.APIServer = StartOnFreePorts(t, 1, func(ports []int) Command {
		k.Server = "https://" + net.JoinHostPort(listen, strconv.Itoa(ports[0]))
		k.writeKubeconfig(dir, "admin", "admin")
		return Command{
			Name: "kube-apiserver",
			Path: apiBin,
			Args: mergeFlags([]string{
				"--bind-address=" + listen,
				"--secure-port=" + strconv.Itoa(ports[0]),
				"--advertise-address=" + listen,
				"--endpoint-reconciler-type=none",
				"--etcd-servers=" + etcdURL,
				"--tls-cert-file=" + filepath.Join(dir, "apiserver.crt"),
				"--tls-private-key-file=" + filepath.Join(dir, "apiserver.key"),
				"--client-ca-file=" + k.CAFile,
				"--authorization-mode=Node,RBAC",
				"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
				"--service-account-key-file=" + saKey,
				"--service-account-signing-key-file=" + saKey,
				"--service-cluster-ip-range=10.96.0.0/16",
				"--allow-privileged=true",
				"--profiling=false",
				"--cert-dir=" + filepath.Join(dir, "apiserver-certs"),
			}, apiArgs),
			Ready: k.readyz,
		}
	})

	cmKubeconfig := k.writeKubeconfig(dir, "kube-controller-manager", "system:kube-controller-manager")
	k.ControllerManager = StartProcess(t, Command{
		Name: "kube-controller-manager",
		Path: cmBin,
		Args: []string{
			"--kubeconfig=" + cmKubeconfig,
			"--secure-port=0",
			"--leader-elect=false",
			"--root-ca-file=" + k.CAFile,
			"--service-account-private-key-file=" + saKey,
			"--cluster-signing-cert-file=" + k.CAFile,
			"--cluster-signing-key-file=" + filepath.Join(dir, "ca.key"),
			"--service-cluster-ip-range=10.96.0.0/16",
			"--profiling=false",
		},
	})
	schedKubeconfig := k.writeKubeconfig(dir, "kube-scheduler", "system:kube-scheduler")
	k.Scheduler = StartProcess(t, Command{
		Name: "kube-scheduler",
		Path: schedBin,
		Args: []string{
			"--kubeconfig=" + schedKubeconfig,
			"--secure-port=0",
			"--leader-elect=false",
			"--profiling=false",
		},
	})

	client := k.Client()
	ctx := t.Context()
	for i := range opts.Nodes {
		name := fmt.Sprintf("kwok-node-%d", i)
		k.Nodes = append(k.Nodes, name)
		node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"kubernetes.io/arch":     "amd64",
				"type":                   "kwok",
			},
		}}
		if _, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			t.Fatalf("testenv: create node %s: %v", name, err)
		}
	}
	procs := []*Process{k.Etcd, k.APIServer, k.ControllerManager, k.Scheduler}
	if opts.Nodes > 0 {
		k.startKwok(dir, kwokBin, stages)
		procs = append(procs, k.Kwok)
	}
	err := poll(ctx, 3*time.Minute, 200*time.Millisecond, func(ctx context.Context) error {
		for _, p := range procs {
			if exited, err := p.Exited(); exited {
				return fmt.Errorf("%s exited (%v); log tail:\n%s", p.Name(), err, p.LogTail(40))
			}
		}
		for _, n := range k.Nodes {
			node, err := client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !nodeReady(node) {
				return fmt.Errorf("node %s not Ready", n)
			}
		}
		if _, err := client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			return fmt.Errorf("default ServiceAccount: %w", err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("testenv: Kubernetes not ready: %v", err)
	}
	if k.Node != nil {
		k.Node.start(k)
	}
	t.Logf("testenv: Kubernetes ready in %s: %s, kubeconfig %s, kwok nodes %v",
		time.Since(start).Round(time.Millisecond), k.Server, k.Kubeconfig, k.Nodes)
	return k
}

// startKwok starts kwok for the fake nodes.
func (k *Kube) startKwok(dir, kwokBin, stages string) {
	t := k.t
	kwokKubeconfig := k.writeKubeconfig(dir, "kwok", "kwok")
	k.Kwok = StartProcess(t, Command{
		Name: "kwok",
		Path: kwokBin,
		Args: []string{
			"--kubeconfig=" + kwokKubeconfig,
			"--config=" + stages,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
			"--cidr=10.244.0.1/16",
			"--node-ip=127.0.0.1",
			"--node-lease-duration-seconds=40",
		},
		// kwok reads ~/.kwok otherwise.
		Env: []string{"HOME=" + dir},
	})
}

// StartEtcd starts a single-member etcd on free ports with its data in
// dataDir and returns the process and its client URL (http://127.0.0.1:port).
func StartEtcd(t TB, dataDir string) (*Process, string) {
	t.Helper()
	bin := Binary(t, "etcd")
	var url string
	attempt := 0
	p := StartOnFreePorts(t, 2, func(ports []int) Command {
		url = "http://" + hostPort(ports[0])
		attempt++
		d := dataDir
		if attempt > 1 { // the failed attempt may have initialised dataDir
			d += "." + strconv.Itoa(attempt)
		}
		return etcdCommand(d, ports[0], ports[1], bin)
	})
	return p, url
}

// etcdCommand is the command of a single-member etcd.
func etcdCommand(dataDir string, clientPort, peerPort int, bin string) Command {
	client := "http://" + hostPort(clientPort)
	peer := "http://" + hostPort(peerPort)
	return Command{
		Name: "etcd",
		Path: bin,
		Args: []string{
			"--name=default",
			"--data-dir=" + dataDir,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=default=" + peer,
			"--unsafe-no-fsync",
			"--log-level=warn",
		},
		Ready: HTTPReady(client + "/health"),
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// writePKI writes the CA, the API server's serving certificate, the admin
// kubeconfig and the service-account signing key into dir.
func (k *Kube) writePKI(dir, listen string) {
	t := k.t
	ca, err := newCA("vigil-testenv-ca")
	if err != nil {
		t.Fatalf("testenv: CA: %v", err)
	}
	k.ca = ca
	caKey, err := ecKeyPEM(ca.key)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	k.CAFile = writeFile(t, dir, "ca.crt", string(ca.certPEM))
	writeFile(t, dir, "ca.key", string(caKey))
	serving, err := ca.issue("kube-apiserver", nil, []string{
		listen, "127.0.0.1", "localhost", "10.96.0.1",
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
	})
	if err != nil {
		t.Fatalf("testenv: serving certificate: %v", err)
	}
	writeFile(t, dir, "apiserver.crt", string(serving.certPEM))
	writeFile(t, dir, "apiserver.key", string(serving.keyPEM))
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	saPEM, err := ecKeyPEM(saKey)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	writeFile(t, dir, "sa.key", string(saPEM))
	k.admin, err = ca.issue("admin", []string{"system:masters"}, nil)
	if err != nil {
		t.Fatalf("testenv: admin certificate: %v", err)
	}
	// The API server's client certificate towards kubelets (logs, exec).
	kc, err := ca.issue("kube-apiserver-kubelet-client", []string{"system:masters"}, nil)
	if err != nil {
		t.Fatalf("testenv: kubelet client certificate: %v", err)
	}
	writeFile(t, dir, "apiserver-kubelet.crt", string(kc.certPEM))
	writeFile(t, dir, "apiserver-kubelet.key", string(kc.keyPEM))
}

// writeKubeconfig issues a client certificate for user (group
// system:masters: the plane's own components get every right) and writes a
// kubeconfig for it. The admin kubeconfig is written the same way.
func (k *Kube) writeKubeconfig(dir, file, user string) string {
	t := k.t
	kp := k.admin
	if user != "admin" {
		var err error
		kp, err = k.ca.issue(user, []string{"system:masters"}, nil)
		if err != nil {
			t.Fatalf("testenv: certificate for %s: %v", user, err)
		}
	}
	return k.writeKubeconfigFor(dir, file, user, kp)
}

// writeKubeconfigFor writes dir/file.kubeconfig for user with the client
// certificate kp.
func (k *Kube) writeKubeconfigFor(dir, file, user string, kp keyPair) string {
	t := k.t
	path := filepath.Join(dir, file+".kubeconfig")
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: k.Server, CertificateAuthorityData: k.ca.certPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: kp.certPEM, ClientKeyData: kp.keyPEM}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: user, Namespace: "default"}
	cfg.CurrentContext = "testenv"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("testenv: write kubeconfig: %v", err)
	}
	if user == "admin" {
		k.Kubeconfig = path
	}
	return path
}

// readyz is the API server's readiness check.
func (k *Kube) readyz(ctx context.Context) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(k.ca.certPEM)
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool},
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.Server+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

// RESTConfig returns a new admin client configuration.
func (k *Kube) RESTConfig() *rest.Config {
	return &rest.Config{
		Host: k.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   k.ca.certPEM,
			CertData: k.admin.certPEM,
			KeyData:  k.admin.keyPEM,
		},
		QPS:   100,
		Burst: 200,
	}
}

// Client returns an admin clientset.
func (k *Kube) Client() kubernetes.Interface {
	c, err := kubernetes.NewForConfig(k.RESTConfig())
	if err != nil {
		k.t.Fatalf("testenv: clientset: %v", err)
	}
	return c
}

// ServiceAccountConfig returns a client configuration that acts as the
// ServiceAccount namespace/name, with a one-hour token minted through the
// TokenRequest API. The namespace must exist; the ServiceAccount is created
// if it does not. What the account may do is up to the test's RBAC objects.
func (k *Kube) ServiceAccountConfig(t TB, namespace, name string) *rest.Config {
	t.Helper()
	ctx := t.Context()
	sas := k.Client().CoreV1().ServiceAccounts(namespace)
	_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("testenv: create ServiceAccount %s/%s: %v", namespace, name, err)
	}
	expiry := int64(3600)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("testenv: token for ServiceAccount %s/%s: %v", namespace, name, err)
	}
	return &rest.Config{
		Host:            k.Server,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: k.ca.certPEM},
	}
}

// mergeFlags returns base with each "--name=value" in extra replacing the
// flag of the same name, or appended when base lacks it.
func mergeFlags(base, extra []string) []string {
	name := func(f string) string {
		n, _, _ := strings.Cut(f, "=")
		return n
	}
	out := append([]string(nil), base...)
	for _, e := range extra {
		replaced := false
		for i, b := range out {
			if name(b) == name(e) {
				out[i], replaced = e, true
			}
		}
		if !replaced {
			out = append(out, e)
		}
	}
	return out
}

// Kubectl runs the kubectl built with the plane (same version) as the admin
// and returns its combined output; a non-zero exit is an error that carries
// the output.
func (k *Kube) Kubectl(t TB, args ...string) (string, error) {
	t.Helper()
	a := append([]string{"--kubeconfig=" + k.Kubeconfig}, args...)
	cmd := exec.CommandContext(t.Context(), Binary(t, "kubectl"), a...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
