// Package overhead is the agent's overhead governor: it holds the agent's
// own CPU and its eBPF programs' kernel CPU to a budget. Every interval it
// measures the agent process's CPU time and, for a short window, the
// kernel's run time of each eBPF program (BPF run-time statistics, enabled
// only for the window); when either is over its budget it sheds load one
// level at a time in a fixed order, and when both are well under it it
// recovers one level at a time (see Decide).
//
// The levels, each including those before it:
//
//  1. spans: the eBPF collector turns a quarter of the root requests into
//     spans (spans.sample_ratio and spans.max_per_second divided by 4).
//  2. http_sample: the kernel follows HTTP on one connection in 4 (by a
//     hash of the socket); requests on the others are neither counted nor
//     traced. The TCP and process programs are untouched.
//  3. intervals: the eBPF event readers wake 4 times less often
//     (poll_interval × 4).
//  4. http_minimal: the kernel follows HTTP on one connection in 16 and
//     sends only the first window of a request head.
package overhead

import "fmt"

// Level is how much load the agent sheds; LevelNone sheds nothing.
type Level int

// The shed levels, in the order they are taken.
const (
	LevelNone Level = iota
	LevelSpans
	LevelHTTPSample
	LevelIntervals
	LevelHTTPMinimal
	// MaxLevel is the deepest level.
	MaxLevel = LevelHTTPMinimal
)

var levelNames = [...]string{"none", "spans", "http_sample", "intervals", "http_minimal"}

func (l Level) String() string {
	if l >= 0 && int(l) < len(levelNames) {
		return levelNames[l]
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// SpanDivisor is what the span sampling ratio and rate cap are divided by.
func (l Level) SpanDivisor() int {
	if l >= LevelSpans {
		return 4
	}
	return 1
}

// HTTPSampleShift is the kernel's HTTP sampling: one connection in
// 1<<HTTPSampleShift is followed (0: all).
func (l Level) HTTPSampleShift() uint32 {
	switch {
	case l >= LevelHTTPMinimal:
		return 4
	case l >= LevelHTTPSample:
		return 2
	}
	return 0
}

// HTTPHeadWindows caps the windows of a request head the kernel sends (0:
// as configured).
func (l Level) HTTPHeadWindows() uint32 {
	if l >= LevelHTTPMinimal {
		return 1
	}
	return 0
}

// IntervalFactor multiplies the event readers' poll interval.
func (l Level) IntervalFactor() int {
	if l >= LevelIntervals {
		return 4
	}
	return 1
}

// Shedder is a part of the agent that sheds load by level; the eBPF
// collector is one. SetShedLevel must be cheap and safe to call from any
// goroutine; it is called after every decision.
type Shedder interface {
	SetShedLevel(Level)
}

// Policy is the decision's configuration.
type Policy struct {
	// AgentCPU and KernelCPU are the budgets in CPU seconds per second (1
	// is one core); 0 means no budget.
	AgentCPU, KernelCPU float64
	// RecoverBelow is the share of a budget usage must stay under to
	// recover (0 to 1): between it and the budget the level holds.
	RecoverBelow float64
	// ShedAfter is how many decisions in a row must be over budget before
	// a level is shed; RecoverAfter how many in a row under RecoverBelow
	// before one is recovered.
	ShedAfter, RecoverAfter int
	// MaxLevel is the deepest level taken.
	MaxLevel Level
}

// Usage is one measurement: CPU seconds per second.
type Usage struct {
	AgentCPU float64
	// KernelCPU is the eBPF programs' run time; KernelKnown is false when
	// it could not be measured (no programs, no privilege for BPF
	// statistics), and the kernel budget is then not applied.
	KernelCPU   float64
	KernelKnown bool
}

// maxWait caps the recovery back-off multiplier.
const maxWait = 8

// State is what the decision remembers between measurements.
type State struct {
	Level Level
	// Over and Under count the decisions in a row over budget and under
	// the recovery mark.
	Over, Under int
	// Wait multiplies RecoverAfter: a level shed again soon after it was
	// recovered doubles it (up to 8), so that a load that only fits at a
	// level does not make the agent flap; it is back at 1 once a recovered
	// level has held for 4 × RecoverAfter decisions.
	Wait int
	// SinceRecover counts decisions since the last recovery, while the
	// level it recovered to holds (-1: none).
	SinceRecover int
}

// InitialState is the state before the first decision.
func InitialState() State { return State{Wait: 1, SinceRecover: -1} }

// Change says what a decision did.
type Change int

// The possible changes.
const (
	Hold Change = iota
	Shed
	Recover
)

func (c Change) String() string {
	switch c {
	case Shed:
		return "shed"
	case Recover:
		return "recover"
	}
	return "hold"
}

// Over reports whether u is over p's budgets.
func (p Policy) Over(u Usage) bool {
	return (p.AgentCPU > 0 && u.AgentCPU > p.AgentCPU) ||
		(p.KernelCPU > 0 && u.KernelKnown && u.KernelCPU > p.KernelCPU)
}

// under reports whether u is under the recovery mark of every budget.
func (p Policy) under(u Usage) bool {
	if p.AgentCPU > 0 && u.AgentCPU > p.AgentCPU*p.RecoverBelow {
		return false
	}
	if p.KernelCPU > 0 && u.KernelKnown && u.KernelCPU > p.KernelCPU*p.RecoverBelow {
		return false
	}
	return true
}

// Decide is the governor's decision for one measurement: a pure function
// of the policy, the previous state and the usage. Over budget for
// ShedAfter decisions in a row sheds one level; under RecoverBelow of
// every budget for RecoverAfter × Wait decisions in a row recovers one;
// anything between holds the level and restarts both counts.
func Decide(p Policy, s State, u Usage) (State, Change) {
	if s.Wait < 1 {
		s.Wait = 1
	}
	if s.SinceRecover >= 0 {
		s.SinceRecover++
		if s.SinceRecover >= 4*max(p.RecoverAfter, 1) && s.Wait > 1 {
			s.Wait = 1
			s.SinceRecover = -1
		}
	}
	switch {
	case p.Over(u):
		s.Under = 0
		s.Over++
		if s.Over < max(p.ShedAfter, 1) || s.Level >= p.MaxLevel {
			return s, Hold
		}
		s.Over = 0
		s.Level++
		if s.SinceRecover >= 0 && s.SinceRecover <= max(p.RecoverAfter, 1) {
			s.Wait = min(s.Wait*2, maxWait)
		}
		s.SinceRecover = -1
		return s, Shed
	case p.under(u):
		s.Over = 0
		if s.Level == LevelNone {
			s.Under = 0
			return s, Hold
		}
		s.Under++
		if s.Under < max(p.RecoverAfter, 1)*s.Wait {
			return s, Hold
		}
		s.Under = 0
		s.Level--
		s.SinceRecover = 0
		return s, Recover
	default:
		s.Over, s.Under = 0, 0
		return s, Hold
	}
}
