package cgroup

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(faultHelperEnv); spec != "" {
		os.Exit(faultHelper(spec))
	}
	if id := os.Getenv(handleHelperEnv); id != "" {
		os.Exit(handleHelper(id))
	}
	goleak.VerifyTestMain(m)
}
