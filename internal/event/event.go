// Package event is the agent's in-process fast path: collectors publish
// events the moment the kernel reports them (a process exiting with a
// non-zero code, an OOM kill), and the rules engine turns them into alerts
// without waiting for a scrape or an evaluation cycle.
package event

import (
	"sync"
	"time"

	"github.com/vigil-agent/vigil/collectors/workload"
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

// Bus fans events out to subscribers. Publish never blocks: a subscriber
// whose buffer is full misses the event and its drop counter grows, so a
// slow consumer can never stall a kernel reader.
type Bus struct {
	mu   sync.RWMutex
	subs map[*Subscription]struct{}
}

// NewBus returns an empty bus.
func NewBus() *Bus { return &Bus{subs: make(map[*Subscription]struct{})} }

// Subscription is one consumer's view of the bus.
type Subscription struct {
	bus     *Bus
	c       chan Event
	mu      sync.Mutex
	dropped uint64
	closed  bool
}

// C returns the channel events arrive on. It is closed by Close.
func (s *Subscription) C() <-chan Event { return s.c }

// Dropped returns how many events this subscriber missed because its buffer
// was full.
func (s *Subscription) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close removes the subscription and closes its channel. It is safe to call
// more than once.
func (s *Subscription) Close() {
	s.bus.mu.Lock()
	delete(s.bus.subs, s)
	s.bus.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.c)
	}
}

// Subscribe returns a subscription with a buffer of size buf (at least 1).
func (b *Bus) Subscribe(buf int) *Subscription {
	if buf < 1 {
		buf = 1
	}
	s := &Subscription{bus: b, c: make(chan Event, buf)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish delivers e to every subscriber that has room for it.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	for s := range b.subs {
		s.mu.Lock()
		if !s.closed {
			select {
			case s.c <- e:
			default:
				s.dropped++
			}
		}
		s.mu.Unlock()
	}
}
