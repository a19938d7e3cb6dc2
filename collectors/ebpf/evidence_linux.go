package ebpf

import (
	"net/netip"
	"time"

	"github.com/vigil-agent/vigil/collectors/workload"
	"github.com/vigil-agent/vigil/internal/event"
)

// maxOutcomeKeys bounds the distinct workload×signal×destination tallies
// of one batch; outcomes of further keys in the same interval are counted
// in vigil_ebpf_outcomes_dropped_total and lost.
const maxOutcomeKeys = 4096

// tallyKey names one tally: a workload's server requests, or its client
// requests or connects to one destination.
type tallyKey struct {
	cgroup uint64
	dest   netip.AddrPort
	signal event.Signal
}

// tallies are the outcomes a reader counted since its last batch. Each
// reader goroutine has its own, so the hot path takes no lock: one map
// lookup per request or connect.
type tallies struct {
	m    map[tallyKey]*event.Outcome
	last time.Time
}

func newTallies() *tallies { return &tallies{m: map[tallyKey]*event.Outcome{}, last: time.Now()} }

// get returns the tally for k, creating it for workload wl (nil when the
// batch is full, counted). Unnamed workloads (a pod not yet known) are not
// tallied: an alert without a workload could not be acted on.
func (h *handlers) tally(t *tallies, k tallyKey, wl workload.Identity) *event.Outcome {
	if o, ok := t.m[k]; ok {
		return o
	}
	if !named(wl) || wl == (workload.Identity{}) {
		return nil
	}
	if len(t.m) >= maxOutcomeKeys {
		h.m.outcomesDropped.Inc()
		return nil
	}
	o := &event.Outcome{Workload: wl, Signal: k.signal}
	if k.dest.IsValid() {
		o.Destination = k.dest.String()
	}
	t.m[k] = o
	return o
}

// flushTallies publishes t as one Outcomes event when the evidence
// interval has passed since the last one (and t is not empty), and starts
// a new interval.
func (h *handlers) flushTallies(t *tallies, now time.Time) {
	if now.Sub(t.last) < h.cfg.EvidenceInterval {
		return
	}
	t.last = now
	if len(t.m) == 0 {
		return
	}
	batch := make([]event.Outcome, 0, len(t.m))
	for _, o := range t.m {
		batch = append(batch, *o)
	}
	clear(t.m)
	h.publish(event.Event{Kind: event.Outcomes, Time: now, Outcomes: batch,
		SlowAfter: h.cfg.HTTPSlowAfter, HangAfter: h.cfg.HTTPHangAfter})
}
