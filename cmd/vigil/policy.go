package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/vigil-agent/vigil/agent"
	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/rules"
)

// `vigil policy backtest`: what the configuration's rules and policies
// would have done over a past time range (docs/healing.md, "Backtest").
func init() {
	subcommands = append(subcommands, func(app *kingpin.Application) (string, func(stdout, stderr io.Writer) int) {
		cmd := app.Command("policy", "Remediation policy tools.")
		bt := cmd.Command("backtest", "Replay stored telemetry through the configuration's rules and policies and report each alert, each would-be action and its target, and each guard's veto.")
		config := bt.Flag("config", "Agent configuration file (its rules and healing sections); without it, the embedded default.").PlaceHolder("FILE").String()
		prom := bt.Flag("prometheus", "Base URL of a Prometheus (or its HTTP API) holding Vigil's metrics.").PlaceHolder("URL").String()
		tsdbDir := bt.Flag("tsdb", "A TSDB directory to read instead (Vigil's rules.storage_dir, or a Prometheus data directory), opened read-only.").PlaceHolder("DIR").String()
		from := bt.Flag("from", "Start of the range: RFC 3339 time, or a duration before --to (e.g. 6h).").Default("1h").String()
		to := bt.Flag("to", "End of the range: RFC 3339 time, or \"now\".").Default("now").String()
		step := bt.Flag("step", "Evaluation step; default each group's interval (rules.evaluation_interval).").Duration()
		output := bt.Flag("output", "table or json.").Short('o').Default("table").Enum("table", "json")
		return bt.FullCommand(), func(stdout, stderr io.Writer) int {
			return backtest(backtestArgs{config: *config, prom: *prom, tsdb: *tsdbDir, from: *from, to: *to, step: *step, output: *output}, stdout, stderr)
		}
	})
}

type backtestArgs struct {
	config, prom, tsdb, from, to, output string
	step                                 time.Duration
}

// backtestReport is the JSON output.
type backtestReport struct {
	From      time.Time          `json:"from"`
	To        time.Time          `json:"to"`
	Source    string             `json:"source"`
	Alerts    []rules.Alert      `json:"alerts"`
	Decisions []healing.Decision `json:"decisions"`
	Skipped   []string           `json:"guards_not_evaluated"`
	Summary   map[string]int     `json:"summary"`
	Errors    []string           `json:"errors,omitempty"`
}

func backtest(a backtestArgs, stdout, stderr io.Writer) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "vigil policy backtest: "+format+"\n", args...)
		return 1
	}
	if (a.prom == "") == (a.tsdb == "") {
		fmt.Fprintln(stderr, "vigil policy backtest: give exactly one of --prometheus URL and --tsdb DIR")
		return 2
	}
	end, err := parseWhen(a.to, time.Now(), time.Now())
	if err != nil {
		return fail("--to: %v", err)
	}
	start, err := parseWhen(a.from, end, end)
	if err != nil {
		return fail("--from: %v", err)
	}
	if !start.Before(end) {
		return fail("--from (%s) is not before --to (%s)", start.Format(time.RFC3339), end.Format(time.RFC3339))
	}
	var cfg *agent.Config
	if a.config == "" {
		cfg, err = agent.LoadDefault()
	} else {
		cfg, err = agent.LoadFile(a.config)
	}
	if err != nil {
		return fail("%v", err)
	}
	rc, ok := cfg.Sections["rules"].(*rules.Config)
	if !ok {
		return fail("the configuration has no rules section")
	}
	hc, ok := cfg.Sections["healing"].(*healing.Config)
	if !ok {
		return fail("the configuration has no healing section")
	}
	files, err := rules.ExpandRuleFiles(rc.RuleFiles)
	if err != nil {
		return fail("rules.rule_files: %v", err)
	}
	rs, err := rules.LoadRuleFiles(files...)
	if err != nil {
		return fail("%v", err)
	}
	tree, err := hc.LoadPolicies()
	if err != nil {
		return fail("%v", err)
	}
	var q rules.RangeQuerier
	source := a.prom
	if a.prom != "" {
		if q, err = rules.PrometheusRange(a.prom); err != nil {
			return fail("--prometheus: %v", err)
		}
	} else {
		lr, err := rules.TSDBRange(a.tsdb, nil)
		if err != nil {
			return fail("--tsdb: %v", err)
		}
		defer lr.Close()
		q, source = lr, a.tsdb
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	alerts, rerr := rules.BacktestRules(ctx, rs, q, start, end, a.step, rc.EvaluationInterval)
	decisions := healing.Backtest(tree, alerts, hc.NodeRateLimit)

	rep := backtestReport{From: start, To: end, Source: source, Alerts: alerts, Decisions: decisions,
		Skipped: healing.NotBacktested, Summary: map[string]int{"alerts": len(alerts)}}
	if rep.Alerts == nil {
		rep.Alerts = []rules.Alert{}
	}
	if rep.Decisions == nil {
		rep.Decisions = []healing.Decision{}
	}
	for _, d := range decisions {
		rep.Summary[d.Result]++
	}
	if rerr != nil {
		rep.Errors = append(rep.Errors, strings.Split(rerr.Error(), "\n")...)
	}
	if a.output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail("%v", err)
		}
	} else {
		writeBacktestTable(stdout, rep)
	}
	if rerr != nil {
		fmt.Fprintf(stderr, "vigil policy backtest: some rules could not be replayed:\n%v\n", rerr)
		return 1
	}
	return 0
}

// parseWhen reads an RFC 3339 time, "now", or a duration before ref.
func parseWhen(s string, ref, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return ref.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time, \"now\" nor a positive duration", s)
}

func writeBacktestTable(w io.Writer, rep backtestReport) {
	fmt.Fprintf(w, "Backtest of %s – %s on %s\n\n", rep.From.UTC().Format(time.RFC3339), rep.To.UTC().Format(time.RFC3339), rep.Source)
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "ALERT FIRED\tALERT\tLABELS\tRESOLVED")
	for _, a := range rep.Alerts {
		res := "still firing"
		if !a.EndsAt.IsZero() {
			res = a.EndsAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", a.StartsAt.UTC().Format(time.RFC3339), a.Name(), shortLabels(a.Labels), res)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tALERT\tPOLICY\tACTION\tTARGET\tDECISION")
	for _, d := range rep.Decisions {
		dec := d.Result
		switch {
		case d.Guard != "" && d.Result == "vetoed":
			dec = "vetoed by " + d.Guard + ": " + d.Reason
		case d.Result == healing.BacktestFailed:
			dec = "failed: " + d.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.At.UTC().Format(time.RFC3339), d.Alert, d.Policy, d.Action, d.Target, dec)
	}
	tw.Flush()
	keys := make([]string, 0, len(rep.Summary))
	for k := range rep.Summary {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, rep.Summary[k]))
	}
	fmt.Fprintf(w, "\n%s. Not evaluated (they read the cluster at the moment of acting): %s.\n", strings.Join(parts, ", "), strings.Join(rep.Skipped, ", "))
}

func shortLabels(l map[string]string) string {
	var parts []string
	for _, k := range []string{"namespace", "pod", "container", "unit", "destination"} {
		if v := l[k]; v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	return strings.Join(parts, ",")
}
