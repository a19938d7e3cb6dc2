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
	// calls are every call of each policy, "alertname (source)" each,
	// priming and repeats included.
	calls map[string][]string
}

// Issue 19's goals for a replica answering 5xx and for one that hangs,
// with Vigil's default configuration: acted on within 5 s at p99, at 20
// req/s or more.
const (
	goal19P99 = 5 * time.Second
	goal19RPS = 20
)

func (r report) markdown() string {
	s := r.settings
	var b strings.Builder
	b.WriteString("| scenario | path | acted / faults | median | p99 | alert acted on (source) |\n|---|---|---|---|---|---|\n")
	var verdicts []string
	goal19 := "not measured (no 5xx scenario)"
	goal19Hang := "not measured (no hang scenario)"
	for _, sc := range r.scenarios {
		var local, conv, mixin []time.Duration
		var localAlerts []string
		for _, res := range sc.results {
			local = append(local, res.local)
			conv = append(conv, res.conv)
			localAlerts = append(localAlerts, res.localAlert)
		}
		for _, m := range sc.mixin {
			mixin = append(mixin, m.mixin)
		}
		l, c, m := summarize(local), summarize(conv), summarize(mixin)
		fmt.Fprintf(&b, "| %s | local (Vigil's default detection) | %d / %d | %s | %s | %s |\n", sc.name, l.acted, l.faults, seconds(orMissing(l)), seconds(p99OrMissing(l)), tally(localAlerts))
		fmt.Fprintf(&b, "| %s | conventional (Prometheus %s, `for: 0s`, Alertmanager) | %d / %d | %s | %s | %s (alertmanager) |\n", sc.name, s.promInterval, c.acted, c.faults, seconds(orMissing(c)), seconds(p99OrMissing(c)), convAlert(sc.name))
		both := l.acted > 0 && c.acted > 0
		fmt.Fprintf(&b, "| %s | **ratio conventional / local** | | **%s** | **%s** | |\n", sc.name, ratio(c.median, l.median, both), ratio(c.p99, l.p99, both))
		if len(sc.mixin) > 0 {
			fmt.Fprintf(&b, "| %s | kubernetes-mixin `for:` (Prometheus %s, `for: %s`, Alertmanager) | %d / %d | %s | %s | %s (alertmanager) |\n", sc.name, s.promInterval, promDuration(s.mixinFor(sc.name)), m.acted, m.faults, seconds(orMissing(m)), seconds(p99OrMissing(m)), mixinAlert(sc.name))
			mboth := l.acted > 0 && m.acted > 0
			fmt.Fprintf(&b, "| %s | **ratio mixin / local** | | **%s** | **%s** | |\n", sc.name, ratio(m.median, l.median, mboth), ratio(m.p99, l.p99, mboth))
		} else if s.mixinRuns > 0 && sc.noMixin != "" {
			fmt.Fprintf(&b, "| %s | kubernetes-mixin | — | — | — | — (%s) |\n", sc.name, sc.noMixin)
		}
		switch sc.name {
		case "crash", "5xx": // issue 11's goals are about these two
			p99ok := l.acted == l.faults && l.acted > 0 && l.p99 < 2*time.Second
			fast := both && float64(c.median) >= 10*float64(l.median) && float64(c.p99) >= 10*float64(l.p99)
			verdicts = append(verdicts, fmt.Sprintf("%s: local p99 < 2 s %s, ≥ 10× faster than conventional (median and p99) %s", sc.name, yes(p99ok), yes(fast)))
		}
		switch sc.name {
		case "5xx":
			goal19 = goal19Verdict(l, s.rps)
		case "hang":
			goal19Hang = goal19Verdict(l, s.rps)
		}
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Goal of issue 19 — a replica answering 5xx acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: %s.\n\n", goal19)
	fmt.Fprintf(&b, "Goal of issue 19 — a replica that hangs acted on within 5 s at p99 at ≥ 20 req/s, with the default configuration: %s.\n\n", goal19Hang)
	if len(verdicts) > 0 {
		fmt.Fprintf(&b, "Goals of issue 11 — %s.\n\n", strings.Join(verdicts, "; "))
	}
	b.WriteString("Where the time goes (median / slowest): detection is fault → the alert's start (the exit's kernel time for the event alert, the outcome batch that completed the evidence for an evidence alert, the first firing evaluation for a rule), delivery is the alert's start → the action's call (for the Prometheus paths: Prometheus → Alertmanager → Vigil's webhook → healing).\n\n")
	b.WriteString("| scenario | path | detection | delivery |\n|---|---|---|---|\n")
	for _, sc := range r.scenarios {
		var ld, ldl, cd, cdl, md, mdl []time.Duration
		for _, res := range sc.results {
			if res.local != missed {
				ld, ldl = append(ld, res.localDetect), append(ldl, res.local-res.localDetect)
			}
			if res.conv != missed {
				cd, cdl = append(cd, res.convDetect), append(cdl, res.conv-res.convDetect)
			}
		}
		for _, m := range sc.mixin {
			if m.mixin != missed {
				md, mdl = append(md, m.mixinDetect), append(mdl, m.mixin-m.mixinDetect)
			}
		}
		fmt.Fprintf(&b, "| %s | local | %s | %s |\n", sc.name, spread(ld), spread(ldl))
		fmt.Fprintf(&b, "| %s | conventional | %s | %s |\n", sc.name, spread(cd), spread(cdl))
		if len(sc.mixin) > 0 {
			fmt.Fprintf(&b, "| %s | kubernetes-mixin | %s | %s |\n", sc.name, spread(md), spread(mdl))
		}
	}
	b.WriteString("\n")
	for _, sc := range r.scenarios {
		if sc.name == "hang" {
			b.WriteString(hangBreakdown(sc.results))
		}
	}
	fmt.Fprintf(&b, "Time from the fault's injection (the driver's clock) to the remediation webhook's arrival at the driver's receiver (same clock), %d faults per scenario each measured on the local and conventional paths at once", s.runs)
	if s.mixinRuns > 0 {
		fmt.Fprintf(&b, ", and %d more per scenario on the kubernetes-mixin path (its ratios are against the local row above)", s.mixinRuns)
	}
	fmt.Fprintf(&b, ". Percentiles by nearest rank (with fewer than 100 faults the p99 is the slowest fault). Missed: no action within %s", s.timeout)
	if s.mixinRuns > 0 {
		fmt.Fprintf(&b, " (mixin path: its `for:` + %s)", s.timeout+2*time.Minute)
	}
	b.WriteString(".\n\n")
	for _, sc := range r.scenarios {
		var ev []string
		for _, res := range sc.results {
			if res.evidence != "" {
				ev = append(ev, res.evidence)
			}
		}
		if len(ev) > 0 {
			fmt.Fprintf(&b, "Evidence at firing (%s, %s since the CUSUM left zero): %s.\n\n", sc.name, evidenceWhat(sc.name), tally(ev))
		}
	}
	b.WriteString("Settings:\n\n")
	interval := "Vigil's default `rules.evaluation_interval` (5s)"
	if s.localInterval > 0 {
		interval = fmt.Sprintf("`rules.evaluation_interval: %s`", s.localInterval)
	}
	fmt.Fprintf(&b, "- local: Vigil's default detection: the embedded default rule set (no rule of the benchmark's own), %s, `rules.evidence` at its defaults; the eBPF and cgroup collectors (host, logs, kube off); `event_alerts.resolve_after: 5s` (so a workload's next crash is a new alert); healing `dry_run: false`, policy `local-crash` on `%s` or `%s`, `local-5xx` on `%s`, `local-hang` on `%s`, action `webhook`; a hang is evidence once a request has waited `collectors.ebpf.http_hang_after` (default 2 s) unanswered.\n", interval, defaultExited, defaultCrashLooping, default5xx, defaultNotAnswering)
	fmt.Fprintf(&b, "- conventional: Prometheus (Debian 2.42) scraping Vigil's /metrics every %s and evaluating every %s (`--rules.alert.resend-delay=1s`): crash = `%s`, 5xx = `%s`, hang = `%s` (the counter of requests still unanswered `collectors.ebpf.http_unanswered_after`, default 10 s, after they were read: this path cannot see a hang sooner), all `for: 0s`; Alertmanager (Debian 0.25) `group_wait: 1s`, `group_interval: 1s`, `repeat_interval: 4h`, `group_by: ['...']`, posting to Vigil's `rules.alertmanager_webhook` with a bearer token; the same healing engine, a policy that matches only those alerts (the receiver checks each call's alert and source).\n", s.promInterval, s.promInterval, crashExpr(s.window), httpExpr(s.window), hangExpr(s.window))
	if s.mixinRuns > 0 {
		fmt.Fprintf(&b, "- kubernetes-mixin: the same Prometheus and Alertmanager; crash = `%s`, `for: %s` (KubePodCrashLooping); 5xx = `%s`, `for: %s` (KubeAPIErrorsHigh); faults of their own, all at once: crash = the process exits with code 3 and is restarted after kubelet's back-off (10 s doubled up to 5 min) to exit again, until the mixin path acts; 5xx = the server answers 500 until then. New workloads, so the first exit creates the error counter and Prometheus sees the loop from the second, 10 s later. Hang: none (the mixin has no alert for a replica that hangs while alive).\n", mixinCrashExpr(), promDuration(s.mixinCrashFor), mixinHTTPExpr(), promDuration(s.mixin5xxFor))
		for _, sc := range r.scenarios {
			if sc.noMixin != "" {
				continue
			}
			var lt []time.Duration
			var details []string
			for _, m := range sc.mixin {
				if m.local != missed {
					lt = append(lt, m.local)
				}
				if m.detail != "" {
					details = append(details, m.detail)
				}
			}
			fmt.Fprintf(&b, "- kubernetes-mixin %s faults: the local path acted on them in %s (median / slowest)", sc.name, spread(lt))
			if len(details) > 0 {
				fmt.Fprintf(&b, "; %s", strings.Join(details, ", "))
			}
			b.WriteString(".\n")
		}
	}
	fmt.Fprintf(&b, "- faults: crash = %s; 5xx = %s (the load generator sends GET / on a keep-alive connection, one request at a time); hang = %s (the load generator sends GET / every 1/rps s whether or not the earlier ones were answered, each on its own connection while they wait, at most %d in flight, client timeout %s; the fault ends as a restart would, the requests it holds cut unanswered). %d workloads per scenario used in turn; before each fault none of the alerts the fault must raise anew is active or pending for its workload, in Vigil or in Prometheus (crash: `%s`, `%s`; 5xx: `%s` from either source, `%s`; hang: `%s` from either source, `%s`), and Prometheus holds the workload's error counter (each workload is primed once with an unmeasured fault; a hang's until Prometheus has scraped its unanswered counter). Each fault waits a random 0–%s first, so faults fall at every phase of the scrape and evaluation cycle. %s\n", scenarioWhat(r.scenarios, "crash"), scenarioWhat(r.scenarios, "5xx"), scenarioWhat(r.scenarios, "hang"), openInFlight, openTimeout, s.pool, defaultExited, alertCrash, default5xx, alert5xx, defaultNotAnswering, alertHang, s.promInterval, concurrently(s))
	for _, sc := range r.scenarios {
		if sc.load != nil {
			fmt.Fprintf(&b, "- %s: %s.\n", sc.name, sc.load())
		}
	}
	if len(r.calls) > 0 {
		policies := make([]string, 0, len(r.calls))
		for p := range r.calls {
			policies = append(policies, p)
		}
		slices.Sort(policies)
		var parts []string
		for _, p := range policies {
			parts = append(parts, fmt.Sprintf("%s: %s", p, tally(r.calls[p])))
		}
		fmt.Fprintf(&b, "- every action call of the run, priming and the mixin path's faults included, by policy and alert (source): %s.\n", strings.Join(parts, "; "))
	}
	fmt.Fprintf(&b, "- machine: %s; run took %s.\n", r.host, r.elapsed.Round(time.Second))
	return b.String()
}

// goal19Verdict judges one of issue 19's goals on the local path's summary
// l at rps.
func goal19Verdict(l summary, rps float64) string {
	switch {
	case rps < goal19RPS:
		return fmt.Sprintf("not measured (load %g req/s, below %d)", rps, goal19RPS)
	case l.acted < l.faults || l.acted == 0:
		return fmt.Sprintf("NOT met (the local path acted on %d of %d faults)", l.acted, l.faults)
	case l.p99 > goal19P99:
		return fmt.Sprintf("NOT met (p99 %s at %g req/s)", seconds(l.p99), rps)
	}
	return fmt.Sprintf("met (p99 %s at %g req/s)", seconds(l.p99), rps)
}

// tally counts equal strings: "a ×3, b ×1", most frequent first; "" is
// counted as missed.
func tally(vals []string) string {
	counts := map[string]int{}
	for _, v := range vals {
		if v == "" {
			v = "missed"
		}
		counts[v]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if counts[a] != counts[b] {
			return counts[b] - counts[a]
		}
		return strings.Compare(a, b)
	})
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = fmt.Sprintf("%s ×%d", k, counts[k])
	}
	if len(out) == 0 {
		return "–"
	}
	return strings.Join(out, ", ")
}

