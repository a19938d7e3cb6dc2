package rules

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestEventsBecomeAlertsAtOnce(t *testing.T) {
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.EventAlerts.ResolveAfter = 1500 * time.Millisecond
	te := startEngine(t, cfg)
	sub := te.stream.Subscribe(100)
	defer sub.Close()
	// The engine subscribes in Start's goroutine; wait until it listens.
	testenv.EventuallyTrue(t, 10*time.Second, "the engine's event subscription", func() bool {
		te.events.Publish(event.Event{Kind: event.ProcessExit, Comm: "probe", ExitCode: 0})
		return testutil.ToFloat64(te.events_().events.WithLabelValues(string(event.ProcessExit), "ignored")) > 0
	})

	id := workload.Identity{Namespace: "shop", Pod: "cart-1", Container: "cart", ContainerID: "abc123"}
	sent := time.Now()
	te.events.Publish(event.Event{Kind: event.ProcessExit, Time: sent, Workload: id, PID: 42, Comm: "cart", ExitCode: 3})
	a := nextAlert(t, sub, AlertProcessExitedNonZero, StateFiring)
	if a.Source != SourceEvent || a.Labels["pod"] != "cart-1" || a.Labels["namespace"] != "shop" || a.Labels["exit_code"] != "3" ||
		a.Labels["comm"] != "cart" || a.Annotations["pid"] != "42" || a.Annotations["container_id"] != "abc123" || !a.StartsAt.Equal(sent) {
		t.Errorf("process exit alert: %+v", a)
	}
	t.Logf("event to alert: %s", time.Since(sent))

	// A burst of the same failure folds into the firing alert.
	for i := 0; i < 50; i++ {
		te.events.Publish(event.Event{Kind: event.ProcessExit, Workload: id, PID: uint32(100 + i), Comm: "cart", ExitCode: 3})
	}
	te.events.Publish(event.Event{Kind: event.OOMKill, Workload: workload.Identity{SystemdUnit: "db.service"}, PID: 7, Comm: "postgres"})
	o := nextAlert(t, sub, AlertOOMKill, StateFiring)
	if o.Labels["unit"] != "db.service" || o.Annotations["summary"] != "postgres in db.service was killed by the OOM killer." {
		t.Errorf("OOM alert: %+v", o)
	}
	// Killed by SIGPIPE is ignored by default; SIGSEGV is not.
	te.events.Publish(event.Event{Kind: event.ProcessExit, Comm: "pipe", Signal: 13})
	te.events.Publish(event.Event{Kind: event.ProcessExit, Comm: "crash", Signal: 11})
	s := nextAlert(t, sub, AlertProcessExitedNonZero, StateFiring)
	if s.Labels["signal"] != "11" || s.Labels["comm"] != "crash" {
		t.Errorf("signal alert: %+v", s)
	}
	if got := testutil.ToFloat64(te.events_().events.WithLabelValues(string(event.ProcessExit), "repeat")); got != 50 {
		t.Errorf("repeats counted %v, want 50", got)
	}

	// Every alert resolves after the hold time without repeats. The three
	// resolve at about the same moment, in no set order, so collect them.
	resolved := map[string]Alert{}
	timeout := time.After(30 * time.Second)
	for len(resolved) < 3 {
		select {
		case a := <-sub.C():
			if a.State == StateResolved {
				resolved[a.Name()+"/"+a.Labels["comm"]] = a
			}
		case <-timeout:
			t.Fatalf("resolved within 30s: %v; want the cart and crash exits and the OOM kill", resolved)
		}
	}
	if r, ok := resolved[AlertProcessExitedNonZero+"/cart"]; !ok || r.Annotations["count"] != "51" {
		t.Errorf("resolved cart alert: %+v", r)
	}
	if _, ok := resolved[AlertProcessExitedNonZero+"/crash"]; !ok {
		t.Errorf("crash alert did not resolve: %v", resolved)
	}
	if _, ok := resolved[AlertOOMKill+"/postgres"]; !ok {
		t.Errorf("OOM alert did not resolve: %v", resolved)
	}
}

func (te *testEngine) events_() *eventAlerter { return te.Engine.events }

func TestEventAlertsAreBounded(t *testing.T) {
	cfg := NewConfig().EventAlerts
	cfg.MaxActive = 2
	s := NewStream()
	sub := s.Subscribe(10)
	defer sub.Close()
	reg := prometheus.NewRegistry()
	ea := newEventAlerter(cfg, s, reg)
	for _, c := range []string{"a", "b", "c", "d"} {
		ea.handle(event.Event{Kind: event.ProcessExit, Comm: c, ExitCode: 1})
	}
	if got := testutil.ToFloat64(ea.dropped); got != 2 {
		t.Errorf("dropped %v, want 2", got)
	}
	if len(sub.C()) != 2 {
		t.Errorf("published %d alerts, want 2", len(sub.C()))
	}
}

// A deleted pod's sandbox (pause) is killed by the runtime with SIGKILL:
// that is the pod going away, not an alert. The same signal in one of the
// pod's containers, or a process called pause outside any pod, still is.
func TestPodSandboxDeathIsNotAnAlert(t *testing.T) {
	s := NewStream()
	sub := s.Subscribe(10)
	defer sub.Close()
	ea := newEventAlerter(NewConfig().EventAlerts, s, prometheus.NewRegistry())
	sandbox := workload.Identity{Namespace: "shop", Pod: "cart-1", ContainerID: "5a9d"}
	app := workload.Identity{Namespace: "shop", Pod: "cart-1", Container: "cart", ContainerID: "abc123"}
	ea.handle(event.Event{Kind: event.ProcessExit, Workload: sandbox, Comm: "pause", Signal: 9})
	ea.handle(event.Event{Kind: event.ProcessExit, Workload: sandbox, Comm: "pause", ExitCode: 2})
	// The pod object may be gone by then; its UID is in the cgroup path.
	ea.handle(event.Event{Kind: event.ProcessExit, Workload: workload.Identity{PodUID: "0d3c5a8e-1f6b-4a51-9a37-6c1f0e2b9d44", ContainerID: "77f1"}, Comm: "pause", Signal: 9})
	if got := testutil.ToFloat64(ea.events.WithLabelValues(string(event.ProcessExit), "ignored")); got != 3 {
		t.Errorf("sandbox deaths ignored %v, want 3", got)
	}
	ea.handle(event.Event{Kind: event.ProcessExit, Workload: app, Comm: "cart", Signal: 9})
	ea.handle(event.Event{Kind: event.ProcessExit, Workload: workload.Identity{SystemdUnit: "pause.service"}, Comm: "pause", Signal: 9})
	var got []string
	for len(sub.C()) > 0 {
		a := <-sub.C()
		got = append(got, a.Labels["comm"]+"/"+a.Labels["container"]+a.Labels["unit"]+"/"+a.Labels["signal"])
	}
	if want := "[cart/cart/9 pause/pause.service/9]"; fmt.Sprint(got) != want {
		t.Errorf("alerts %v, want %s", got, want)
	}
}
