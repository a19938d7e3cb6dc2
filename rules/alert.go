// Package rules decides when something is wrong: it evaluates Prometheus
// rule files on the node, receives alerts from Alertmanager and turns
// fast-path events into alerts, and publishes all of them on one stream.
package rules

import "github.com/vigil-agent/vigil/internal/alert"

// The alert type and stream live in internal/alert (shared through the
// component registry's Host); these names keep rules.Alert and friends.
type (
	// Source says where an alert came from.
	Source = alert.Source
	// State is an alert's state on the stream.
	State = alert.State
	// Alert is the one alert type every source produces.
	Alert = alert.Alert
	// Stream is the agent's alert stream.
	Stream = alert.Stream
	// Subscription is one consumer of the alert stream.
	Subscription = alert.Subscription
)

// The sources and states, as in internal/alert.
const (
	SourceRule         = alert.SourceRule
	SourceAlertmanager = alert.SourceAlertmanager
	SourceEvent        = alert.SourceEvent
	SourceEvidence     = alert.SourceEvidence
	StateFiring        = alert.StateFiring
	StateResolved      = alert.StateResolved
)

// NewStream returns an empty alert stream.
func NewStream() *Stream { return alert.NewStream() }
