package faults

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// faultAppRef is the fault app's image on the real node.
const faultAppRef = "vigil.local/faultapp:1"

// kubeletView is the real kubelet's part of a scenario, as the pod status
// shows it: what the report's kubelet columns hold.
type kubeletView struct {
	Restarts      int32  // restartCount of the first container
	Waiting       string // state.waiting.reason (e.g. CrashLoopBackOff)
	LastReason    string // lastState.terminated.reason (e.g. OOMKilled, Error)
	LastExitCode  int32  // lastState.terminated.exitCode
	HasLastState  bool
	CrashLoopSeen bool // Waiting was CrashLoopBackOff at least once
	Pods          int  // pods the view sums up (watchKubelet)
}

func (v kubeletView) String() string {
	s := fmt.Sprintf("restarts %d", v.Restarts)
	if v.CrashLoopSeen {
		s += ", CrashLoopBackOff seen"
	} else if v.Waiting != "" {
		s += ", waiting " + v.Waiting
	}
	if v.HasLastState {
		s += fmt.Sprintf(", last state %s (exit %d)", v.LastReason, v.LastExitCode)
	}
	return s
}

func viewOf(p *corev1.Pod, prev kubeletView) kubeletView {
	v := kubeletView{CrashLoopSeen: prev.CrashLoopSeen}
	if len(p.Status.ContainerStatuses) == 0 {
		return v
	}
	cs := p.Status.ContainerStatuses[0]
	v.Restarts = cs.RestartCount
	if w := cs.State.Waiting; w != nil {
		v.Waiting = w.Reason
		v.CrashLoopSeen = v.CrashLoopSeen || w.Reason == "CrashLoopBackOff"
	}
	if l := cs.LastTerminationState.Terminated; l != nil {
		v.HasLastState, v.LastReason, v.LastExitCode = true, l.Reason, l.ExitCode
	}
	return v
}

// watchKubelet keeps res.Kubelet up to date, every 500 ms until stop is
// called, with the kubelet's part for every pod of app in ns seen since:
// restarts summed over the pods (each pod's highest count), whether any was
// in CrashLoopBackOff, and the most recent termination (last state, or the
// current state while terminated). Pods deleted meanwhile keep their share.
func watchKubelet(c *cluster, ns, app string, res *result) (stop func()) {
	agg := &kubeletView{}
	res.Kubelet = agg
	per := map[string]kubeletView{}
	var lastAt time.Time
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	update := func() {
		l, err := c.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			return
		}
		for i := range l.Items {
			p := &l.Items[i]
			prev := per[p.Name]
			v := viewOf(p, prev)
			v.Restarts = max(v.Restarts, prev.Restarts)
			per[p.Name] = v
			if len(p.Status.ContainerStatuses) == 0 {
				continue
			}
			cs := p.Status.ContainerStatuses[0]
			for _, term := range []*corev1.ContainerStateTerminated{cs.LastTerminationState.Terminated, cs.State.Terminated} {
				if term != nil && !term.FinishedAt.Time.Before(lastAt) {
					lastAt = term.FinishedAt.Time
					agg.HasLastState, agg.LastReason, agg.LastExitCode = true, term.Reason, term.ExitCode
				}
			}
		}
		agg.Restarts, agg.Pods = 0, len(per)
		for _, v := range per {
			agg.Restarts += v.Restarts
			agg.CrashLoopSeen = agg.CrashLoopSeen || v.CrashLoopSeen
		}
	}
	go func() {
		defer close(done)
		for {
			update()
			select {
			case <-ctx.Done():
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() {
		cancel()
		<-done
		// One last look, after the scenario ended.
		ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		update()
	}
}

// faultAppDeployment is a Deployment of the fault app image: the app on
// 8080 (readiness probe on it), its control endpoint on 8081, starting in
// mode.
func faultAppDeployment(name, mode, memLimit string) *appsv1.Deployment {
	labels := map[string]string{"app": name}
	c := corev1.Container{
		Name: name, Image: faultAppRef, ImagePullPolicy: corev1.PullNever,
		Env: []corev1.EnvVar{
			{Name: envAddr, Value: ":8080"},
			{Name: "FAULTS_CONTROL_ADDR", Value: ":8081"},
			{Name: "FAULTS_MODE", Value: mode},
		},
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}},
			PeriodSeconds: 1,
		},
	}
	if memLimit != "" {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memLimit)}
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					TerminationGracePeriodSeconds: ptr.To[int64](2),
					Containers:                    []corev1.Container{c},
				},
			},
		},
	}
}

