package faults

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

// appPort is the port the fault app serves on in its pod.
const appPort = 8080
