// Package fanout delivers values from publishers to any number of
// subscribers without ever blocking a publisher: a subscriber whose buffer
// is full misses the value and its drop counter grows. The fast-path event
// bus and the alert stream are both built on it.
package fanout

import "sync"

// Bus fans values out to subscribers. Publish never blocks: a subscriber
// whose buffer is full misses the value and its drop counter grows, so a
// slow consumer can never stall a producer such as a kernel reader.
type Bus[T any] struct {
	mu   sync.RWMutex
	subs map[*Subscription[T]]struct{}
}

// New returns an empty bus.
func New[T any]() *Bus[T] { return &Bus[T]{subs: make(map[*Subscription[T]]struct{})} }

// Subscription is one consumer's view of the bus.
type Subscription[T any] struct {
	bus     *Bus[T]
	c       chan T
	mu      sync.Mutex
	dropped uint64
	closed  bool
}

// C returns the channel values arrive on. It is closed by Close.
func (s *Subscription[T]) C() <-chan T { return s.c }

// Dropped returns how many values this subscriber missed because its buffer
// was full.
func (s *Subscription[T]) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// Close removes the subscription and closes its channel. It is safe to call
// more than once.
func (s *Subscription[T]) Close() {
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
func (b *Bus[T]) Subscribe(buf int) *Subscription[T] {
	if buf < 1 {
		buf = 1
	}
	s := &Subscription[T]{bus: b, c: make(chan T, buf)}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

// Publish delivers e to every subscriber that has room for it.
func (b *Bus[T]) Publish(e T) {
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
