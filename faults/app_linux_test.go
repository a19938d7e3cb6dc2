package faults

import (
	"runtime"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/vigil-agent/vigil/internal/image"
)

// The fault app is the main package faults/faultapp: a small HTTP service
// whose behaviour the suite changes from outside by writing a mode into a
// control file (or over its control endpoint), the way a real fault appears
// in a real service without a restart. Its modes live in a registry there
// (faults/faultapp/mode_*.go); a new kind of failure adds a file
// mode_<name>.go with an init() that registers it, and a scenario (see
// extraScenarios) that writes <name> into the control file.
const faultAppPackage = "github.com/vigil-agent/vigil/faults/faultapp"

// Settings of the fault app, passed through the environment (see the
// package comment of faults/faultapp).
const (
	envAddr    = "FAULTS_ADDR"    // ip:port to listen on
	envControl = "FAULTS_CONTROL" // comma-separated control files; the first that exists wins
	envCall    = "FAULTS_CALL"    // URL of a dependency to call for every request
	envWorkers = "FAULTS_WORKERS" // requests served at once (0: no limit)
	envService = "FAULTS_SERVICE" // time each request takes to serve (a Go duration)
)

var (
	faultAppOnce sync.Once
	faultAppBin  string
	faultAppErr  error
	faultAppDir  string
)

// faultAppBinary builds faults/faultapp once per test binary (into a
// directory removed by TestMain) and returns its path.
func faultAppBinary(t *testing.T) string {
	t.Helper()
	faultAppOnce.Do(func() {
		faultAppBin, faultAppErr = image.GoBuild{
			Dir:      "..",
			Package:  faultAppPackage,
			Platform: v1.Platform{OS: "linux", Architecture: runtime.GOARCH},
		}.Build(t.Context(), faultAppDir)
	})
	if faultAppErr != nil {
		t.Fatalf("building the fault app: %v", faultAppErr)
	}
	return faultAppBin
}
