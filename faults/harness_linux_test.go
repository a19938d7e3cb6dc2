package faults

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// agentProc is the agent the suite reads: the chart's DaemonSet pod on the
// real node, at its API's address.
type agentProc struct {
	url string
}

// record is the part of an audit record (GET /api/v1/actions) the suite
// reads.
type record struct {
	ID          uint64            `json:"id"`
	At          time.Time         `json:"time"`
	Incident    string            `json:"incident"`
	Policy      string            `json:"policy"`
	Action      string            `json:"action"`
	Target      target            `json:"target"`
	Alert       string            `json:"alert"`
	AlertLabels map[string]string `json:"alert_labels"`
	Result      string            `json:"result"`
	Guard       string            `json:"guard"`
	Reason      string            `json:"reason"`
	DryRun      bool              `json:"dry_run"`
	Duration    float64           `json:"duration_seconds"`
}

type target struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

func (t target) String() string { return t.Kind + " " + t.Namespace + "/" + t.Name }

// started is when the actuator was called.
func (r record) started() time.Time {
	return r.At.Add(-time.Duration(r.Duration * float64(time.Second)))
}

// taken reports whether the record is an action that reached an actuator.
func (r record) taken() bool { return r.Result == "success" || r.Result == "failed" }

// alertsAbout returns the agent's alerts (active or pending) whose
// namespace label is ns, each as its labels and annotations.
func (a *agentProc) alertsAbout(ctx context.Context, ns string) ([]string, error) {
	return a.alertsWhere(ctx, func(l map[string]string) bool { return l["namespace"] == ns })
}

// alertsWhere returns the agent's alerts (active or pending) whose labels
// match, each as its name, state, labels and annotations.
func (a *agentProc) alertsWhere(ctx context.Context, match func(labels map[string]string) bool) ([]string, error) {
	al, err := a.alerts(ctx, match)
	var out []string
	for _, al := range al {
		out = append(out, al.String())
	}
	return out, err
}

// apiAlert is one alert of the agent's GET /api/v1/alerts.
type apiAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    string            `json:"activeAt"`
}

func (al apiAlert) String() string {
	return fmt.Sprintf("%s %s since %s: labels %v, annotations %v", al.Labels["alertname"], al.State, al.ActiveAt, al.Labels, al.Annotations)
}

// alerts returns the agent's alerts (active or pending) whose labels match.
func (a *agentProc) alerts(ctx context.Context, match func(labels map[string]string) bool) ([]apiAlert, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/api/v1/alerts", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var v struct {
		Data struct {
			Alerts []apiAlert `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return nil, err
	}
	var out []apiAlert
	for _, al := range v.Data.Alerts {
		if match(al.Labels) {
			out = append(out, al)
		}
	}
	return out, nil
}

// actions reads the agent's audit trail, oldest first.
func (a *agentProc) actions(ctx context.Context) ([]record, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, a.url+"/api/v1/actions?limit=100000", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Actions []record `json:"actions"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	sort.Slice(body.Actions, func(i, j int) bool { return body.Actions[i].ID < body.Actions[j].ID })
	return body.Actions, nil
}

// escalations receives the policies' escalation webhooks.
type escalations struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []escalation
}

type escalation struct {
	At     time.Time
	Policy string `json:"policy"`
	Reason string `json:"reason"`
	Alert  struct {
		Labels map[string]string `json:"labels"`
	} `json:"alert"`
}

// startEscalations starts the escalation receiver on host (an IP address
// the agent reaches).
func startEscalations(t *testing.T, host string) *escalations {
	e := &escalations{}
	e.srv = newServerOn(t, host, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m escalation
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &m); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		m.At = time.Now()
		e.mu.Lock()
		e.got = append(e.got, m)
		e.mu.Unlock()
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// newServerOn starts an httptest server listening on host (an IP address)
// at a free port.
func newServerOn(t *testing.T, host string, h http.Handler) *httptest.Server {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	return s
}

func (e *escalations) list() []escalation {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]escalation(nil), e.got...)
}

// cluster wraps the control plane and the objects the scenarios make.
type cluster struct {
	k      *testenv.Kube
	client kubernetes.Interface
	node   string
	// ctrl is the folder of the fault app's control files (see control).
	ctrl string
}

