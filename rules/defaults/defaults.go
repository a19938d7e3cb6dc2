// Package defaults holds Vigil's default rule set: Prometheus rule files
// for node health and workload health, and their promtool-style unit tests.
// The files are embedded in the binary; the default configuration loads
// them as "embedded:*.rules.yml" and `vigil rules test` runs the tests.
//
// Metric names that come from collectors whose names are not final (eBPF
// HTTP and TCP metrics, process exits, log matches) appear only in
// sources.rules.yml, as recording rules producing stable vigil:* series
// that the alerting rules use; fixing a name is a one-line change there.
package defaults

import "embed"

// FS holds the default rule files (*.rules.yml) and their unit tests
// (tests/*.test.yml).
//
//go:embed *.rules.yml tests/*.test.yml
var FS embed.FS