// TestFaultsFaultAppOnRealNode runs the fault app image as Deployments on the
// real node (real kubelet, containerd, runc) and checks what the kubelet
// makes of its modes, as the pod status shows it: a replica in mode crash
// is restarted with back-off (CrashLoopBackOff, last state exit code 3); a
// replica in mode oom under a 32 MiB limit is OOM-killed (last state
// OOMKilled, exit code 137); a running replica switched to 5xx through its
// control endpoint answers 503 and its readiness probe takes it out (Ready
// false) without a restart.
func TestFaultsFaultAppOnRealNode(t *testing.T) {
	start := time.Now()
	k := testenv.StartKubernetesWith(t, testenv.KubeOptions{RealNode: true})
	k.Node.ImportImage(t, testenv.GoImage(t, faultAppRef, faultAppPackage))
	t.Logf("node and image: %s", time.Since(start).Round(time.Millisecond))
	ctx := t.Context()
	cs := k.Client()
	const ns = "default"
	for _, d := range []*appsv1.Deployment{
		faultAppDeployment("crasher", "crash", ""),
		faultAppDeployment("leaky", "oom", "32Mi"),
		faultAppDeployment("server", "ok", ""),
	} {
		if _, err := cs.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	views := map[string]kubeletView{}
	pods := map[string]*corev1.Pod{}
	// poll refreshes the views until cond holds for app, or fails after d.
	poll := func(app string, d time.Duration, what string, cond func(p *corev1.Pod, v kubeletView) bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for {
			l, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
			if err == nil && len(l.Items) > 0 {
				p := &l.Items[0]
				views[app] = viewOf(p, views[app])
				pods[app] = p
				if cond(p, views[app]) {
					t.Logf("%s: %s after %s: %s", app, what, time.Since(start).Round(time.Second), views[app])
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: not %s after %s: %s (pod %+v)", app, what, d, views[app], pods[app].Status)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	ready := func(p *corev1.Pod) bool {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				return c.Status == corev1.ConditionTrue
			}
		}
		return false
	}

	poll("server", 60*time.Second, "Ready", func(p *corev1.Pod, _ kubeletView) bool { return ready(p) })
	ip := pods["server"].Status.PodIP
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+ip+":8081/mode", strings.NewReader("5xx"))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("server: PUT /mode 5xx: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("server: PUT /mode 5xx: %s", resp.Status)
	}
	resp, err = c.Get("http://" + ip + ":8080/")
	if err != nil {
		t.Fatalf("server: GET after 5xx: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("server in mode 5xx answers %s, want 503", resp.Status)
	}
	poll("server", 30*time.Second, "taken out by its readiness probe", func(p *corev1.Pod, _ kubeletView) bool { return !ready(p) })
	if v := views["server"]; v.Restarts != 0 {
		t.Errorf("server: a 5xx replica was restarted (%s); only its readiness should change", v)
	}

	poll("leaky", 90*time.Second, "OOM-killed", func(_ *corev1.Pod, v kubeletView) bool { return v.HasLastState })
	if v := views["leaky"]; v.LastReason != "OOMKilled" || v.LastExitCode != 137 {
		t.Errorf("leaky: last state %s, want OOMKilled with exit code 137", v)
	}

	// The kubelet backs off 10 s, then 20 s: the second restart comes
	// about 30 s after the first exit.
	poll("crasher", 120*time.Second, "in back-off after two restarts", func(_ *corev1.Pod, v kubeletView) bool {
		return v.Restarts >= 2 && v.CrashLoopSeen
	})
	if v := views["crasher"]; v.LastReason != "Error" || v.LastExitCode != 3 {
		t.Errorf("crasher: last state %s, want Error with exit code 3", v)
	}
	t.Logf("total: %s", time.Since(start).Round(time.Millisecond))
}