type appOpts struct {
	replicas    int32
	memoryLimit string // e.g. "64Mi"
	cpuLimit    string // e.g. "100m"
	call        string // dependency URL
	workers     int
	serviceTime time.Duration
	gate        bool              // declare the vigil.dev/healthy readiness gate
	env         map[string]string // the container's environment (the fault app's FAULTS_* settings)
	scratch     string            // mount path of an emptyDir
	hostDir     string            // a folder of the node mounted read-write at /data
}

// deleteNamespaces deletes the namespaces that match and waits, at most 2
// minutes, until they are gone (a slow deletion is logged, not failed).
func (c *cluster) deleteNamespaces(t *testing.T, match func(string) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	l, err := c.client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Logf("namespaces: %v", err)
		return
	}
	start := time.Now()
	var gone []string
	for _, n := range l.Items {
		if match(n.Name) {
			if err := c.client.CoreV1().Namespaces().Delete(ctx, n.Name, metav1.DeleteOptions{}); err != nil {
				t.Logf("delete namespace %s: %v", n.Name, err)
			}
			gone = append(gone, n.Name)
		}
	}
	err = poll(ctx, func() bool {
		for _, ns := range gone {
			if _, err := c.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
				return false
			}
		}
		return true
	})
	t.Logf("deleted %d namespaces in %s (%v)", len(gone), time.Since(start).Round(time.Millisecond), err)
}

func (c *cluster) namespace(t *testing.T, ns string) {
	t.Helper()
	if _, err := c.client.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deploy creates a Deployment of the fault app pinned to the agent's node
// and a Service in front of it, and waits until its pods are Ready.
func (c *cluster) deploy(t *testing.T, ns, name string, o appOpts) *corev1.Service {
	t.Helper()
	svc := c.service(t, ns, name)
	c.deployNoService(t, ns, name, o)
	return svc
}

// deployNoService is deploy for an app whose Service already exists.
func (c *cluster) deployNoService(t *testing.T, ns, name string, o appOpts) {
	t.Helper()
	labels := map[string]string{"app": name}
	tmpl := c.podTemplate(ns, name, o)
	tmpl.Labels = labels
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &o.replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: tmpl,
		},
	}
	if o.gate {
		d.Spec.Template.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "vigil.dev/healthy"}}
	}
	if _, err := c.client.AppsV1().Deployments(ns).Create(t.Context(), d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.settled(t, ns, name)
}