func concurrently(s settings) string {
	if s.mixinRuns > 0 {
		return "The scenarios, and the mixin path's faults, run concurrently."
	}
	return "The scenarios run concurrently."
}

func convAlert(scenario string) string {
	switch scenario {
	case "crash":
		return alertCrash
	case "hang":
		return alertHang
	}
	return alert5xx
}

// evidenceWhat says what an evidence alert's bad/requests annotations
// count in a scenario.
func evidenceWhat(scenario string) string {
	if scenario == "hang" {
		return "requests unanswered after `http_hang_after` / observations (answers and requests unanswered after it)"
	}
	return "answers 5xx / requests"
}

// hangBreakdown splits the local path's time on the hang faults that an
// evidence alert acted on: fault → the batch of outcomes that took the
// CUSUM off zero (its first unanswered requests: they count only once
// they have waited http_hang_after), → the threshold (the alert's start),
// → the action.
func hangBreakdown(results []result) string {
	var first, accrue, deliver []time.Duration
	for _, res := range results {
		if res.local == missed || res.localSince == missed {
			continue
		}
		first = append(first, res.localSince)
		accrue = append(accrue, res.localDetect-res.localSince)
		deliver = append(deliver, res.local-res.localDetect)
	}
	if len(first) == 0 {
		return ""
	}
	return fmt.Sprintf("Hang, local path, in steps (median / slowest of the %d faults an evidence alert acted on): fault → the first unanswered requests reach the detector (each waits `http_hang_after` first; this is the batch that took the CUSUM off zero, `evidence_since`) %s; → the CUSUM reaches its threshold (the alert starts) %s; → the action's call %s.\n\n",
		len(first), spread(first), spread(accrue), spread(deliver))
}

func mixinAlert(scenario string) string {
	if scenario == "crash" {
		return alertMixinCrash
	}
	return alertMixin5xx
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
