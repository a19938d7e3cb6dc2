package overhead

import (
	"strings"
	"testing"
)

var testPolicy = Policy{AgentCPU: 0.10, KernelCPU: 0.05, RecoverBelow: 0.5, ShedAfter: 2, RecoverAfter: 3, MaxLevel: MaxLevel}

var (
	idle       = Usage{AgentCPU: 0.01, KernelCPU: 0.001, KernelKnown: true}
	agentHot   = Usage{AgentCPU: 0.30, KernelCPU: 0.001, KernelKnown: true}
	kernelHot  = Usage{AgentCPU: 0.01, KernelCPU: 0.20, KernelKnown: true}
	between    = Usage{AgentCPU: 0.07, KernelCPU: 0.001, KernelKnown: true} // over half the budget, under the budget
	kernelLost = Usage{AgentCPU: 0.01, KernelCPU: 0.20, KernelKnown: false}
)

// run feeds the usages to Decide from s and returns the level after each
// decision and the changes, as a compact trace.
func run(p Policy, s State, us ...Usage) (State, []Level, []Change) {
	var levels []Level
	var changes []Change
	for _, u := range us {
		var c Change
		s, c = Decide(p, s, u)
		levels = append(levels, s.Level)
		changes = append(changes, c)
	}
	return s, levels, changes
}

func repeat(u Usage, n int) []Usage {
	out := make([]Usage, n)
	for i := range out {
		out[i] = u
	}
	return out
}

func levelsString(ls []Level) string {
	var b strings.Builder
	for _, l := range ls {
		b.WriteByte(byte('0' + l))
	}
	return b.String()
}

func TestDecideShedsAfterShedAfterDecisionsOverBudget(t *testing.T) {
	for _, tc := range []struct {
		name string
		u    Usage
	}{{"agent over", agentHot}, {"kernel over", kernelHot}} {
		t.Run(tc.name, func(t *testing.T) {
			// ShedAfter 2: a level every second decision over budget, up
			// to MaxLevel and no further.
			_, levels, changes := run(testPolicy, InitialState(), repeat(tc.u, 10)...)
			if got, want := levelsString(levels), "0112233444"; got != want {
				t.Fatalf("levels %s, want %s", got, want)
			}
			if changes[1] != Shed || changes[0] != Hold || changes[9] != Hold {
				t.Fatalf("changes %v", changes)
			}
		})
	}
}

func TestDecideOneSampleOverDoesNotShed(t *testing.T) {
	// Over, then under the budget but above the recovery mark, then over:
	// the count restarts, nothing is shed.
	_, levels, _ := run(testPolicy, InitialState(), agentHot, between, agentHot, idle, agentHot)
	if got := levelsString(levels); got != "00000" {
		t.Fatalf("levels %s, want 00000", got)
	}
}

func TestDecideRecoversWithHysteresis(t *testing.T) {
	s, _, _ := run(testPolicy, InitialState(), repeat(kernelHot, 4)...)
	if s.Level != LevelHTTPSample {
		t.Fatalf("level %s after four decisions over, want http_sample", s.Level)
	}
	// Between the recovery mark and the budget the level holds however
	// long it lasts.
	s, levels, _ := run(testPolicy, s, repeat(between, 20)...)
	if got := levelsString(levels); got != strings.Repeat("2", 20) {
		t.Fatalf("between the marks: levels %s, want all 2", got)
	}
	// Under the mark: one level per RecoverAfter (3) decisions.
	s, levels, changes := run(testPolicy, s, repeat(idle, 8)...)
	if got, want := levelsString(levels), "22111000"; got != want {
		t.Fatalf("recovering: levels %s, want %s", got, want)
	}
	if changes[2] != Recover || changes[5] != Recover || changes[7] != Hold {
		t.Fatalf("changes %v", changes)
	}
	// At level 0 nothing more happens.
	if s, _ = Decide(testPolicy, s, idle); s.Level != LevelNone || s.Under != 0 {
		t.Fatalf("state at rest %+v", s)
	}
}

