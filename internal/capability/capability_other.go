//go:build !linux

package capability

import "errors"

// ErrUnsupported is returned where Linux capabilities do not exist.
var ErrUnsupported = errors.New("capabilities exist on Linux only")

// Current returns ErrUnsupported off Linux.
func Current() (State, error) { return State{}, ErrUnsupported }

// Reduce returns ErrUnsupported off Linux.
func Reduce(keep Set) (State, error) { return State{}, ErrUnsupported }

// KernelKnows reports false off Linux.
func KernelKnows(c Cap) bool { return false }
