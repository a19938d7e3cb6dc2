package fanout

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublishReachesEverySubscriber(t *testing.T) {
	b := New[Event]()
	s1, s2 := b.Subscribe(4), b.Subscribe(4)
	defer s1.Close()
	defer s2.Close()
	b.Publish(Event{Kind: OOMKill, PID: 42})
	for _, s := range []*Subscription[Event]{s1, s2} {
		e := <-s.C()
		if e.Kind != OOMKill || e.PID != 42 {
			t.Fatalf("got %+v", e)
		}
	}
}

func TestFullSubscriberDropsInsteadOfBlocking(t *testing.T) {
	b := New[Event]()
	s := b.Subscribe(1)
	defer s.Close()
	b.Publish(Event{PID: 1})
	b.Publish(Event{PID: 2}) // must not block
	if got := s.Dropped(); got != 1 {
		t.Fatalf("Dropped() = %d, want 1", got)
	}
	if e := <-s.C(); e.PID != 1 {
		t.Fatalf("first event PID = %d, want 1", e.PID)
	}
}

func TestCloseStopsDelivery(t *testing.T) {
	b := New[Event]()
	s := b.Subscribe(1)
	s.Close()
	s.Close()
	b.Publish(Event{PID: 1})
	if _, ok := <-s.C(); ok {
		t.Fatal("channel still open after Close")
	}
	var nilBus *Bus[Event]
	nilBus.Publish(Event{}) // a nil bus is a no-op
}

// Event is a stand-in payload for these tests.
type Event struct {
	Kind string
	PID  int
}

const OOMKill = "oom_kill"