func TestDecideBacksOffAfterQuickReshed(t *testing.T) {
	p := testPolicy
	p.ShedAfter = 1
	s, _, _ := run(p, InitialState(), kernelHot) // level 1
	// Recover after 3 quiet decisions...
	s, levels, _ := run(p, s, idle, idle, idle)
	if s.Level != LevelNone || levelsString(levels) != "110" {
		t.Fatalf("levels %s, state %+v", levelsString(levels), s)
	}
	// ... the load comes back at once: shed again, and the next recovery
	// waits twice as long.
	s, _, _ = run(p, s, kernelHot)
	if s.Level != LevelSpans || s.Wait != 2 {
		t.Fatalf("after a quick re-shed: %+v, want level 1 and wait 2", s)
	}
	s, levels, _ = run(p, s, repeat(idle, 6)...)
	if got := levelsString(levels); got != "111110" {
		t.Fatalf("second recovery: levels %s, want 111110 (6 decisions)", got)
	}
	// Flapping again doubles once more, capped at maxWait.
	for range 5 {
		s, _, _ = run(p, s, kernelHot)
		s, _, _ = run(p, s, repeat(idle, 3*s.Wait)...)
	}
	if s.Wait != maxWait {
		t.Fatalf("wait %d after repeated flapping, want the cap %d", s.Wait, maxWait)
	}
	// A recovered level that holds for 4 × RecoverAfter decisions resets
	// the wait.
	s, _, _ = run(p, s, repeat(idle, 4*p.RecoverAfter)...)
	if s.Wait != 1 {
		t.Fatalf("wait %d after a long quiet spell, want 1", s.Wait)
	}
}

func TestDecideIgnoresKernelBudgetWhenUnmeasured(t *testing.T) {
	// The kernel usage is unknown (no privilege for BPF statistics): only
	// the agent budget counts, in both directions.
	_, levels, _ := run(testPolicy, InitialState(), repeat(kernelLost, 5)...)
	if got := levelsString(levels); got != "00000" {
		t.Fatalf("levels %s, want 00000", got)
	}
	s := State{Level: LevelSpans, Wait: 1, SinceRecover: -1}
	_, levels, _ = run(testPolicy, s, repeat(kernelLost, 3)...)
	if got := levelsString(levels); got != "110" {
		t.Fatalf("recovery with the kernel unmeasured: levels %s, want 110", got)
	}
}

func TestDecideZeroBudgetIsNoBudget(t *testing.T) {
	p := Policy{RecoverBelow: 0.5, ShedAfter: 1, RecoverAfter: 1, MaxLevel: MaxLevel}
	_, levels, _ := run(p, InitialState(), Usage{AgentCPU: 8, KernelCPU: 8, KernelKnown: true})
	if levels[0] != LevelNone {
		t.Fatalf("level %s with no budget at all", levels[0])
	}
}

func TestDecideRespectsMaxLevel(t *testing.T) {
	p := testPolicy
	p.MaxLevel = LevelSpans
	_, levels, _ := run(p, InitialState(), repeat(agentHot, 8)...)
	if got := levelsString(levels); got != "01111111" {
		t.Fatalf("levels %s, want 01111111", got)
	}
}

func TestLevelsAreCumulative(t *testing.T) {
	for l := LevelNone; l <= MaxLevel; l++ {
		if l > LevelNone && (l.SpanDivisor() < (l-1).SpanDivisor() || l.HTTPSampleShift() < (l-1).HTTPSampleShift() ||
			l.IntervalFactor() < (l-1).IntervalFactor()) {
			t.Errorf("level %s sheds less than level %s", l, l-1)
		}
		if strings.HasPrefix(l.String(), "level(") {
			t.Errorf("level %d has no name", l)
		}
	}
	if LevelNone.SpanDivisor() != 1 || LevelNone.HTTPSampleShift() != 0 || LevelNone.IntervalFactor() != 1 || LevelNone.HTTPHeadWindows() != 0 {
		t.Error("level none sheds something")
	}
}
