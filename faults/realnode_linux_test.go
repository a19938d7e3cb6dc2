package faults

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// The suite's runner: the scenarios of allScenarios on a real node
// (kubelet, containerd, runc, kube-proxy; internal/testenv), with Vigil
// installed as the DaemonSet from the Helm chart (deploy/helm/vigil,
// `helm upgrade --install` with the node's image) at the chart's defaults
// (embedded default rules, evaluation every 5 s) and the suite's policies
// given through the chart's `policies` value, and the workloads as
// Deployments of the fault app image. The fault is injected through the
// fault app's control files, whose folder is a hostPath volume of every
// fault app pod.

// agentNS is the namespace the chart is installed into (the Leases' too).
const agentNS = "vigil"

// TestFaultsOnRealNode runs the scenarios live and then in dry-run (the
// short form: the quick ones only; FAULTS_FULL=1: all), and fills the
// report's kubelet columns from the pods' status.
func TestFaultsOnRealNode(t *testing.T) {
	testenv.RequireRoot(t, "the fault suite on a real node (namespaces, cgroups, eBPF programs)")
	start := time.Now()
	k := testenv.StartKubernetesWith(t, testenv.KubeOptions{RealNode: true})
	vigilTar, _ := testenv.VigilImage(t)
	k.Node.ImportImage(t, vigilTar)
	k.Node.ImportImage(t, testenv.GoImage(t, faultAppRef, faultAppPackage))
	t.Logf("node and images: %s", time.Since(start).Round(time.Millisecond))
	c := &cluster{k: k, client: k.Client(), node: k.Node.Name, ctrl: t.TempDir()}
	esc := startEscalations(t, k.Node.HostIP)
	h := &helmRelease{k: k, home: t.TempDir(), policies: strings.ReplaceAll(policies, "{{ESCALATE}}", esc.srv.URL)}
	runSuite(t, &runner{
		name: "real node", c: c, esc: esc, hostIP: k.Node.HostIP,
		agent:  h.install,
		starts: c.realStarts,
	})
	t.Logf("total: %s", time.Since(start).Round(time.Second))
}

// podTemplate is the pod template of a fault app Deployment: the image, its
// settings in the environment, its control files in a hostPath volume
// (pod-<pod name>, then app-<namespace>-<app>), no probes (a fault is
// Vigil's to find, not the kubelet's), and a 5 s grace period.
func (c *cluster) podTemplate(ns, name string, o appOpts) corev1.PodTemplateSpec {
	env := []corev1.EnvVar{
		// First: the control file's name refers to it.
		{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		{Name: envAddr, Value: fmt.Sprintf(":%d", appPort)},
		{Name: envControl, Value: "/control/pod-$(POD_NAME),/control/app-" + ns + "-" + name},
		{Name: envCall, Value: o.call},
	}
	if o.workers > 0 {
		env = append(env, corev1.EnvVar{Name: envWorkers, Value: fmt.Sprint(o.workers)},
			corev1.EnvVar{Name: envService, Value: o.serviceTime.String()})
	}
	for _, k := range slices.Sorted(maps.Keys(o.env)) {
		env = append(env, corev1.EnvVar{Name: k, Value: o.env[k]})
	}
	ctr := corev1.Container{
		Name: "app", Image: faultAppRef, ImagePullPolicy: corev1.PullNever,
		Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: appPort}},
		Env:          env,
		VolumeMounts: []corev1.VolumeMount{{Name: "control", MountPath: "/control", ReadOnly: true}},
	}
	ctr.Resources.Limits, ctr.Resources.Requests = corev1.ResourceList{}, corev1.ResourceList{}
	for r, v := range map[corev1.ResourceName]string{corev1.ResourceMemory: o.memoryLimit, corev1.ResourceCPU: o.cpuLimit} {
		if v != "" {
			ctr.Resources.Limits[r] = resource.MustParse(v)
			ctr.Resources.Requests[r] = resource.MustParse(v)
		}
	}
	vols := []corev1.Volume{{Name: "control", VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: c.ctrl, Type: ptr.To(corev1.HostPathDirectory)}}}}
	if o.scratch != "" {
		vols = append(vols, corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: "scratch", MountPath: o.scratch})
	}
	if o.hostDir != "" {
		vols = append(vols, corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{
			HostPath: &corev1.HostPathVolumeSource{Path: o.hostDir, Type: ptr.To(corev1.HostPathDirectory)}}})
		ctr.VolumeMounts = append(ctr.VolumeMounts, corev1.VolumeMount{Name: "data", MountPath: "/data"})
	}
	return corev1.PodTemplateSpec{
		Spec: corev1.PodSpec{
			NodeName:                      c.node,
			TerminationGracePeriodSeconds: ptr.To[int64](5),
			Containers:                    []corev1.Container{ctr},
			Volumes:                       vols,
		},
	}
}

