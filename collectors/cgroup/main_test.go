package cgroup

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if id := os.Getenv(handleHelperEnv); id != "" {
		os.Exit(handleHelper(id))
	}
	goleak.VerifyTestMain(m)
}
