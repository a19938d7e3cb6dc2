//go:build linux

package ebpf

import (
	"fmt"
	"os"
)

// runHelper runs the helper named by $VIGIL_EBPF_TEST_HELPER with arg.
func runHelper(name, arg string) int {
	switch name {
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		return 2
	}
}
