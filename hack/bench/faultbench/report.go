package main

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// summary is the distribution of one path's times in one scenario.
type summary struct {
	faults, acted int
	median, p99   time.Duration
}

// summarize computes the median and the 99th percentile of the times that
// are not missed. Percentiles are by nearest rank (the smallest value with
// at least p of the values at or below it), so with fewer than 100 values
// the p99 is the maximum; the median of an even count is the lower middle
// value. Every value is a real measurement, never an interpolation.
func summarize(ds []time.Duration) summary {
	s := summary{faults: len(ds)}
	var got []time.Duration
	for _, d := range ds {
		if d != missed {
			got = append(got, d)
		}
	}
	s.acted = len(got)
	if len(got) == 0 {
		return s
	}
	slices.Sort(got)
	s.median = nearestRank(got, 0.5)
	s.p99 = nearestRank(got, 0.99)
	return s
}

// nearestRank returns the p-quantile of sorted by nearest rank.
func nearestRank(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p * float64(len(sorted))))
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// ratio is a/b as "N×", or "–" when either is missing.
func ratio(a, b time.Duration, ok bool) string {
	if !ok || a <= 0 || b <= 0 {
		return "–"
	}
	r := float64(a) / float64(b)
	if r >= 100 {
		return fmt.Sprintf("%.0f×", r)
	}
	return fmt.Sprintf("%.1f×", r)
}

// seconds formats d for the table: milliseconds below 1 s, else seconds;
// missed is "–".
func seconds(d time.Duration) string {
	switch {
	case d == missed:
		return "–"
	case d > -time.Second && d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
}

// report is the benchmark's Markdown output.
type report struct {
	settings  settings
	scenarios []*scenario
	elapsed   time.Duration
	host      string
}

func (r report) markdown() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("| scenario | path | acted / faults | median | p99 |\n|---|---|---|---|---|\n")
	var verdicts []string
	for _, sc := range r.scenarios {
		var local, conv []time.Duration
		for _, res := range sc.results {
			local = append(local, res.local)
			conv = append(conv, res.conv)
		}
		l, c := summarize(local), summarize(conv)
		localName := "local (Vigil rule, " + s.localInterval.String() + ")"
		if sc.name == "crash" {
			localName = "local (Vigil event alert)"
		}
		fmt.Fprintf(&b, "| %s | %s | %d / %d | %s | %s |\n", sc.name, localName, l.acted, l.faults, seconds(orMissing(l)), seconds(p99OrMissing(l)))
		fmt.Fprintf(&b, "| %s | conventional (Prometheus %s, Alertmanager) | %d / %d | %s | %s |\n", sc.name, s.promInterval, c.acted, c.faults, seconds(orMissing(c)), seconds(p99OrMissing(c)))
		both := l.acted > 0 && c.acted > 0
		fmt.Fprintf(&b, "| %s | **ratio conventional / local** | | **%s** | **%s** |\n", sc.name, ratio(c.median, l.median, both), ratio(c.p99, l.p99, both))
		p99ok := l.acted == l.faults && l.acted > 0 && l.p99 < 2*time.Second
		fast := both && float64(c.median) >= 10*float64(l.median) && float64(c.p99) >= 10*float64(l.p99)
		verdicts = append(verdicts, fmt.Sprintf("%s: local p99 < 2 s %s, ≥ 10× faster (median and p99) %s", sc.name, yes(p99ok), yes(fast)))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Goals — %s.\n\n", strings.Join(verdicts, "; "))
	b.WriteString("Where the time goes (median / slowest): detection is fault → the alert's start (the exit's kernel time for the event alert, the first firing evaluation for a rule), delivery is the alert's start → the action's call (for the conventional path: Prometheus → Alertmanager → Vigil's webhook → healing).\n\n")
	b.WriteString("| scenario | path | detection | delivery |\n|---|---|---|---|\n")
	for _, sc := range r.scenarios {
		var ld, ldl, cd, cdl []time.Duration
		for _, res := range sc.results {
			if res.local != missed {
				ld, ldl = append(ld, res.localDetect), append(ldl, res.local-res.localDetect)
			}
			if res.conv != missed {
				cd, cdl = append(cd, res.convDetect), append(cdl, res.conv-res.convDetect)
			}
		}
		fmt.Fprintf(&b, "| %s | local | %s | %s |\n", sc.name, spread(ld), spread(ldl))
		fmt.Fprintf(&b, "| %s | conventional | %s | %s |\n", sc.name, spread(cd), spread(cdl))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Time from the fault's injection (the driver's clock) to the remediation webhook's arrival at the driver's receiver (same clock), %d faults per scenario, each measured on both paths at once. Percentiles by nearest rank (with fewer than 100 faults the p99 is the slowest fault). Missed: no action within %s.\n\n", s.runs, s.timeout)
	b.WriteString("Settings:\n\n")
	fmt.Fprintf(&b, "- local: Vigil with the eBPF and cgroup collectors; `rules.evaluation_interval: %s` (ingest and every group, the default rule set included); crash = fast-path event alert `VigilProcessExitedNonZero` (`event_alerts.resolve_after: 5s`); 5xx = local rule `%s`, `for: 0s`; healing `dry_run: false`, action `webhook`.\n", s.localInterval, httpExpr(s.window))
	fmt.Fprintf(&b, "- conventional: Prometheus (Debian 2.42) scraping Vigil's /metrics every %s and evaluating every %s (`--rules.alert.resend-delay=1s`): crash = `%s`, 5xx = the same 5xx rule, both `for: 0s`; Alertmanager (Debian 0.25) `group_wait: 1s`, `group_interval: 1s`, `repeat_interval: 4h`, `group_by: ['...']`, posting to Vigil's `rules.alertmanager_webhook` with a bearer token; the same healing engine, a policy that matches only those alerts (the receiver checks each call's alert source).\n", s.promInterval, s.promInterval, crashExpr(s.window))
	fmt.Fprintf(&b, "- faults: crash = %s; 5xx = %s (the load generator sends GET / on a keep-alive connection). %d workloads per scenario used in turn; before each fault none of the alerts the measured policies act on is active for its workload, in Vigil or in Prometheus, and Prometheus holds the workload's error counter (each workload is primed once with an unmeasured fault; the default rule set's `VigilWorkloadCrashLooping` and `VigilWorkloadHigh5xxRatio` may fire about these workloads, and no policy acts on them). Each fault waits a random 0–%s first, so faults fall at every phase of the scrape and evaluation cycle. The scenarios run concurrently.\n", scenarioWhat(r.scenarios, "crash"), scenarioWhat(r.scenarios, "5xx"), s.pool, s.promInterval)
	for _, sc := range r.scenarios {
		if sc.load != nil {
			fmt.Fprintf(&b, "- %s: %s.\n", sc.name, sc.load())
		}
	}
	fmt.Fprintf(&b, "- machine: %s; run took %s.\n", r.host, r.elapsed.Round(time.Second))
	return b.String()
}

func orMissing(s summary) time.Duration {
	if s.acted == 0 {
		return -1
	}
	return s.median
}

func p99OrMissing(s summary) time.Duration {
	if s.acted == 0 {
		return -1
	}
	return s.p99
}

func scenarioWhat(scs []*scenario, name string) string {
	for _, sc := range scs {
		if sc.name == name {
			return sc.what
		}
	}
	return "-"
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// spread is "median / slowest" of ds, or "–" when empty.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "–"
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return seconds(nearestRank(sorted, 0.5)) + " / " + seconds(sorted[len(sorted)-1])
}
