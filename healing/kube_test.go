package healing

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/vigil-agent/vigil/internal/kubeclient"
	"github.com/vigil-agent/vigil/internal/testenv"
	"github.com/vigil-agent/vigil/rules"
)

// cluster is one control plane shared by the Kubernetes subtests, with
// the shipped RBAC applied and a client acting as the agent's own
// ServiceAccount.
type cluster struct {
	k     *testenv.Kube
	admin kubernetes.Interface
	agent *kubeclient.Client
	// agentFull is the full clientset as the same ServiceAccount, for
	// what the agent never calls (access reviews).
	agentFull kubernetes.Interface
}

func startCluster(t *testing.T) *cluster {
	k := testenv.StartKubernetes(t)
	c := &cluster{k: k, admin: k.Client()}
	ctx := t.Context()
	if _, err := c.admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "vigil"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	applyRBAC(t, c.admin)
	var err error
	sa := k.ServiceAccountConfig(t, "vigil", "vigil")
	if c.agent, err = kubeclient.New(sa); err != nil {
		t.Fatal(err)
	}
	if c.agentFull, err = kubernetes.NewForConfig(sa); err != nil {
		t.Fatal(err)
	}
	return c
}

// applyRBAC creates every object of healing/rbac.yaml.
func applyRBAC(t *testing.T, c kubernetes.Interface) {
	ctx := t.Context()
	dec := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(RBAC)))
	for {
		doc, err := dec.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("rbac.yaml: %v", err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRole:
			_, err = c.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.Role:
			_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("rbac.yaml: unexpected %T", obj)
		}
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

func (c *cluster) namespace(t *testing.T) string {
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 60 {
		name = name[len(name)-60:]
	}
	name = strings.Trim(name, "-")
	if _, err := c.admin.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

type depOpts struct {
	replicas int32
	gate     bool
}

// deployment creates a Deployment and waits until its rollout is done and
// every replica is Ready.
func (c *cluster) deployment(t *testing.T, ns, name string, o depOpts) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "example.invalid/app:1",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				}}},
			},
		},
	}
	if o.gate {
		d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: DefaultReadinessCondition}}
	}
	if _, err := c.admin.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.settled(t, ns, name)
	return d
}

// settled waits until a Deployment's rollout is complete and all its
// replicas are available.
func (c *cluster) settled(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, 100*time.Millisecond, "deployment "+name+" settled", func(ctx context.Context) error {
		d, err := c.admin.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if d.Generation != s.ObservedGeneration || s.UpdatedReplicas != *d.Spec.Replicas || s.Replicas != *d.Spec.Replicas || s.AvailableReplicas != *d.Spec.Replicas {
			return fmt.Errorf("generation %d observed %d, replicas %d updated %d available %d of %d", d.Generation, s.ObservedGeneration, s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, *d.Spec.Replicas)
		}
		return nil
	})
}

