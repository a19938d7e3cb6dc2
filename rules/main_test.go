package rules

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The TSDB head's chunk write queue and the promql engine's
		// package-level workers outlive a single test by design.
		goleak.IgnoreTopFunction("github.com/prometheus/prometheus/tsdb/chunks.(*chunkWriteQueue).start.func1"),
	)
}
