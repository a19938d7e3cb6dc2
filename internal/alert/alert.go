// Package alert is the one alert type every source produces (local rules,
// Alertmanager's webhook, fast-path events) and the healing engine
// consumes, and the stream that carries it. It lives apart from rules and
// healing so that the component registry can hand the stream to both;
// package rules re-exports it under its historical names.
package alert

import (
	"time"

	"github.com/vigil-agent/vigil/internal/fanout"
)

// Source says where an alert came from.
type Source string

// The sources of alerts.
const (
	// SourceRule is a local alerting rule evaluated by Vigil.
	SourceRule Source = "rule"
	// SourceAlertmanager is an alert delivered by Alertmanager's webhook.
	SourceAlertmanager Source = "alertmanager"
	// SourceEvent is a fast-path event (process exit, OOM kill) turned
	// into an alert without waiting for a scrape.
	SourceEvent Source = "event"
	// SourceEvidence is a workload health alert fired by evidence-based
	// detection as soon as the request or connect outcomes are strong
	// enough evidence (rules.evidence).
	SourceEvidence Source = "evidence"
)

// State is an alert's state on the stream.
type State string

// The states delivered on the stream. Pending alerts are not delivered.
const (
	StateFiring   State = "firing"
	StateResolved State = "resolved"
)

// Alert is the one alert type every source produces and the healing engine
// consumes.
type Alert struct {
	// Labels identify the alert; "alertname" is always set.
	Labels map[string]string `json:"labels"`
	// Annotations carry human-readable details (summary, description,
	// runbook_url).
	Annotations map[string]string `json:"annotations,omitempty"`
	State       State             `json:"state"`
	Source      Source            `json:"source"`
	// StartsAt is when the alert started firing; EndsAt is when it was
	// resolved (zero while firing).
	StartsAt time.Time `json:"starts_at"`
	EndsAt   time.Time `json:"ends_at,omitzero"`
	// GeneratorURL links back to the rule or event that produced it.
	GeneratorURL string `json:"generator_url,omitempty"`
	// Fingerprint identifies the alert by its labels (stable across
	// sources for equal label sets).
	Fingerprint string `json:"fingerprint,omitempty"`
}

// Name returns the alert's name.
func (a Alert) Name() string { return a.Labels["alertname"] }

// Stream is the agent's alert stream. Publish never blocks; a subscriber
// that falls behind misses alerts and Dropped says how many.
type Stream = fanout.Bus[Alert]

// Subscription is one consumer of the alert stream.
type Subscription = fanout.Subscription[Alert]

// NewStream returns an empty alert stream.
func NewStream() *Stream { return fanout.New[Alert]() }
