package main

import (
	"fmt"
	"io"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigil-agent/vigil/rules"
)

// `vigil rules check FILE...`. Rule unit tests (`rules test`) link PromQL's
// test framework and never run on a node: they are in cmd/vigil-tool.
func init() {
	subcommands = append(subcommands, func(app *kingpin.Application) (string, func(stdout, stderr io.Writer) int) {
		cmd := app.GetCommand("rules")
		if cmd == nil {
			cmd = app.Command("rules", "Rule file tools (Prometheus rule files and PrometheusRule objects).")
		}
		check := cmd.Command("check", "Check rule files like `promtool check rules`; print each problem with file, line, group and rule. FILE may be embedded:GLOB for the built-in rules.")
		checkFiles := check.Arg("file", "Rule files to check.").Required().Strings()
		return check.FullCommand(), func(stdout, stderr io.Writer) int {
			return checkRules(*checkFiles, stdout, stderr)
		}
	})
	subcommands = append(subcommands, func(app *kingpin.Application) (string, func(stdout, stderr io.Writer) int) {
		test := app.GetCommand("rules").Command("test", "Moved to vigil-tool.").Hidden()
		test.Arg("args", "").Strings()
		test.Flag("run", "").Strings()
		return test.FullCommand(), func(stdout, stderr io.Writer) int {
			fmt.Fprintln(stderr, "vigil: rule unit tests moved out of the node agent: run `vigil-tool rules test FILE...` (make build builds bin/vigil-tool)")
			return 2
		}
	})
}

func checkRules(patterns []string, stdout, stderr io.Writer) int {
	code := 0
	for _, p := range patterns {
		files, err := rules.ExpandRuleFiles([]string{p})
		if err != nil {
			fmt.Fprintln(stderr, err)
			code = 1
			continue
		}
		if len(files) == 0 {
			fmt.Fprintf(stderr, "%s: no files match\n", p)
			code = 1
		}
		for _, f := range files {
			rs, err := rules.LoadRuleFiles(f)
			if err != nil {
				fmt.Fprintf(stderr, "%s: FAILED:\n%v\n", f, err)
				code = 1
				continue
			}
			n := 0
			for _, g := range rs.Groups[f].Groups {
				n += len(g.Rules)
			}
			fmt.Fprintf(stdout, "%s: SUCCESS: %d rules found\n", f, n)
		}
	}
	return code
}
