// Package event is the agent's in-process fast path: collectors publish
// events the moment the kernel reports them (a process exiting with a
// non-zero code, an OOM kill), and the rules engine turns them into alerts
// without waiting for a scrape or an evaluation cycle.
package event

import (
	"time"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/fanout"
)

// Kind names what happened.
type Kind string

// The kinds of fast-path events.
const (
	// ProcessExit is a process that exited with a non-zero code or was
	// killed by a signal.
	ProcessExit Kind = "process_exit"
	// OOMKill is a process chosen as the victim of the OOM killer.
	OOMKill Kind = "oom_kill"
)

// Event is one fast-path event.
type Event struct {
	Kind Kind
	// Time is when the kernel reported the event.
	Time time.Time
	// Workload is the identity of the process's cgroup.
	Workload workload.Identity
	// PID and Comm identify the process.
	PID  uint32
	Comm string
	// ExitCode is the exit status for a normal exit (0–255).
	ExitCode int
	// Signal is the signal that killed the process, or 0.
	Signal int
	// Attrs carries extra source-specific details (for example the OOM
	// victim's RSS); keep it small.
	Attrs map[string]string
}

// Bus carries fast-path events; see package fanout for its delivery
// guarantees.
type Bus = fanout.Bus[Event]

// Subscription is one consumer of a Bus.
type Subscription = fanout.Subscription[Event]

// NewBus returns an empty event bus.
func NewBus() *Bus { return fanout.New[Event]() }
