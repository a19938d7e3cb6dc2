//go:build linux

package ebpf

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/event"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// dialRefused connects n times to addr of "n,addr", each refused.
func dialRefused(arg string) error {
	n, addr, _ := strings.Cut(arg, ",")
	k, err := strconv.Atoi(n)
	if err != nil {
		return err
	}
	for range k {
		if _, err := net.Dial("tcp4", addr); !errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("connect to %s: want ECONNREFUSED, got %v", addr, err)
		}
	}
	return nil
}

type outcomeKey struct {
	unit   string
	signal event.Signal
	dest   string
}

// TestOutcomeEvidence: real servers and callers in their own cgroups; the
// outcome batches the collector publishes for the rules engine's evidence
// detector count exactly what was sent: 5xx answers, slow answers,
// requests never answered (once each, after http_hang_after), calls given
// up by their caller (slow, once each, after http_slow_after), and refused
// connects, per workload and destination.
func TestOutcomeEvidence(t *testing.T) { forEachHTTPHook(t, testOutcomeEvidence) }

func testOutcomeEvidence(t *testing.T, hook string) {
	cfg := spansConfig(hook)
	cfg.HTTPHangAfter = 500 * time.Millisecond
	cfg.HTTPUnansweredAfter = time.Second
	cfg.HTTPSlowAfter = 200 * time.Millisecond
	env := startCollector(t, cfg)
	requireHTTPHook(t, env, hook)
	const (
		failing = "vigil-ebpf-test-ev-5xx.service"
		hung    = "vigil-ebpf-test-ev-hung.service"
		slow    = "vigil-ebpf-test-ev-slow.service"
		caller  = "vigil-ebpf-test-ev-caller.service"
		quitter = "vigil-ebpf-test-ev-quitter.service"
		dialer  = "vigil-ebpf-test-ev-dialer.service"
	)
	// Every cgroup is known to the collector before its traffic starts
	// (knownCgroup): a first request read before the cgroup's mkdir event
	// would not be attributed to its unit.
	cg := func(unit string) string {
		dir := testCgroup(t, unit)
		env.knownCgroup(t, dir)
		return dir
	}
	failAddr := startServer(t, cg(failing), "5xx")
	hungAddr := startServer(t, cg(hung), "hung")
	slowAddr := startServer(t, cg(slow), "300ms")
	closed := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))

	if out, err := helperCmd(t, cg(caller), "fault-gets", "5,"+failAddr+","+slowAddr).CombinedOutput(); err != nil {
		t.Fatalf("caller: %v\n%s", err, out)
	}
	if out, err := helperCmd(t, cg(dialer), "dial-refused", "6,"+closed).CombinedOutput(); err != nil {
		t.Fatalf("dialer: %v\n%s", err, out)
	}
	// A caller that gives up after 300 ms on a server that never answers:
	// four requests the server counts unanswered, the caller slow.
	if out, err := helperCmd(t, cg(quitter), "timeout-gets", "4,300ms,"+hungAddr).CombinedOutput(); err != nil {
		t.Fatalf("quitter: %v\n%s", err, out)
	}

	got := map[outcomeKey]event.Outcome{}
	var slowAfter, hangAfter time.Duration
	add := func(ev event.Event) {
		slowAfter, hangAfter = ev.SlowAfter, ev.HangAfter
		for _, o := range ev.Outcomes {
			k := outcomeKey{o.Workload.SystemdUnit, o.Signal, o.Destination}
			g := got[k]
			g.Total += o.Total
			g.Errors += o.Errors
			g.Slow += o.Slow
			g.Unanswered += o.Unanswered
			got[k] = g
		}
	}
	want := map[outcomeKey]event.Outcome{
		{failing, event.ServerHTTP, ""}:       {Total: 5, Errors: 5},
		{slow, event.ServerHTTP, ""}:          {Total: 5, Slow: 5},
		{hung, event.ServerHTTP, ""}:          {Unanswered: 4},
		{caller, event.ClientHTTP, failAddr}:  {Total: 5, Errors: 5},
		{caller, event.ClientHTTP, slowAddr}:  {Total: 5, Slow: 5},
		{quitter, event.ClientHTTP, hungAddr}: {Total: 4, Slow: 4},
		{dialer, event.Connect, closed}:       {Total: 6, Errors: 6},
		{caller, event.Connect, failAddr}:     {Total: 5},
		{caller, event.Connect, slowAddr}:     {Total: 5},
	}
	done := func() bool {
		for k, w := range want {
			g := got[k]
			if g.Total < w.Total || g.Errors < w.Errors || g.Slow < w.Slow || g.Unanswered < w.Unanswered {
				return false
			}
		}
		return true
	}
	timeout := time.After(30 * time.Second)
	for !done() {
		select {
		case ev := <-env.sub.C():
			if ev.Kind == event.Outcomes {
				add(ev)
			}
		case <-timeout:
			t.Fatalf("outcomes so far %v, want at least %v", got, want)
		}
	}
	// Nothing is counted twice: a few more batches add nothing.
	settle := time.After(1500 * time.Millisecond)
	for wait := true; wait; {
		select {
		case ev := <-env.sub.C():
			if ev.Kind == event.Outcomes {
				add(ev)
			}
		case <-settle:
			wait = false
		}
	}
	for k, w := range want {
		if g := got[k]; g.Total != w.Total || g.Errors != w.Errors || g.Slow != w.Slow || g.Unanswered != w.Unanswered {
			t.Errorf("%s %s %s: total %d errors %d slow %d unanswered %d; want %d %d %d %d", k.unit, k.signal, k.dest,
				g.Total, g.Errors, g.Slow, g.Unanswered, w.Total, w.Errors, w.Slow, w.Unanswered)
		}
	}
	if slowAfter != cfg.HTTPSlowAfter || hangAfter != cfg.HTTPHangAfter {
		t.Errorf("batches say slow after %s, hang after %s; want %s and %s", slowAfter, hangAfter, cfg.HTTPSlowAfter, cfg.HTTPHangAfter)
	}
	if got := env.value(t, "vigil_ebpf_fast_path_events_total", map[string]string{"kind": "outcomes"}); got == 0 {
		t.Error("outcome batches not counted in vigil_ebpf_fast_path_events_total")
	}
}
