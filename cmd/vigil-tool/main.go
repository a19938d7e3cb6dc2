// Command vigil-tool holds the Vigil tools that never run on a node: rule
// unit tests (`vigil-tool rules test`, which links PromQL's test
// framework) today. Keeping them out of the agent keeps the node binary
// small (docs/cost.md); `vigil rules check` and `vigil config check` stay
// in the agent.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/vigil-agent/vigil/rules/ruletest"
)

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line and returns the exit code: 0 on success, 1
// when the work failed (a failing test, a bad file), 2 on a usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("vigil-tool", "Vigil tools that do not run on nodes (the agent is `vigil`).")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	terminated := -1
	app.Terminate(func(code int) {
		if terminated < 0 {
			terminated = code
		}
	})
	app.HelpFlag.Short('h')

	rulesCmd := app.Command("rules", "Rule file tools.")
	test := rulesCmd.Command("test", "Run rule unit test files with the semantics of `promtool test rules`. FILE may be embedded:GLOB (e.g. embedded:tests/*.test.yml for the built-in tests).")
	testRun := test.Flag("run", "Only run test groups whose name matches this regular expression; may be repeated.").Strings()
	testFiles := test.Arg("test-file", "Unit test files.").Required().Strings()
	versionCmd := app.Command("version", "Print version information.")

	cmd, err := app.Parse(args)
	if terminated >= 0 {
		return terminated
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil-tool: %v (see vigil-tool --help)\n", err)
		return 2
	}
	switch cmd {
	case test.FullCommand():
		if !ruletest.Run(stdout, stderr, ruletest.Options{Run: *testRun}, *testFiles...) {
			return 1
		}
		return 0
	case versionCmd.FullCommand():
		fmt.Fprintln(stdout, version.Print("vigil-tool"))
		return 0
	}
	app.Usage(nil)
	return 2
}
