package healing

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// memActuator is an in-memory actuator for the timer tests (a fake of a
// real target, named so): it records each action and, with restore_after
// set, offers a Restore, so the engine's restore path runs without knowing
// the actuator, as it does for scale.
type memActuator struct{}

var (
	memMu  sync.Mutex
	memLog []string
	memVal = map[string]int{}
)

func init() { Register(memActuator{}) }

func (memActuator) Name() string { return "test_mem" }
func (memActuator) Scope() Scope { return ScopeNode }
func (memActuator) Doc() string  { return "test only: adds one to an in-memory counter" }
func (memActuator) Params() []Param {
	return []Param{{Name: "target", Required: true, Check: checkNotEmpty, Doc: "counter"},
		{Name: "restore_after", Check: checkDuration, Doc: "undo after"}}
}
func (memActuator) Target(a Args) Target { return Target{Kind: "Command", Name: a.Str("target")} }
func (memActuator) Act(_ context.Context, _ *Env, in Request) (Outcome, error) {
	memMu.Lock()
	defer memMu.Unlock()
	name := in.Args.Str("target")
	before := memVal[name]
	memVal[name] = before + 1
	memLog = append(memLog, fmt.Sprintf("%s %d->%d", name, before, before+1))
	return Outcome{Message: "incremented " + name, Restore: &Restore{Before: before, After: before + 1,
		Undo: func(b, a any, _ time.Duration) Actuator { return memUndo{name: name, to: b.(int), expect: a.(int)} }}}, nil
}

// memUndo is the Restore's action: it sets the counter back.
type memUndo struct {
	name       string
	to, expect int
}

func (memUndo) Name() string         { return "test_mem" }
func (memUndo) Scope() Scope         { return ScopeNode }
func (memUndo) Doc() string          { return "" }
func (memUndo) Params() []Param      { return nil }
func (u memUndo) Target(Args) Target { return Target{Kind: "Command", Name: u.name} }
func (u memUndo) Act(context.Context, *Env, Request) (Outcome, error) {
	memMu.Lock()
	defer memMu.Unlock()
	if memVal[u.name] != u.expect {
		return Outcome{}, fmt.Errorf("not restored: %d", memVal[u.name])
	}
	memVal[u.name] = u.to
	memLog = append(memLog, fmt.Sprintf("%s restored to %d", u.name, u.to))
	return Outcome{Message: "restored"}, nil
}

func resetMem() {
	memMu.Lock()
	defer memMu.Unlock()
	memLog, memVal = nil, map[string]int{}
}

func memLogged() []string {
	memMu.Lock()
	defer memMu.Unlock()
	return append([]string(nil), memLog...)
}

// settleFake is settle on synctest's fake clock: it lets every goroutine
// of the bubble run, then moves the clock a second at a time (up to 24h
// of fake time) until no runbook is running.
func (h *harness) settleFake() []Record {
	h.t.Helper()
	for range 24 * 3600 {
		synctest.Wait()
		h.e.mu.Lock()
		n := len(h.e.incidents)
		h.e.mu.Unlock()
		if n == 0 {
			return h.e.History().Recent(0)
		}
		time.Sleep(time.Second)
	}
	h.t.Fatalf("runbooks still running after 24h of fake time: %s", dump(h.e.History().Recent(0)))
	return nil
}

const memPolicy = `
    - name: mem
      matchers: ['alertname="Broken"']
      steps:
        - action: test_mem
          params: {target: "{{.target}}"}
`

// The cooldown holds exactly as long as configured, on a fake clock: an
// action on the same target within the hour is vetoed, one after it runs.
func TestSynctestCooldown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, "dry_run: false\npolicies:\n  cooldown: 1h\n  routes:"+memPolicy)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "a"})
		h.settleFake()
		time.Sleep(59 * time.Minute)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "b"})
		h.settleFake()
		// b resolves, or the engine would decide it again.
		h.resolve(map[string]string{"alertname": "Broken", "target": "t1", "reason": "b"})
		time.Sleep(2 * time.Minute)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "c"})
		recs := h.settleFake()
		if got := results(recs); got != "success vetoed(cooldown) success" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
	})
}

// A verify window that passes with the alert still firing records
// "unresolved" exactly at the window and runs the next step; a resolve
// within the window ends the runbook.
func TestSynctestVerifyWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, `dry_run: false
policies:
  routes:
    - name: mem
      matchers: ['alertname="Broken"']
      steps:
        - action: test_mem
          params: {target: first}
          verify: {window: 10m}
        - action: test_mem
          params: {target: second}
`)
		h.fire(map[string]string{"alertname": "Broken"})
		recs := h.settleFake()
		if got := results(recs); got != "success unresolved success" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
		if d := recs[1].At.Sub(recs[0].At); d != 10*time.Minute {
			t.Errorf("unresolved recorded %s after the action on the fake clock, want the 10m window", d)
		}

		h.fire(map[string]string{"alertname": "Broken", "again": "1"})
		synctest.Wait()
		time.Sleep(9 * time.Minute)
		h.resolve(map[string]string{"alertname": "Broken", "again": "1"})
		recs = h.settleFake()
		if got := results(recs[3:]); got != "success resolved" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
	})
}

