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
	// Outcomes is a batch of request and connection outcomes per
	// workload (Event.Outcomes), published a few times a second: the
	// evidence that workload health alerts are decided on.
	Outcomes Kind = "outcomes"
)

// Signal names what an Outcome tallies.
type Signal uint8

// The signals.
const (
	// ServerHTTP is HTTP requests a workload answered: Errors are 5xx,
	// Slow took longer than SlowAfter, Unanswered were still unanswered
	// HangAfter after they were read (counted once each, answered later
	// or not).
	ServerHTTP Signal = iota + 1
	// ClientHTTP is HTTP requests a workload sent to Destination and got
	// an answer to: Errors are 5xx, Slow took longer than SlowAfter.
	ClientHTTP
	// Connect is TCP connection attempts a workload made to Destination:
	// Errors failed (refused, timed out, unreachable).
	Connect
)

func (s Signal) String() string {
	switch s {
	case ServerHTTP:
		return "server_http"
	case ClientHTTP:
		return "client_http"
	case Connect:
		return "connect"
	}
	return "unknown"
}

// Outcome is one workload's tally of one signal (and destination) over
// the batch's interval.
type Outcome struct {
	Workload workload.Identity
	Signal   Signal
	// Destination is "ip:port" for ClientHTTP and Connect.
	Destination string
	// Total counts requests answered (connection attempts for Connect).
	Total uint32
	// Errors, Slow and Unanswered count the bad ones among them (see the
	// signals).
	Errors, Slow, Unanswered uint32
}

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
	// Outcomes is the batch of an Outcomes event; SlowAfter and HangAfter
	// are the durations its Slow and Unanswered counts were measured
	// against.
	Outcomes             []Outcome
	SlowAfter, HangAfter time.Duration
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
