package healing

import (
	"time"

	"github.com/vigil-agent/vigil/rules"
)

// restoreState is a change with restore_after (an Outcome with a Restore)
// that the engine undoes once every alert that caused it has stayed
// resolved for the restore delay.
// It lives in memory: an agent restart forgets it.
type restoreState struct {
	target   Target
	policy   *Policy
	step     *Step
	alert    rules.Alert
	after    time.Duration
	original any // the target's state before Vigil's first change
	set      any // the state Vigil's last change set
	undo     func(before, after any, resolvedFor time.Duration) Actuator
	// firing says, per fingerprint of an alert that scaled the target,
	// whether it is firing now.
	firing  map[string]bool
	waiting bool
	cancel  chan struct{}
}

// noteRestore remembers a successful change whose step has restore_after.
func (e *Engine) noteRestore(inc *incident, s *Step, t Target, after time.Duration, r *Restore) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.restores[t]
	if st == nil {
		st = &restoreState{target: t, original: r.Before, firing: map[string]bool{}}
		e.restores[t] = st
	}
	st.policy, st.step, st.alert, st.after, st.set, st.undo = inc.policy, s, inc.alert, after, r.After, r.Undo
	st.firing[inc.alert.Fingerprint] = !inc.isResolved()
	st.stopWait()
	e.armLocked(st)
}

// restoreFiringLocked: an alert that scaled a target fires again, so its
// restore waits until it resolves again.
func (e *Engine) restoreFiringLocked(fp string) {
	for _, st := range e.restores {
		if _, ok := st.firing[fp]; ok {
			st.firing[fp] = true
			st.stopWait()
		}
	}
}

// restoreResolvedLocked: an alert that scaled a target resolved; when it
// was the last one firing, the restore delay starts.
func (e *Engine) restoreResolvedLocked(fp string) {
	for _, st := range e.restores {
		if _, ok := st.firing[fp]; ok {
			st.firing[fp] = false
			e.armLocked(st)
		}
	}
}

func (st *restoreState) stopWait() {
	if st.waiting {
		close(st.cancel)
		st.waiting = false
	}
}

// armLocked starts the restore delay if no alert of st fires.
func (e *Engine) armLocked(st *restoreState) {
	for _, f := range st.firing {
		if f {
			return
		}
	}
	if st.waiting || e.ctx == nil || e.ctx.Err() != nil {
		return
	}
	st.waiting, st.cancel = true, make(chan struct{})
	cancel := st.cancel
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		timer := time.NewTimer(st.after)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-cancel:
			return
		case <-e.ctx.Done():
			return
		}
		e.mu.Lock()
		select {
		case <-cancel:
			e.mu.Unlock()
			return
		default:
		}
		st.waiting = false
		delete(e.restores, st.target)
		e.mu.Unlock()
		e.restore(st)
	}()
}

// restore runs the undo the actuator gave through the guards, audited as
// its own record in a new incident.
func (e *Engine) restore(st *restoreState) {
	inc := &incident{id: newIncidentID(), alert: st.alert, policy: st.policy, resolved: make(chan struct{}), restore: true}
	step := &Step{Index: st.step.Index, Action: st.undo(st.original, st.set, st.after)}
	e.attempt(e.ctx, inc, step, e.guards, "")
}
