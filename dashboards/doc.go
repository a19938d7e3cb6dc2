// Package dashboards builds Vigil's Grafana dashboards as Go code with the
// Grafana Foundation SDK. The generated JSON lives in json/ and is
// committed; `make generate` (go generate ./...) rewrites it, and CI
// checks that it is unchanged.
//
// Every PromQL expression is built from the metric names in metrics.go and
// the selectors in build.go, so a renamed metric is changed in one place.
// The package's tests check the committed JSON with the SDK's strict
// unmarshal, parse every expression with Prometheus's parser, check every
// metric name against a running agent's /metrics, and query every panel in
// a real Prometheus that scrapes an agent doing real work.
package dashboards

//go:generate go run ./cmd/gen -out json
