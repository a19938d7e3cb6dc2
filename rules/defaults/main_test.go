package defaults_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(faultHelper(spec))
	}
	goleak.VerifyTestMain(m)
}
