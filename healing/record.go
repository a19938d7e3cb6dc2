package healing

import (
	"sync"
	"time"

	"github.com/vigil-agent/vigil/internal/fanout"
)

// Result is the outcome of one decision.
type Result string

// The results a record can carry; they are the values of the result label
// of vigil_remediations_total.
const (
	// ResultSuccess: the actuator's API call succeeded; verification, if
	// any, follows as its own record.
	ResultSuccess Result = "success"
	// ResultFailed: the action could not be taken (API error, render
	// error, Kubernetes unreachable after bounded retries).
	ResultFailed Result = "failed"
	// ResultVetoed: a guard stopped the action; Guard and Reason say which
	// and why.
	ResultVetoed Result = "vetoed"
	// ResultDryRun: every guard passed, and the action was only recorded.
	ResultDryRun Result = "dry_run"
	// ResultShadow: a shadow policy's decision: every guard passed, and
	// the action was only recorded. The policy's own guards (cooldown,
	// rate limits) count its shadow records as if they were actions;
	// live policies' guards do not.
	ResultShadow Result = "shadow"
	// ResultPending: the action waits for approval through the API.
	ResultPending Result = "pending_approval"
	// ResultResolved: the alert resolved within the verify window.
	ResultResolved Result = "resolved"
	// ResultUnresolved: the verify window passed with the alert still
	// firing; the next step runs.
	ResultUnresolved Result = "unresolved"
	// ResultSkipped: the action is not this agent's to take (the pod is
	// on another node, or another agent holds the target's lease).
	ResultSkipped Result = "skipped"
)

// Record is one audited decision.
type Record struct {
	ID uint64    `json:"id"`
	At time.Time `json:"time"`
	// Incident groups the records of one alert's runbook run; it is also
	// the OpenTelemetry trace ID of their spans.
	Incident    string            `json:"incident"`
	Policy      string            `json:"policy"`
	Step        int               `json:"step"`
	Action      string            `json:"action"`
	Target      Target            `json:"target"`
	Args        Args              `json:"args,omitempty"`
	Alert       string            `json:"alert"`
	AlertLabels map[string]string `json:"alert_labels,omitempty"`
	// AlertStartsAt is when the alert started firing.
	AlertStartsAt time.Time `json:"alert_starts_at,omitzero"`
	Fingerprint   string    `json:"fingerprint,omitempty"`
	Result        Result    `json:"result"`
	Guard         string    `json:"guard,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	RunbookURL    string    `json:"runbook_url,omitempty"`
	DryRun        bool      `json:"dry_run"`
	// Shadow marks every record of a shadow policy (shadow, vetoed,
	// skipped, failed): it never acted.
	Shadow   bool    `json:"shadow,omitempty"`
	Duration float64 `json:"duration_seconds"`
	Node     string  `json:"node"`
	Agent    string  `json:"agent"`
}

// taken reports whether the record is an action that reached an actuator.
func (r *Record) taken() bool { return r.Result == ResultSuccess || r.Result == ResultFailed }

// takenFor is taken as the guards of policy p see it: a shadow policy
// counts its own shadow records as the actions it would have taken, so
// its decisions are those a live policy would make; nothing else counts
// them.
func (r *Record) takenFor(p *Policy) bool {
	return r.taken() || p != nil && p.Shadow && r.Result == ResultShadow && r.Policy == p.Name
}

// History keeps the most recent records: the guards read it and
// /api/v1/actions serves it. It is bounded; the oldest records go first.
type History struct {
	mu     sync.RWMutex
	buf    []Record
	next   int
	full   bool
	lastID uint64
	bus    *fanout.Bus[Record]
}

// NewHistory returns a history that keeps size records.
func NewHistory(size int) *History {
	if size < 1 {
		size = 1
	}
	return &History{buf: make([]Record, size), bus: fanout.New[Record]()}
}

// Add stores r, assigning its ID, and hands it to subscribers.
func (h *History) Add(r Record) Record { return h.AddWith(r, nil) }

// AddWith is Add, calling hook with the stored record before any reader
// can see it (the engine registers a pending approval there, so an
// approval that follows the record at once finds its waiter).
func (h *History) AddWith(r Record, hook func(Record)) Record {
	h.mu.Lock()
	h.lastID++
	r.ID = h.lastID
	if hook != nil {
		hook(r)
	}
	h.buf[h.next] = r
	h.next = (h.next + 1) % len(h.buf)
	if h.next == 0 {
		h.full = true
	}
	h.mu.Unlock()
	h.bus.Publish(r)
	return r
}

// Recent returns up to limit records, oldest first (all when limit ≤ 0).
func (h *History) Recent(limit int) []Record {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []Record
	if h.full {
		out = append(out, h.buf[h.next:]...)
	}
	out = append(out, h.buf[:h.next]...)
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out
}

// Subscribe streams records as they are added.
func (h *History) Subscribe(buf int) *fanout.Subscription[Record] { return h.bus.Subscribe(buf) }

// Each calls f on records newest first until it returns false.
func (h *History) Each(f func(r *Record) bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	n := len(h.buf)
	count := h.next
	if h.full {
		count = n
	}
	for i := 1; i <= count; i++ {
		if !f(&h.buf[(h.next-i+n)%n]) {
			return
		}
	}
}