func (c *cluster) pods(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	l, err := c.admin.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// setPodReady writes a pod's Ready condition as a kubelet would (kwok does
// not undo it).
func (c *cluster) setPodReady(t *testing.T, p *corev1.Pod, ready bool) {
	t.Helper()
	pod, err := c.admin.CoreV1().Pods(p.Namespace).Get(t.Context(), p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	setCondition(pod, corev1.PodCondition{Type: corev1.PodReady, Status: st, LastTransitionTime: metav1.Now()})
	if _, err := c.admin.CoreV1().Pods(p.Namespace).UpdateStatus(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// agentEngine starts an engine acting as the agent's ServiceAccount on
// node.
func (c *cluster) agentEngine(t *testing.T, node, identity, policies string) *harness {
	return startEngine(t, "dry_run: false\nidentity: "+identity+"\npolicies:\n"+policies, func(o *Options) {
		o.Kube = c.agent
		o.NodeName = node
	})
}

// service creates a ClusterIP Service for app's pods on port.
func (c *cluster) service(t *testing.T, ns, app string, port int32) *corev1.Service {
	t.Helper()
	svc, err := c.admin.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: app},
		Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": app}, Ports: []corev1.ServicePort{{Port: port, TargetPort: intstr.FromString("http")}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		t.Fatalf("service %s/%s has no cluster IP", ns, app)
	}
	return svc
}

func lastRecord(t *testing.T, recs []Record) Record {
	t.Helper()
	if len(recs) == 0 {
		t.Fatal("no records")
	}
	return recs[len(recs)-1]
}

func TestKubernetesActuators(t *testing.T) {
	c := startCluster(t)

	t.Run("CrashLoopingDeploymentIsRestarted", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "web", depOpts{replicas: 2})
		h := c.agentEngine(t, c.k.Nodes[0], "agent-a", `
  runbook_url: https://runbooks.example/crashloop
  routes:
    - name: crashloop
      matchers: ['alertname="KubePodCrashLooping"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}"}
          verify: {window: 2m}
`)
		labels := map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "deployment": "web", "pod": "web-x"}
		h.fire(labels)
		recs := h.waitRecords(1)
		if r := recs[0]; r.Result != ResultSuccess || r.Target.String() != "Deployment "+ns+"/web" {
			t.Fatalf("records:%s", dump(recs))
		}
		d, err := c.admin.AppsV1().Deployments(ns).Get(t.Context(), "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Spec.Template.Annotations[RestartedAtAnnotation] == "" {
			t.Fatal("the Deployment's template has no restartedAt annotation")
		}
		// The controller rolls new pods out.
		c.settled(t, ns, "web")
		h.resolve(labels)
		recs = h.settle()
		if got := results(recs); got != "success resolved" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
		// The Event on the Deployment names the policy and the runbook.
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "remediation event", func(ctx context.Context) error {
			evs, err := c.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web,involvedObject.kind=Deployment"})
			if err != nil {
				return err
			}
			var reasons []string
			for _, e := range evs.Items {
				reasons = append(reasons, e.Reason)
				if e.Reason == "RemediationSuccess" && strings.Contains(e.Message, "policy crashloop") && strings.Contains(e.Message, "https://runbooks.example/crashloop") && e.ReportingInstance == "agent-a" {
					return nil
				}
			}
			return fmt.Errorf("events: %v", reasons)
		})
	})

	t.Run("HighErrorRatePodIsReroutedAndKeepsRunning", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "api", depOpts{replicas: 2, gate: true})
		if _, err := c.admin.CoreV1().Services(ns).Create(t.Context(), &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "api"},
			Spec:       corev1.ServiceSpec{Selector: map[string]string{"app": "api"}, Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		readyIPs := func(ctx context.Context) (map[string]bool, error) {
			sl, err := c.admin.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=api"})
			if err != nil {
				return nil, err
			}
			ips := map[string]bool{}
			for _, s := range sl.Items {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						for _, a := range e.Addresses {
							ips[a] = true
						}
					}
				}
			}
			return ips, nil
		}
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "2 ready endpoints", func(ctx context.Context) error {
			ips, err := readyIPs(ctx)
			if err == nil && len(ips) != 2 {
				err = fmt.Errorf("%d ready endpoints", len(ips))
			}
			return err
		})
		victim := c.pods(t, ns, "api")[0]
		policy := `
  routes:
    - name: reroute
      matchers: ['alertname="HighErrorRate"']
      blast_radius: {max_unavailable: 1}
      steps:
        - action: reroute_readiness
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
`
		other := c.k.Nodes[0]
		if other == victim.Spec.NodeName {
			other = c.k.Nodes[1]
		}
		// The agent of another node leaves it alone.
		elsewhere := c.agentEngine(t, other, "agent-other", policy)
		local := c.agentEngine(t, victim.Spec.NodeName, "agent-local", policy)
		labels := map[string]string{"alertname": "HighErrorRate", "namespace": ns, "pod": victim.Name}
		elsewhere.fire(labels)
		local.fire(labels)
		if r := lastRecord(t, elsewhere.settle()); r.Result != ResultSkipped || !strings.Contains(r.Reason, "runs on node") {
			t.Fatalf("other node's agent: %+v", r)
		}
		if r := lastRecord(t, local.settle()); r.Result != ResultSuccess {
			t.Fatalf("local agent:%s", dump(local.e.History().Recent(0)))
		}
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "the pod out of the EndpointSlice's ready set", func(ctx context.Context) error {
			ips, err := readyIPs(ctx)
			if err == nil && (ips[victim.Status.PodIP] || len(ips) != 1) {
				err = fmt.Errorf("ready endpoints %v still list %s", ips, victim.Status.PodIP)
			}
			return err
		})
		p, err := c.admin.CoreV1().Pods(ns).Get(t.Context(), victim.Name, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
			t.Fatalf("the rerouted pod must stay up: %v %+v", err, p.Status.Phase)
		}
		// The second pod would take the workload beyond max_unavailable 1
		// (the rerouted one already counts).
		second := c.pods(t, ns, "api")[1]
		local2 := c.agentEngine(t, second.Spec.NodeName, "agent-2", policy)
		local2.fire(map[string]string{"alertname": "HighErrorRate", "namespace": ns, "pod": second.Name})
		if r := lastRecord(t, local2.settle()); r.Result != ResultVetoed || r.Guard != GuardBlastRadius {
			t.Fatalf("second pod:%s", dump(local2.e.History().Recent(0)))
		}
		if ips, _ := readyIPs(t.Context()); !ips[second.Status.PodIP] {
			t.Fatal("the vetoed pod left the endpoints")
		}
	})

	t.Run("RerouteRefusesPodWithoutReadinessGate", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "nogate", depOpts{replicas: 1})
		p := c.pods(t, ns, "nogate")[0]
		h := c.agentEngine(t, p.Spec.NodeName, "a", `
  name: reroute
  steps: [{action: reroute_readiness, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`)
		h.fire(map[string]string{"alertname": "E", "namespace": ns, "pod": p.Name})
		if r := lastRecord(t, h.settle()); r.Result != ResultFailed || !strings.Contains(r.Reason, "does not list readiness gate") {
			t.Fatalf("%+v", r)
		}
	})

	t.Run("SaturatedDeploymentScaledWithinBounds", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "worker", depOpts{replicas: 1})
		// Watch every replica count the Deployment ever has.
		var mu sync.Mutex
		seen := 0
		w, err := c.admin.AppsV1().Deployments(ns).Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=worker"})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			for ev := range w.ResultChan() {
				if d, ok := ev.Object.(*appsv1.Deployment); ok {
					mu.Lock()
					seen = max(seen, int(*d.Spec.Replicas))
					mu.Unlock()
				}
			}
		}()
		h := c.agentEngine(t, c.k.Nodes[0], "agent-a", `
  routes:
    - name: saturated
      matchers: ['alertname="Saturated"']
      steps:
        - action: scale
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}", step: "1", min: "1", max: "3"}
`)
		for i := 0; i < 4; i++ {
			h.fire(map[string]string{"alertname": "Saturated", "namespace": ns, "deployment": "worker", "n": fmt.Sprint(i)})
			h.settle()
			c.settled(t, ns, "worker")
		}
		recs := h.settle()
		if got := results(recs); got != "success success failed failed" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
		if !strings.Contains(recs[2].Reason, "is at 3 replicas, the bound of [1, 3]") {
			t.Errorf("bound reason: %q", recs[2].Reason)
		}
		d, _ := c.admin.AppsV1().Deployments(ns).Get(t.Context(), "worker", metav1.GetOptions{})
		w.Stop()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if *d.Spec.Replicas != 3 || seen != 3 {
			t.Fatalf("replicas %d, highest seen %d; want 3 and never more", *d.Spec.Replicas, seen)
		}
	})

	t.Run("ScaleWhileTheDeploymentKeepsChanging", func(t *testing.T) {
		// A rollout makes the controller write the Deployment many times
		// a second for a while; another writer does the same here, back
		// to back for one second. Each scale must still land on a fresh
		// read once the burst is over, not fail on the conflict.
		ns := c.namespace(t)
		c.deployment(t, ns, "busy", depOpts{replicas: 1})
		ctx := t.Context()
		writes := make(chan int, 1)
		burst := time.Now().Add(time.Second)
		go func() {
			n := 0
			defer func() { writes <- n }()
			for time.Now().Before(burst) {
				patch := fmt.Sprintf(`{"metadata":{"annotations":{"test/write":"%d"}}}`, n)
				if _, err := c.admin.AppsV1().Deployments(ns).Patch(ctx, "busy", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err == nil {
					n++
				}
			}
		}()
		env := &Env{Kube: c.agent, Logger: slog.New(slog.DiscardHandler), Retry: RetryPolicy{Steps: 1}}
		args := Args{"namespace": {ns}, "kind": {"Deployment"}, "name": {"busy"}, "step": {"1"}, "min": {"1"}, "max": {"4"}}
		var errs []error
		for range 3 {
			if _, err := (scale{}).Act(ctx, env, Request{Args: args}); err != nil {
				errs = append(errs, err)
			}
		}
		n := <-writes
		if len(errs) > 0 {
			t.Fatalf("scale failed while another writer changed the Deployment %d times: %v", n, errs)
		}
		d, err := c.admin.AppsV1().Deployments(ns).Get(ctx, "busy", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if *d.Spec.Replicas != 4 {
			t.Fatalf("replicas %d after three steps up from 1, want 4", *d.Spec.Replicas)
		}
		t.Logf("three scales landed during %d concurrent writes", n)
	})

	t.Run("TwoAgentsRacingActOnce", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "race", depOpts{replicas: 1})
		policy := `
  routes:
    - name: restart
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}"}
`
		a := c.agentEngine(t, c.k.Nodes[0], "agent-a", policy)
		b := c.agentEngine(t, c.k.Nodes[1], "agent-b", policy)
		before, _ := c.admin.AppsV1().Deployments(ns).Get(t.Context(), "race", metav1.GetOptions{})
		labels := map[string]string{"alertname": "CrashLoop", "namespace": ns, "deployment": "race"}
		var wg sync.WaitGroup
		for _, h := range []*harness{a, b} {
			wg.Add(1)
			go func() { defer wg.Done(); h.stream.Publish(alertFiring(labels)) }()
		}
		wg.Wait()
		a.waitRecords(1)
		b.waitRecords(1)
		all := append(a.settle(), b.settle()...)
		var success, skipped int
		for _, r := range all {
			switch r.Result {
			case ResultSuccess:
				success++
			case ResultSkipped:
				skipped++
				if !strings.Contains(r.Reason, "lease "+LeaseName("rollout_restart", r.Target)+" is held by") {
					t.Errorf("skip reason: %q", r.Reason)
				}
			}
		}
		if success != 1 || skipped != 1 {
			t.Fatalf("success=%d skipped=%d:%s", success, skipped, dump(all))
		}
		after, _ := c.admin.AppsV1().Deployments(ns).Get(t.Context(), "race", metav1.GetOptions{})
		if after.Generation != before.Generation+1 {
			t.Fatalf("generation %d → %d: the Deployment was changed %d times", before.Generation, after.Generation, after.Generation-before.Generation)
		}
	})

	t.Run("GuardRolloutInProgress", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "roll", depOpts{replicas: 2})
		// A paused Deployment with a new template stays mid-rollout.
		patch := `{"spec":{"paused":true,"template":{"metadata":{"annotations":{"v":"2"}}}}}`
		if _, err := c.admin.AppsV1().Deployments(ns).Patch(t.Context(), "roll", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		p := c.pods(t, ns, "roll")[0]
		h := c.agentEngine(t, p.Spec.NodeName, "a", `
  name: kill
  steps: [{action: delete_pod, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`)
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "paused rollout observed", func(ctx context.Context) error {
			d, err := c.admin.AppsV1().Deployments(ns).Get(ctx, "roll", metav1.GetOptions{})
			if err == nil && d.Status.ObservedGeneration != d.Generation {
				err = fmt.Errorf("not observed yet")
			}
			return err
		})
		h.fire(map[string]string{"alertname": "Bad", "namespace": ns, "pod": p.Name, "try": "1"})
		if r := lastRecord(t, h.settle()); r.Result != ResultVetoed || r.Guard != GuardRollout || !strings.Contains(r.Reason, "mid-rollout") {
			t.Fatalf("during the rollout:%s", dump(h.e.History().Recent(0)))
		}
		if _, err := c.admin.CoreV1().Pods(ns).Get(t.Context(), p.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("the pod was touched: %v", err)
		}
		if _, err := c.admin.AppsV1().Deployments(ns).Patch(t.Context(), "roll", types.StrategicMergePatchType, []byte(`{"spec":{"paused":false}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		c.settled(t, ns, "roll")
		p = c.pods(t, ns, "roll")[0]
		h2 := c.agentEngine(t, p.Spec.NodeName, "a", `
  name: kill
  steps: [{action: delete_pod, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`)
		h2.fire(map[string]string{"alertname": "Bad", "namespace": ns, "pod": p.Name, "try": "2"})
		if r := lastRecord(t, h2.settle()); r.Result != ResultSuccess {
			t.Fatalf("after the rollout:%s", dump(h2.e.History().Recent(0)))
		}
	})

	t.Run("GuardBlastRadiusCountsUnreadyPods", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "br", depOpts{replicas: 3})
		pods := c.pods(t, ns, "br")
		c.setPodReady(t, &pods[0], false) // already unready, not by Vigil
		target := pods[1]
		run := func(maxUnavailable int) Record {
			h := c.agentEngine(t, target.Spec.NodeName, "a", fmt.Sprintf(`
  name: evict
  blast_radius: {max_unavailable: %d}
  steps: [{action: evict_pod, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`, maxUnavailable))
			h.fire(map[string]string{"alertname": "Bad", "namespace": ns, "pod": target.Name})
			return lastRecord(t, h.settle())
		}
		if r := run(1); r.Result != ResultVetoed || r.Guard != GuardBlastRadius || !strings.Contains(r.Reason, "2 of 3 replicas unavailable (1 already)") {
			t.Fatalf("max_unavailable 1: %+v", r)
		}
		if _, err := c.admin.CoreV1().Pods(ns).Get(t.Context(), target.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("the vetoed pod is gone: %v", err)
		}
		if r := run(2); r.Result != ResultSuccess {
			t.Fatalf("max_unavailable 2: %+v", r)
		}
	})

	t.Run("GuardMaintenanceAnnotation", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "mt", depOpts{replicas: 1})
		policy := `
  name: restart
  steps: [{action: rollout_restart, params: {namespace: "{{.namespace}}", name: "{{.deployment}}"}}]
`
		set := func(v string) {
			patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%s}}}`, MaintenanceAnnotation, v)
			if _, err := c.admin.AppsV1().Deployments(ns).Patch(t.Context(), "mt", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		set(`"true"`)
		h := c.agentEngine(t, c.k.Nodes[0], "a", policy)
		h.fire(map[string]string{"alertname": "X", "namespace": ns, "deployment": "mt"})
		if r := lastRecord(t, h.settle()); r.Result != ResultVetoed || r.Guard != GuardMaintenance || !strings.Contains(r.Reason, MaintenanceAnnotation) {
			t.Fatalf("with the annotation: %+v", r)
		}
		set("null")
		// An annotation change bumps a Deployment's generation: wait for
		// the controller to observe it, or the rollout guard vetoes.
		c.settled(t, ns, "mt")
		h2 := c.agentEngine(t, c.k.Nodes[0], "a2", policy)
		h2.fire(map[string]string{"alertname": "X", "namespace": ns, "deployment": "mt"})
		if r := lastRecord(t, h2.settle()); r.Result != ResultSuccess {
			t.Fatalf("without the annotation: %+v", r)
		}
	})

	t.Run("EvictHonoursPodDisruptionBudget", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "pdb", depOpts{replicas: 2})
		minAvail := intstr.FromInt32(2)
		if _, err := c.admin.PolicyV1().PodDisruptionBudgets(ns).Create(t.Context(), &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "pdb"},
			Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &minAvail, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pdb"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		// The budget would hold a later drain of the node forever.
		t.Cleanup(func() {
			c.admin.PolicyV1().PodDisruptionBudgets(ns).Delete(context.Background(), "pdb", metav1.DeleteOptions{})
		})
		testenv.Eventually(t, time.Minute, 100*time.Millisecond, "PDB status", func(ctx context.Context) error {
			p, err := c.admin.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "pdb", metav1.GetOptions{})
			if err == nil && p.Status.ObservedGeneration != p.Generation {
				err = fmt.Errorf("PDB not observed")
			}
			return err
		})
		p := c.pods(t, ns, "pdb")[0]
		h := c.agentEngine(t, p.Spec.NodeName, "a", `
  name: evict
  steps: [{action: evict_pod, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`)
		h.fire(map[string]string{"alertname": "X", "namespace": ns, "pod": p.Name})
		if r := lastRecord(t, h.settle()); r.Result != ResultFailed || !strings.Contains(r.Reason, "PodDisruptionBudget") {
			t.Fatalf("%+v", r)
		}
	})

	t.Run("QuarantineStartsReplacementAndKeepsPod", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "q", depOpts{replicas: 2})
		p := c.pods(t, ns, "q")[0]
		h := c.agentEngine(t, p.Spec.NodeName, "a", `
  name: quarantine
  steps: [{action: quarantine, params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}}]
`)
		h.fire(map[string]string{"alertname": "X", "namespace": ns, "pod": p.Name})
		if r := lastRecord(t, h.settle()); r.Result != ResultSuccess {
			t.Fatalf("%+v", r)
		}
		got, err := c.admin.CoreV1().Pods(ns).Get(t.Context(), p.Name, metav1.GetOptions{})
		if err != nil || got.Labels["app"] != "" || got.Labels[QuarantineLabel] != "true" || !strings.Contains(got.Annotations[QuarantineAnnotation], `"app":"q"`) {
			t.Fatalf("quarantined pod: %v %v %v", err, got.Labels, got.Annotations)
		}
		c.settled(t, ns, "q")
		if n := len(c.pods(t, ns, "q")); n != 2 {
			t.Fatalf("%d pods select app=q, want 2 (a replacement)", n)
		}
	})

	t.Run("DrainEvictsAndCordons", func(t *testing.T) {
		ns := c.namespace(t)
		node := c.k.Nodes[1]
		c.deployment(t, ns, "dr", depOpts{replicas: 2})
		h := c.agentEngine(t, c.k.Nodes[0], "a", `
  name: drain
  steps: [{action: drain, params: {node: "{{.node}}", nodes: ["`+node+`"], timeout: 45s}}]
`)
		// A hostile alert naming another node is vetoed by the allow-list:
		// that node is not cordoned.
		h.fire(map[string]string{"alertname": "NodeBad", "node": c.k.Nodes[0]})
		if r := lastRecord(t, h.settle()); r.Result != ResultVetoed || r.Guard != GuardAllowList {
			t.Fatalf("hostile node:%s", dump(h.e.History().Recent(0)))
		}
		if n, _ := c.admin.CoreV1().Nodes().Get(t.Context(), c.k.Nodes[0], metav1.GetOptions{}); n.Spec.Unschedulable {
			t.Fatal("a node outside the allow-list was cordoned")
		}
		h.fire(map[string]string{"alertname": "NodeBad", "node": node})
		if r := lastRecord(t, h.settle()); r.Result != ResultSuccess {
			t.Fatalf("%s", dump(h.e.History().Recent(0)))
		}
		n, _ := c.admin.CoreV1().Nodes().Get(t.Context(), node, metav1.GetOptions{})
		if !n.Spec.Unschedulable {
			t.Fatal("node not cordoned")
		}
		c.settled(t, ns, "dr")
		for _, p := range c.pods(t, ns, "dr") {
			if p.Spec.NodeName == node {
				t.Fatalf("pod %s still on the drained node", p.Name)
			}
		}
		// Leave the node usable for the other subtests.
		c.admin.CoreV1().Nodes().Patch(t.Context(), node, types.StrategicMergePatchType, []byte(`{"spec":{"unschedulable":false}}`), metav1.PatchOptions{})
	})

	t.Run("EnrichmentResolvesOwnersAndDependencies", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "front", depOpts{replicas: 1})
		c.deployment(t, ns, "store", depOpts{replicas: 1})
		svc := c.service(t, ns, "store", 6379)
		front, store := c.pods(t, ns, "front")[0], c.pods(t, ns, "store")[0]
		h := c.agentEngine(t, c.k.Nodes[0], "agent-a", `
  name: noop
  steps: [{action: exec, params: {command: ["/bin/true"]}}]
`)
		en := h.e.enr
		ctx := t.Context()
		got := en.enrich(ctx, "A", map[string]string{"namespace": ns, "pod": front.Name, LabelDestination: svc.Spec.ClusterIP + ":6379"})
		want := map[string]string{
			"namespace": ns, "pod": front.Name, LabelDestination: svc.Spec.ClusterIP + ":6379",
			LabelOwnerKind: "Deployment", LabelOwnerName: "front",
			LabelDependencyKind: "Service", LabelDependencyNamespace: ns, LabelDependencyName: "store",
			LabelDependencyOwnerKind: "Deployment", LabelDependencyOwnerName: "store",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Service destination:\n got %v\nwant %v", got, want)
		}
		// A pod IP (the collector's format) resolves to the pod.
		got = en.enrich(ctx, "A", map[string]string{LabelDestination: store.Status.PodIP + ":8080"})
		want = map[string]string{
			LabelDestination:    store.Status.PodIP + ":8080",
			LabelDependencyKind: "Pod", LabelDependencyNamespace: ns, LabelDependencyName: store.Name, LabelDependencyPod: store.Name,
			LabelDependencyOwnerKind: "Deployment", LabelDependencyOwnerName: "store",
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("pod IP destination:\n got %v\nwant %v", got, want)
		}
		// The Service's IP on another port, an unknown IPv6 address and a
		// missing pod add nothing; a label the alert has is never replaced.
		for _, in := range []map[string]string{
			{LabelDestination: svc.Spec.ClusterIP + ":80"},
			{LabelDestination: "[fd00::99]:443"},
			{"namespace": ns, "pod": "no-such-pod"},
			{"namespace": ns, "pod": front.Name, LabelOwnerName: "mine"},
		} {
			if got := en.enrich(ctx, "A", in); fmt.Sprint(got) != fmt.Sprint(in) {
				t.Errorf("enrich(%v) = %v, want it unchanged", in, got)
			}
		}
		if n := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("dependency", "not_found")); n != 2 {
			t.Errorf("dependency not_found = %v, want 2", n)
		}
		// Answers are cached.
		en.enrich(ctx, "A", map[string]string{LabelDestination: store.Status.PodIP + ":8080"})
		if n := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("dependency", "cached")); n != 1 {
			t.Errorf("dependency cached = %v, want 1", n)
		}
		if n := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("dependency", "error")) + testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("owner", "error")); n != 0 {
			t.Errorf("lookup errors as the agent's ServiceAccount: %v", n)
		}
	})

	t.Run("DependencyIsActedOnAndCallerIsNot", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "caller", depOpts{replicas: 1})
		c.deployment(t, ns, "db", depOpts{replicas: 1})
		svc := c.service(t, ns, "db", 5432)
		caller := c.pods(t, ns, "caller")[0]
		// On the caller's node, so delete_pod of the caller is this
		// agent's to decide.
		h := c.agentEngine(t, caller.Spec.NodeName, "agent-a", `
  routes:
    # Restarting the caller is what the dependency guard prevents.
    - name: restart-caller
      continue: true
      matchers: ['alertname="VigilWorkloadDependencyUnreachable"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", kind: "{{.owner_kind}}", name: "{{.owner_name}}"}
    - name: dependency
      matchers: ['alertname="VigilWorkloadDependencyUnreachable"', 'dependency_kind="Service"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.dependency_namespace}}", kind: "{{.dependency_owner_kind}}", name: "{{.dependency_owner_name}}"}
    - name: crash
      matchers: ['alertname="VigilWorkloadCrashLooping"']
      steps:
        - action: delete_pod
          params: {namespace: "{{.namespace}}", pod: "{{.pod}}"}
`)
		dst := net.JoinHostPort(svc.Spec.ClusterIP, "5432")
		depLabels := map[string]string{"alertname": "VigilWorkloadDependencyUnreachable", "namespace": ns, "pod": caller.Name, "container": "app", "destination": dst}
		h.fire(depLabels)
		recs := h.settle()
		byPolicy := map[string]Record{}
		for _, r := range recs {
			byPolicy[r.Policy] = r
		}
		if r := byPolicy["dependency"]; r.Result != ResultSuccess || r.Target.String() != "Deployment "+ns+"/db" {
			t.Fatalf("dependency policy:%s", dump(recs))
		}
		wantReason := "its errors come from its dependency Service " + ns + "/db (" + dst + ")"
		if r := byPolicy["restart-caller"]; r.Result != ResultVetoed || r.Guard != GuardDependency || !strings.Contains(r.Reason, wantReason) {
			t.Fatalf("restart-caller policy (want vetoed by dependency, %q):%s", wantReason, dump(recs))
		}
		if l := byPolicy["dependency"].AlertLabels; l[LabelOwnerName] != "caller" || l[LabelDependencyOwnerName] != "db" {
			t.Fatalf("alert labels: %v", l)
		}
		restarted := func(name string) bool {
			d, err := c.admin.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Annotations[RestartedAtAnnotation] != ""
		}
		if !restarted("db") || restarted("caller") {
			t.Fatalf("restarted: db %v (want true), caller %v (want false)", restarted("db"), restarted("caller"))
		}

		// The caller crashes meanwhile: deleting its pod is vetoed too.
		crash := map[string]string{"alertname": "VigilWorkloadCrashLooping", "namespace": ns, "pod": caller.Name, "container": "app"}
		h.fire(crash)
		r := lastRecord(t, h.settle())
		if r.Policy != "crash" || r.Result != ResultVetoed || r.Guard != GuardDependency || !strings.Contains(r.Reason, wantReason) {
			t.Fatalf("crash while the dependency fails:%s", dump(h.e.History().Recent(0)))
		}
		if _, err := c.admin.CoreV1().Pods(ns).Get(t.Context(), caller.Name, metav1.GetOptions{}); err != nil {
			t.Fatalf("the caller's pod was deleted: %v", err)
		}

		// Once the dependency alert resolved, the caller is fair game.
		h.resolve(depLabels)
		crash["try"] = "2"
		h.fire(crash)
		r = lastRecord(t, h.settle())
		if r.Policy != "crash" || r.Result != ResultSuccess {
			t.Fatalf("crash after the dependency recovered:%s", dump(h.e.History().Recent(0)))
		}
	})

	// A caller whose PostgreSQL fails (VigilWorkloadPostgresErrors, no
	// destination: the caller's identity alone) is not restarted on its
	// own 5xx alert while another workload in the namespace is; the
	// caller's alert is decided again every repeat_interval and acted on
	// once the PostgreSQL alert resolved.
	t.Run("ProtocolDependencyHoldsItsCallerOnly", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "caller", depOpts{replicas: 1})
		c.deployment(t, ns, "other", depOpts{replicas: 1})
		caller, other := c.pods(t, ns, "caller")[0], c.pods(t, ns, "other")[0]
		h := startEngine(t, `dry_run: false
identity: agent-a
repeat_interval: 2s
policies:
  routes:
    - name: restart-on-5xx
      matchers: ['alertname="VigilWorkloadHigh5xxRatio"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", kind: "{{.owner_kind}}", name: "{{.owner_name}}"}
`, func(o *Options) {
			o.Kube = c.agent
			o.NodeName = caller.Spec.NodeName
		})
		pg := map[string]string{"alertname": "VigilWorkloadPostgresErrors", "severity": "warning", "namespace": ns, "pod": caller.Name, "container": "app"}
		h.fire(pg)
		h.fire(map[string]string{"alertname": "VigilWorkloadHigh5xxRatio", "namespace": ns, "pod": caller.Name, "container": "app"})
		h.fire(map[string]string{"alertname": "VigilWorkloadHigh5xxRatio", "namespace": ns, "pod": other.Name, "container": "app"})
		restarted := func(name string) bool {
			d, err := c.admin.AppsV1().Deployments(ns).Get(t.Context(), name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return d.Spec.Template.Annotations[RestartedAtAnnotation] != ""
		}
		about := func(r Record, pod string) bool { return r.AlertLabels["pod"] == pod }
		wantReason := "Deployment " + ns + "/caller is not acted on: its errors come from its dependency PostgreSQL (the alert names no server), alert VigilWorkloadPostgresErrors is firing"
		// Held across several decisions while the PostgreSQL alert fires.
		deadline := time.Now().Add(30 * time.Second)
		for {
			vetoes := 0
			for _, r := range h.e.History().Recent(0) {
				if !about(r, caller.Name) {
					continue
				}
				if r.Result != ResultVetoed || r.Guard != GuardDependency || !strings.Contains(r.Reason, wantReason) {
					t.Fatalf("the caller's 5xx alert while its PostgreSQL fails (want vetoed by %s, %q):%s", GuardDependency, wantReason, dump(h.e.History().Recent(0)))
				}
				vetoes++
			}
			if vetoes >= 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d decisions on the caller's alert in 30s, want one every 2s:%s", vetoes, dump(h.e.History().Recent(0)))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if restarted("caller") || !restarted("other") {
			t.Fatalf("restarted: caller %v (want false), other %v (want true):%s", restarted("caller"), restarted("other"), dump(h.e.History().Recent(0)))
		}
		// The vetoes are one Event on the caller's Deployment, its count
		// the vetoes so far and its annotation the latest record's.
		testenv.Eventually(t, 30*time.Second, 100*time.Millisecond, "one veto event counting every veto", func(ctx context.Context) error {
			var vetoes []Record
			for _, r := range h.e.History().Recent(0) {
				if about(r, caller.Name) {
					vetoes = append(vetoes, r)
				}
			}
			evs, err := c.admin.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=caller,involvedObject.kind=Deployment"})
			if err != nil {
				return err
			}
			var got []string
			var ours []corev1.Event
			for _, e := range evs.Items {
				if e.ReportingController == "vigil.dev/healing" {
					got = append(got, fmt.Sprintf("%s count %d record %s", e.Reason, e.Count, e.Annotations["vigil.dev/record-id"]))
					ours = append(ours, e)
				}
			}
			latest := vetoes[0]
			for _, r := range vetoes {
				if r.ID > latest.ID {
					latest = r
				}
			}
			want := fmt.Sprintf("RemediationVetoed count %d record %d", len(vetoes), latest.ID)
			if len(got) != 1 || got[0] != want {
				return fmt.Errorf("events %q, want [%s]", got, want)
			}
			if e := ours[0]; !e.LastTimestamp.After(e.FirstTimestamp.Time) || !strings.Contains(e.Message, wantReason) {
				return fmt.Errorf("event first %s last %s message %q", e.FirstTimestamp, e.LastTimestamp, e.Message)
			}
			return nil
		})

		// The PostgreSQL alert resolves: the caller's alert, still firing,
		// is decided again and acted on.
		h.resolve(pg)
		deadline = time.Now().Add(30 * time.Second)
		for !restarted("caller") {
			if time.Now().After(deadline) {
				t.Fatalf("the caller was not restarted after its PostgreSQL recovered:%s", dump(h.e.History().Recent(0)))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, r := range h.e.History().Recent(0) {
			if about(r, other.Name) && r.Result != ResultSuccess {
				t.Errorf("the other workload's alert: %s %s %s", r.Result, r.Guard, r.Reason)
			}
		}
	})

	t.Run("ScaleRestoredWhenAlertsStayResolved", func(t *testing.T) {
		ns := c.namespace(t)
		c.deployment(t, ns, "busy", depOpts{replicas: 1})
		h := c.agentEngine(t, c.k.Nodes[0], "agent-a", `
  routes:
    - name: saturated
      matchers: ['alertname="Saturated"']
      steps:
        - action: scale
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}", step: "1", min: "1", max: "3", restore_after: 1s}
`)
		replicas := func() int32 {
			d, err := c.admin.AppsV1().Deployments(ns).Get(t.Context(), "busy", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return *d.Spec.Replicas
		}
		restores := func() []Record {
			var out []Record
			for _, r := range h.e.History().Recent(0) {
				if strings.HasPrefix(r.Reason, "restore: ") {
					out = append(out, r)
				}
			}
			return out
		}
		waitRestore := func(n int) Record {
			t.Helper()
			var got []Record
			testenv.Eventually(t, time.Minute, 50*time.Millisecond, "restore record", func(context.Context) error {
				if got = restores(); len(got) < n {
					return fmt.Errorf("%d restore records:%s", len(got), dump(h.e.History().Recent(0)))
				}
				return nil
			})
			return got[n-1]
		}
		x := map[string]string{"alertname": "Saturated", "namespace": ns, "deployment": "busy", "queue": "x"}
		y := map[string]string{"alertname": "Saturated", "namespace": ns, "deployment": "busy", "queue": "y"}
		h.fire(x)
		h.settle()
		c.settled(t, ns, "busy")
		h.fire(y)
		h.settle()
		c.settled(t, ns, "busy")
		if got := replicas(); got != 3 {
			t.Fatalf("replicas %d after two scale-ups:%s", got, dump(h.e.History().Recent(0)))
		}
		// One alert resolved, the other still fires: no restore, however
		// long it waits.
		h.resolve(x)
		time.Sleep(3 * time.Second)
		if got := restores(); len(got) != 0 || replicas() != 3 {
			t.Fatalf("restored while an alert still fires (replicas %d):%s", replicas(), dump(got))
		}
		resolvedAt := time.Now()
		h.resolve(y)
		r := waitRestore(1)
		if r.Result != ResultSuccess || r.Action != "scale" || r.Policy != "saturated" || r.Target.String() != "Deployment "+ns+"/busy" ||
			!strings.Contains(r.Reason, "from 3 back to 1 replicas") || r.At.Before(resolvedAt) {
			t.Fatalf("restore record (at %s, last alert resolved at %s):%s", r.At, resolvedAt, dump([]Record{r}))
		}
		if got := replicas(); got != 1 {
			t.Fatalf("replicas %d after the restore, want 1", got)
		}
		c.settled(t, ns, "busy")

		// Someone else changed the replicas after Vigil's scale-up: the
		// restore leaves them.
		z := map[string]string{"alertname": "Saturated", "namespace": ns, "deployment": "busy", "queue": "z"}
		h.fire(z)
		h.settle()
		if got := replicas(); got != 2 {
			t.Fatalf("replicas %d after the scale-up:%s", got, dump(h.e.History().Recent(0)))
		}
		if _, err := c.admin.AppsV1().Deployments(ns).Patch(t.Context(), "busy", types.StrategicMergePatchType, []byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		c.settled(t, ns, "busy")
		h.resolve(z)
		r = waitRestore(2)
		if r.Result != ResultFailed || !strings.Contains(r.Reason, "restore: not restored: Deployment "+ns+"/busy has 4 replicas, not the 2 Vigil set") {
			t.Fatalf("restore after a manual scale:%s", dump([]Record{r}))
		}
		if got := replicas(); got != 4 {
			t.Fatalf("replicas %d, want the 4 someone else set", got)
		}
	})

	// Nodes without a kubelet and pods bound to them, for the readiness
	// gate subtests.
	gateNodes := func(t *testing.T, names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := c.admin.CoreV1().Nodes().Create(t.Context(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.admin.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{}) })
		}
	}
	gatePod := func(t *testing.T, ns, name, node string, gate bool) {
		t.Helper()
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: corev1.PodSpec{
			NodeName: node, Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}}}}
		if gate {
			p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: DefaultReadinessCondition}}
		}
		if _, err := c.admin.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The agent opens the readiness gate of the new pods of its own node
	// (dry-run or not), and only those: not on another node, not without
	// the gate, and never over a condition that is set. The nodes here
	// have no kubelet (kwok, which manages the other nodes, opens every
	// gate itself), so the condition is all there is to see; the fault
	// suite shows a real kubelet's pods becoming Ready with it
	// (faults/realnode_linux_test.go).
	t.Run("ReadinessGatesOfNewPodsOnItsNodeAreOpened", func(t *testing.T) {
		ctx := t.Context()
		ns := c.namespace(t)
		here, there := "gates-here", "gates-there"
		gateNodes(t, here, there)
		pod := func(name, node string, gate bool) {
			t.Helper()
			gatePod(t, ns, name, node, gate)
		}
		setGate := func(name string, st corev1.ConditionStatus, reason string) {
			t.Helper()
			p, err := c.admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			setCondition(p, corev1.PodCondition{Type: DefaultReadinessCondition, Status: st, Reason: reason, LastTransitionTime: metav1.Now()})
			if _, err := c.admin.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		gate := func(ctx context.Context, name string) (*corev1.PodCondition, error) {
			p, err := c.admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			for i := range p.Status.Conditions {
				if p.Status.Conditions[i].Type == DefaultReadinessCondition {
					return &p.Status.Conditions[i], nil
				}
			}
			return nil, nil
		}
		opened := func(name string) {
			t.Helper()
			testenv.Eventually(t, time.Minute, 50*time.Millisecond, "gate of "+name+" opened", func(ctx context.Context) error {
				g, err := gate(ctx, name)
				switch {
				case err != nil:
					return err
				case g == nil:
					return errors.New("no condition")
				case g.Status != corev1.ConditionTrue || g.Reason != GateOpenedReason || !strings.Contains(g.Message, "Vigil (agent-gates)"):
					return fmt.Errorf("condition %+v", *g)
				}
				return nil
			})
		}
		// Before the agent starts: one pod to open (found by the first
		// list) and one whose gate someone closed.
		pod("listed", here, true)
		pod("closed", here, true)
		setGate("closed", corev1.ConditionFalse, "ClosedBySomeoneElse")

		h := startEngine(t, "dry_run: true\nidentity: agent-gates\npolicies:\n  routes:"+memPolicy, func(o *Options) {
			o.Kube = c.agent
			o.NodeName = here
		})
		opened("listed")
		pod("fresh", here, true)
		pod("elsewhere", there, true)
		pod("ungated", here, false)
		opened("fresh")
		// reroute_readiness closes the gate of a pod the agent opened; a
		// later pod opened after it shows the opener saw that change.
		setGate("fresh", corev1.ConditionFalse, "VigilRerouted")
		pod("later", here, true)
		opened("later")
		for name, want := range map[string]string{"closed": "False ClosedBySomeoneElse", "fresh": "False VigilRerouted", "elsewhere": "none", "ungated": "none"} {
			g, err := gate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			got := "none"
			if g != nil {
				got = string(g.Status) + " " + g.Reason
			}
			if got != want {
				t.Errorf("pod %s: gate condition %s, want %s", name, got, want)
			}
		}
		if n := testutil.ToFloat64(h.e.m.gatesOpened); n != 3 {
			t.Errorf("vigil_healing_readiness_gates_opened_total = %v, want 3", n)
		}
		if n := testutil.ToFloat64(h.e.m.gateErrors.WithLabelValues("watch")) + testutil.ToFloat64(h.e.m.gateErrors.WithLabelValues("open")); n != 0 {
			t.Errorf("vigil_healing_readiness_gate_errors_total = %v", n)
		}
		if recs := h.e.History().Recent(0); len(recs) != 0 {
			t.Errorf("opening a gate is not a remediation, yet it was recorded:%s", dump(recs))
		}
	})

	// healing.kubernetes.open_readiness_gates: false: the agent leaves the
	// gates of its node's pods alone. An agent with the opener on, started
	// beside it for another node, shows how soon a gate would have been
	// opened.
	t.Run("ReadinessGatesLeftAloneWhenTheOpenerIsOff", func(t *testing.T) {
		ctx := t.Context()
		ns := c.namespace(t)
		off, on := "gates-off", "gates-on"
		gateNodes(t, off, on)
		for _, n := range []string{off, on} {
			gatePod(t, ns, "pod-"+n, n, true)
		}
		gate := func(ctx context.Context, name string) (string, error) {
			p, err := c.admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return "", err
			}
			for _, cd := range p.Status.Conditions {
				if cd.Type == DefaultReadinessCondition {
					return string(cd.Status) + " " + cd.Reason, nil
				}
			}
			return "none", nil
		}
		hOff := startEngine(t, "dry_run: true\nidentity: agent-off\nkubernetes:\n  open_readiness_gates: false\npolicies:\n  routes:"+memPolicy, func(o *Options) {
			o.Kube = c.agent
			o.NodeName = off
		})
		hOn := startEngine(t, "dry_run: true\nidentity: agent-on\npolicies:\n  routes:"+memPolicy, func(o *Options) {
			o.Kube = c.agent
			o.NodeName = on
		})
		testenv.Eventually(t, time.Minute, 50*time.Millisecond, "gate of the pod on "+on+" opened", func(ctx context.Context) error {
			g, err := gate(ctx, "pod-"+on)
			if err == nil && g != "True "+GateOpenedReason {
				err = fmt.Errorf("condition %s", g)
			}
			return err
		})
		// Pods created after both agents started: the one with the
		// opener on opens its pod's gate; by then the other would have too.
		for _, n := range []string{off, on} {
			gatePod(t, ns, "later-"+n, n, true)
		}
		testenv.Eventually(t, time.Minute, 50*time.Millisecond, "gate of the later pod on "+on+" opened", func(ctx context.Context) error {
			g, err := gate(ctx, "later-"+on)
			if err == nil && g != "True "+GateOpenedReason {
				err = fmt.Errorf("condition %s", g)
			}
			return err
		})
		for _, name := range []string{"pod-" + off, "later-" + off} {
			if g, err := gate(ctx, name); err != nil || g != "none" {
				t.Errorf("pod %s on the node whose agent has the opener off: gate condition %s (%v), want none", name, g, err)
			}
		}
		if n := testutil.ToFloat64(hOff.e.m.gatesOpened); n != 0 {
			t.Errorf("opener off: vigil_healing_readiness_gates_opened_total = %v, want 0", n)
		}
		if n := testutil.ToFloat64(hOn.e.m.gatesOpened); n != 2 {
			t.Errorf("opener on: vigil_healing_readiness_gates_opened_total = %v, want 2", n)
		}
	})

	t.Run("ShippedRBACAllowsExactlyWhatActuatorsNeed", func(t *testing.T) {
		type check struct {
			group, resource, sub, verb, ns string
		}
		ssar := func(ch check) bool {
			r, err := c.agentFull.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), &authv1.SelfSubjectAccessReview{
				Spec: authv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authv1.ResourceAttributes{
					Group: ch.group, Resource: ch.resource, Subresource: ch.sub, Verb: ch.verb, Namespace: ch.ns}},
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return r.Status.Allowed
		}
		need := []check{
			{"", "pods", "", "get", "app"}, {"", "pods", "", "list", ""}, {"", "pods", "", "watch", ""}, {"", "pods", "", "delete", "app"}, {"", "pods", "", "update", "app"},
			{"", "pods", "status", "update", "app"}, {"", "pods", "eviction", "create", "app"},
			{"", "nodes", "", "get", ""}, {"", "nodes", "", "patch", ""}, {"", "events", "", "create", "app"},
			{"apps", "deployments", "", "get", "app"}, {"apps", "deployments", "", "patch", "app"},
			{"apps", "statefulsets", "", "patch", "app"}, {"apps", "daemonsets", "", "patch", "app"},
			{"apps", "replicasets", "", "get", "app"}, {"", "services", "", "list", ""},
			{"apps", "deployments", "scale", "update", "app"}, {"apps", "statefulsets", "scale", "get", "app"},
			{"coordination.k8s.io", "leases", "", "create", "vigil"}, {"coordination.k8s.io", "leases", "", "update", "vigil"},
		}
		deny := []check{
			{"", "secrets", "", "get", "app"}, {"", "configmaps", "", "list", "app"}, {"", "pods", "", "create", "app"},
			{"", "pods", "exec", "create", "app"}, {"", "nodes", "", "delete", ""}, {"", "nodes", "", "update", ""},
			{"apps", "deployments", "", "delete", "app"}, {"apps", "deployments", "", "update", "app"}, {"apps", "deployments", "", "create", "app"},
			{"apps", "replicasets", "", "delete", "app"}, {"", "events", "", "delete", "app"},
			{"", "services", "", "update", "app"}, {"", "services", "", "watch", ""}, {"", "endpoints", "", "list", ""},
			{"coordination.k8s.io", "leases", "", "create", "kube-system"}, {"coordination.k8s.io", "leases", "", "delete", "vigil"},
			{"rbac.authorization.k8s.io", "clusterroles", "", "update", ""}, {"", "serviceaccounts", "token", "create", "vigil"},
		}
		for _, ch := range need {
			if !ssar(ch) {
				t.Errorf("the agent may not %s %s/%s/%s in %q, which an actuator needs", ch.verb, ch.group, ch.resource, ch.sub, ch.ns)
			}
		}
		for _, ch := range deny {
			if ssar(ch) {
				t.Errorf("the agent may %s %s/%s/%s in %q, which no actuator needs", ch.verb, ch.group, ch.resource, ch.sub, ch.ns)
			}
		}
	})
}

func alertFiring(labels map[string]string) rules.Alert {
	return rules.Alert{Labels: labels, State: rules.StateFiring, Source: rules.SourceRule, StartsAt: time.Now()}
}
