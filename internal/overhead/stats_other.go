//go:build !linux

package overhead

import (
	"errors"
	"io"
	"time"
)

var errNoStats = errors.New("BPF run-time statistics are only available on Linux")

func enableStats() (io.Closer, error) { return nil, errNoStats }

// processCPUTime is not measured off Linux: the agent budget sees 0.
func processCPUTime() time.Duration { return 0 }