func (c *cluster) service(t *testing.T, ns, name string) *corev1.Service {
	t.Helper()
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(appPort)}},
		},
	}
	s, err := c.client.CoreV1().Services(ns).Create(t.Context(), s, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (c *cluster) settled(t *testing.T, ns, name string) {
	t.Helper()
	testenv.Eventually(t, 2*time.Minute, 200*time.Millisecond, "deployment "+ns+"/"+name+" available", func(ctx context.Context) error {
		d, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if d.Generation != s.ObservedGeneration || s.UpdatedReplicas != *d.Spec.Replicas || s.Replicas != *d.Spec.Replicas || s.AvailableReplicas != *d.Spec.Replicas {
			return fmt.Errorf("replicas %d updated %d available %d of %d", s.Replicas, s.UpdatedReplicas, s.AvailableReplicas, *d.Spec.Replicas)
		}
		return nil
	})
}

func (c *cluster) pods(ctx context.Context, ns, app string) ([]corev1.Pod, error) {
	l, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (c *cluster) replicas(ctx context.Context, ns, name string) (int32, error) {
	d, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	return *d.Spec.Replicas, nil
}

// readyEndpoints returns the ready addresses behind a Service, as a
// service proxy would route to them.
func (c *cluster) readyEndpoints(ctx context.Context, ns, svc string) ([]string, error) {
	l, err := c.client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range l.Items {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			for _, a := range e.Addresses {
				out = append(out, net.JoinHostPort(a, strconv.Itoa(appPort)))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// control writes the fault app's mode for a pod ("pod-NAME") or for every
// pod of an app ("app-NS-APP"); "" removes it (back to ok).
func control(t *testing.T, dir, key, mode string) {
	t.Helper()
	f := filepath.Join(dir, key)
	if mode == "" {
		if err := os.Remove(f); err != nil && !os.IsNotExist(err) {
			t.Error(err)
		}
		return
	}
	if err := os.WriteFile(f+".tmp", []byte(mode), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f+".tmp", f); err != nil {
		t.Fatal(err)
	}
}

// load sends steady HTTP traffic to a Service's ready endpoints, the way
// clients behind a service proxy would, and keeps what it saw.
type load struct {
	c        *cluster
	ns, svc  string
	every    time.Duration
	slow     time.Duration // a response slower than this counts as bad
	client   *http.Client
	mu       sync.Mutex
	ok, bad  int
	lastBad  time.Time
	lastGood time.Time
	badWhy   string // what the last bad request saw
	stopped  chan struct{}
	cancel   context.CancelFunc
	started  time.Time
}

func startLoad(t *testing.T, c *cluster, ns, svc string, rate int, slow time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{c: c, ns: ns, svc: svc, every: time.Second / time.Duration(rate), slow: slow,
		client:  &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		stopped: make(chan struct{}), cancel: cancel, started: time.Now()}
	go l.run(ctx)
	t.Cleanup(l.stop)
	return l
}

func (l *load) stop() {
	l.cancel()
	<-l.stopped
}

func (l *load) run(ctx context.Context) {
	defer close(l.stopped)
	var (
		eps     []string
		refresh time.Time
		next    int
		wg      sync.WaitGroup
		sem     = make(chan struct{}, 256)
	)
	defer wg.Wait()
	tick := time.NewTicker(l.every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if time.Since(refresh) > 200*time.Millisecond {
			if e, err := l.c.readyEndpoints(ctx, l.ns, l.svc); err == nil {
				eps = e
			}
			refresh = time.Now()
		}
		if len(eps) == 0 {
			l.note(false, "no ready endpoints")
			continue
		}
		ep := eps[next%len(eps)]
		next++
		select {
		case sem <- struct{}{}:
		default:
			l.note(false, "256 requests outstanding") // saturated
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			start := time.Now()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ep+"/api/items", nil)
			resp, err := l.client.Do(req)
			if err != nil {
				if ctx.Err() == nil {
					l.note(false, err.Error())
				}
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			took := time.Since(start)
			l.note(resp.StatusCode < 500 && (l.slow == 0 || took < l.slow), fmt.Sprintf("%s from %s in %s", resp.Status, ep, took.Round(time.Millisecond)))
		}()
	}
}

func (l *load) note(good bool, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if good {
		l.ok++
		l.lastGood = time.Now()
	} else {
		l.bad++
		l.lastBad = time.Now()
		l.badWhy = what
	}
}

// String summarises what the load saw.
func (l *load) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bad == 0 {
		return fmt.Sprintf("%d good, 0 bad", l.ok)
	}
	return fmt.Sprintf("%d good, %d bad; last bad %s ago: %s", l.ok, l.bad, time.Since(l.lastBad).Round(time.Millisecond), l.badWhy)
}

// healthySince returns since when every response was good (zero if the
// last one was bad or nothing succeeded yet).
func (l *load) healthySince() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lastGood.IsZero() || !l.lastGood.After(l.lastBad) {
		return time.Time{}
	}
	if l.lastBad.IsZero() {
		return l.started // nothing ever failed
	}
	return l.lastBad
}

// waitHealthy waits until the load saw only good responses for hold, and
// returns when that good stretch began.
func waitHealthy(ctx context.Context, l *load, since time.Time, hold time.Duration) (time.Time, bool) {
	for {
		if s := l.healthySince(); !s.IsZero() && time.Since(s) >= hold {
			if s.Before(since) {
				s = since
			}
			return s, true
		}
		select {
		case <-ctx.Done():
			return time.Time{}, false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// rollingRestarts rolls Deployment ns/name out anew (as kubectl rollout
// restart does: a new pod-template annotation) every interval until the
// test ends, and returns how many rollouts it started and saw complete.
func (c *cluster) rollingRestarts(t *testing.T, ns, name string, every time.Duration) (counts func() (started, completed int)) {
	var mu sync.Mutex
	var started, completed int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
			patch := fmt.Sprintf(`{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
			d, err := c.client.AppsV1().Deployments(ns).Patch(ctx, name, types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{})
			if err != nil {
				continue
			}
			mu.Lock()
			started++
			mu.Unlock()
			// Complete: the controller saw this generation and every
			// replica is updated and available.
			_ = poll(ctx, func() bool {
				got, err := c.client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
				if err != nil {
					return false
				}
				s := got.Status
				return s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == *got.Spec.Replicas && s.Replicas == *got.Spec.Replicas && s.AvailableReplicas == *got.Spec.Replicas
			})
			if ctx.Err() == nil {
				mu.Lock()
				completed++
				mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() (int, int) { mu.Lock(); defer mu.Unlock(); return started, completed }
}