// realStarts is how many times the kubelet started the pod's container:
// its restart count and the first start (0 when the pod is gone or its
// container never ran).
func (c *cluster) realStarts(ctx context.Context, ns, pod string) int {
	p, err := c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil || len(p.Status.ContainerStatuses) == 0 {
		return 0
	}
	cs := p.Status.ContainerStatuses[0]
	if cs.RestartCount == 0 && cs.State.Running == nil && cs.State.Terminated == nil {
		return 0
	}
	return int(cs.RestartCount) + 1
}

// helmRelease installs Vigil from the chart with the helm command.
type helmRelease struct {
	k        *testenv.Kube
	home     string // Helm's cache, config and data folders
	policies string
	pod      string // the agent pod of the last install
}

// install installs (or upgrades) the release with dryRun set as asked and
// the suite's policies, waits for the new agent pod to be Ready and to
// answer /-/ready, and returns it. On failure its log is shown.
func (h *helmRelease) install(t *testing.T, dry bool) *agentProc {
	t.Helper()
	var pol strings.Builder
	for _, l := range strings.Split(strings.TrimLeft(h.policies, "\n"), "\n") {
		pol.WriteString("  " + l + "\n")
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(fmt.Sprintf("image:\n  pullPolicy: Never\ndryRun: %t\npolicies: |\n%s", dry, pol.String())), 0o644); err != nil {
		t.Fatal(err)
	}
	chart, err := filepath.Abs("../deploy/helm/vigil")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	cmd := exec.CommandContext(t.Context(), testenv.Binary(t, "helm"), "upgrade", "--install", "vigil", chart,
		"-n", agentNS, "--create-namespace", "-f", values, "--wait", "--timeout", "3m", "--kubeconfig", h.k.Kubeconfig)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(h.home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.home, "config"),
		"HELM_DATA_HOME="+filepath.Join(h.home, "data"),
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("helm upgrade --install: %v\n%s", err, out)
	}
	var pod *corev1.Pod
	testenv.Eventually(t, 3*time.Minute, 250*time.Millisecond, "the new agent pod Ready", func(ctx context.Context) error {
		l, err := h.k.Client().CoreV1().Pods(agentNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vigil"})
		if err != nil {
			return err
		}
		var seen []string
		for i, p := range l.Items {
			seen = append(seen, p.Name+" "+string(p.Status.Phase))
			if p.Name == h.pod || p.DeletionTimestamp != nil || p.Status.PodIP == "" {
				continue
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					pod = &l.Items[i]
					return nil
				}
			}
		}
		return fmt.Errorf("pods: %v", seen)
	})
	h.pod = pod.Name
	a := &agentProc{url: "http://" + net.JoinHostPort(pod.Status.PodIP, "19100")}
	testenv.Eventually(t, time.Minute, 250*time.Millisecond, "agent /-/ready", func(ctx context.Context) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	t.Logf("helm upgrade --install (dryRun %t): agent pod %s ready after %s", dry, pod.Name, time.Since(start).Round(time.Millisecond))
	name := pod.Name
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		b, err := h.k.Client().CoreV1().Pods(agentNS).GetLogs(name, &corev1.PodLogOptions{Container: "vigil", TailLines: ptr.To[int64](300)}).DoRaw(context.Background())
		t.Logf("agent %s log (tail; %v):\n%s", name, err, b)
	})
	return a
}