// An action waiting for approval is vetoed exactly at approval_timeout.
func TestSynctestApprovalTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, "dry_run: false\npolicies:\n  require_approval: true\n  approval_timeout: 15m\n  routes:"+memPolicy)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1"})
		recs := h.settleFake()
		if got := results(recs); got != "pending_approval vetoed(approval)" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
		if d := recs[1].At.Sub(recs[0].At); d != 15*time.Minute {
			t.Errorf("vetoed %s after the approval request on the fake clock, want 15m", d)
		}
		if n := len(memLogged()); n != 0 {
			t.Errorf("acted without approval: %v", memLogged())
		}
	})
}

// An Outcome's Restore is undone by the engine restore_after once its
// alert stayed resolved, without the engine knowing the actuator; an alert
// firing again in between postpones it.
func TestSynctestRestoreFromOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, `dry_run: false
policies:
  routes:
    - name: mem
      matchers: ['alertname="Broken"']
      steps:
        - action: test_mem
          params: {target: c, restore_after: 10m}
`)
		labels := map[string]string{"alertname": "Broken"}
		h.fire(labels)
		h.settleFake()
		h.resolve(labels)
		time.Sleep(5 * time.Minute)
		h.fire(labels) // fires again (cooldown 0): acts again, postpones
		h.settleFake()
		h.resolve(labels)
		synctest.Wait()
		time.Sleep(9*time.Minute + 59*time.Second)
		synctest.Wait()
		if got := memLogged(); len(got) != 2 {
			t.Fatalf("restored before restore_after: %v", got)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		got := memLogged()
		if len(got) != 3 || got[2] != "c restored to 0" {
			t.Fatalf("log %v, want two increments then c restored to 0 (the state before the first change)", got)
		}
	})
}

// An alert that a guard which clears (here the cooldown) vetoed is decided
// again, by the engine, while it keeps firing: the alert stream delivers a
// firing alert once, so nothing else would. Once acted on, a firing alert
// is not acted on again; one that resolves is not decided again; and a
// dry-run decision (no guard to clear) is not repeated.
func TestSynctestVetoedAlertIsDecidedAgainWhileFiring(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, "dry_run: false\nrepeat_interval: 1m\npolicies:\n  cooldown: 10m\n  routes:"+memPolicy)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "a"})
		h.settleFake()
		h.fire(map[string]string{"alertname": "Broken", "target": "t1", "reason": "b"})
		recs := h.settleFake()
		if got := results(recs); got != "success vetoed(cooldown)" {
			t.Fatalf("results %q%s", got, dump(recs))
		}
		first := recs[0].At
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		recs = h.e.History().Recent(0)
		last := recs[len(recs)-1]
		if last.Result != ResultSuccess || last.AlertLabels["reason"] != "b" {
			t.Fatalf("alert b was not acted on once the cooldown ended:%s", dump(recs))
		}
		// Decided again every repeat_interval: acted on within a minute
		// of the cooldown's end, and vetoed at each decision before.
		if d := last.At.Sub(first); d <= 10*time.Minute || d > 11*time.Minute {
			t.Errorf("acted on b %s after a, want within a minute after the 10m cooldown", d)
		}
		for _, r := range recs[1 : len(recs)-1] {
			if r.Result != ResultVetoed || r.Guard != GuardCooldown || r.AlertLabels["reason"] != "b" {
				t.Errorf("between the two actions: %s %s %s", r.AlertLabels["reason"], r.Result, r.Guard)
			}
		}
		if n := len(recs); n < 11 || n > 13 {
			t.Errorf("%d records, want one veto a minute for 10 minutes:%s", n, dump(recs))
		}
		if got := memLogged(); len(got) != 2 {
			t.Errorf("actions %v, want a's and then b's (none again while b fires)", got)
		}

		// d is vetoed by c's cooldown and resolves: not decided again.
		n := len(recs)
		h.fire(map[string]string{"alertname": "Broken", "target": "t2", "reason": "c"})
		h.settleFake()
		h.fire(map[string]string{"alertname": "Broken", "target": "t2", "reason": "d"})
		h.settleFake()
		h.resolve(map[string]string{"alertname": "Broken", "target": "t2", "reason": "d"})
		time.Sleep(time.Hour)
		synctest.Wait()
		if recs := h.e.History().Recent(0); results(recs[n:]) != "success vetoed(cooldown)" {
			t.Fatalf("after d resolved:%s", dump(recs[n:]))
		}
	})
	// A runbook that acted and then met a guard that clears is not decided
	// again: the alert was acted on.
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, `dry_run: false
repeat_interval: 1m
policies:
  routes:
    - name: mem
      matchers: ['alertname="Broken"']
      rate_limit: {max: 1, per: 1h}
      steps:
        - action: test_mem
          params: {target: first}
          verify: {window: 1m}
        - action: test_mem
          params: {target: second}
`)
		h.fire(map[string]string{"alertname": "Broken"})
		h.settleFake()
		time.Sleep(3 * time.Hour)
		synctest.Wait()
		if got := results(h.e.History().Recent(0)); got != "success unresolved vetoed(rate_limit)" {
			t.Fatalf("results %q%s", got, dump(h.e.History().Recent(0)))
		}
		if got := memLogged(); len(got) != 1 {
			t.Errorf("actions %v, want the first step's once", got)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		resetMem()
		h := startEngine(t, "dry_run: true\nrepeat_interval: 1m\npolicies:\n  routes:"+memPolicy)
		h.fire(map[string]string{"alertname": "Broken", "target": "t1"})
		h.settleFake()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := results(h.e.History().Recent(0)); got != "dry_run" {
			t.Fatalf("dry-run: %q", got)
		}
	})
}
