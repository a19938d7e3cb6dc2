// Command faultbench is the headline benchmark of `make bench`
// (hack/bench/faults.sh): the time from a real fault to the remediation
// call, through Vigil's local path with its default detection and through
// the conventional alerting path, side by side on the same faults in one
// run on this machine, and through the conventional path with the
// kubernetes-mixin's for: durations on faults of their own.
//
// Three scenarios run concurrently, each on its own pool of workloads
// (cgroups named like systemd units, so Vigil attributes them to a unit):
//
//   - crash: a shell in faultbench-crash-N.service exits with code 3;
//   - 5xx: an HTTP server in faultbench-web-N.service, which a load
//     generator hits at a steady rate, starts answering 500;
//   - hang: an HTTP server in faultbench-hang-N.service, under open-loop
//     load (a request every 1/rps seconds whether or not the earlier ones
//     were answered), reads each request and answers none.
//
// One Vigil (eBPF and cgroup collectors, the default rule set and
// evidence detection, healing live) serves every path at once:
//
//   - local: Vigil's default alerts (the fast-path event alert
//     VigilProcessExitedNonZero or the rule VigilWorkloadCrashLooping for a
//     crash; VigilWorkloadHigh5xxRatio for 5xx and VigilWorkloadNotAnswering
//     for a hang, from the evidence detector or the rule file) reach the
//     healing engine, whose local-* policy calls a webhook action;
//   - conventional: Prometheus scrapes Vigil's /metrics every 5 s and
//     evaluates an equivalent rule every 5 s with `for: 0s`; Alertmanager
//     (group_wait 1s) posts to Vigil's authenticated Alertmanager webhook; the
//     conventional-* policy, which matches only those alerts, calls the
//     webhook action;
//   - mixin: the same Prometheus and Alertmanager with the rules as most
//     clusters run them, the kubernetes-mixin's KubePodCrashLooping
//     (for: 15m) and KubeAPIErrorsHigh (for: 10m) on Vigil's metrics. Its
//     faults (a crash loop; 5xx answers) last until it acts, so it runs on
//     workloads of its own (faultbench-crash-mN, faultbench-web-mN), all at
//     once, beside the other two paths (-mixin-runs, 0 to skip it). The
//     mixin has no alert for a replica that hangs while alive, so the hang
//     scenario has no mixin path.
//
// The webhook actions land on a receiver in this process, which notes the
// time of each call and checks which alert and source each policy acted
// on. Each fault is timed from the moment this program injects it to each
// path's call, on the same clock. The table (Markdown) goes to stdout and,
// with -report, to a file; progress goes to stderr.
//
// Usage (as root; see hack/bench/faults.sh):
//
//	faultbench -vigil bin/vigil [-runs 15] [-rps 50] [-mixin-runs 4] [-scenarios crash,5xx,hang] [-report FILE]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// settings are the knobs of one benchmark run.
type settings struct {
	vigil         string        // path of the vigil binary
	runs          int           // measured faults per scenario
	rps           float64       // load on each web server
	localInterval time.Duration // Vigil's rules.evaluation_interval; 0: Vigil's default
	promInterval  time.Duration // Prometheus's scrape and evaluation interval
	window        string        // range of the increase() in both rules
	pool          int           // workloads per scenario, used in turn
	timeout       time.Duration // how long a path may take before the fault counts as missed
	report        string        // file the Markdown table is also written to
	keep          bool          // keep the work folder (logs, configs) at the end
	mixinRuns     int           // faults per scenario on the mixin path (0: skip it)
	mixinCrashFor time.Duration // for: of the mixin's crash-loop rule
	mixin5xxFor   time.Duration // for: of the mixin's error-ratio rule
	scenarios     []string      // the scenarios to run, from allScenarios
}

// allScenarios are the scenarios, in the report's order.
var allScenarios = []string{"crash", "5xx", "hang"}

// has says whether the scenario is to run.
func (s settings) has(name string) bool { return slices.Contains(s.scenarios, name) }

// units are the main workloads of a kind (crash, web).
func (s settings) units(kind string) []string {
	var out []string
	for i := range s.pool {
		out = append(out, fmt.Sprintf("faultbench-%s-%d.service", kind, i))
	}
	return out
}

// mixinUnitNames are the mixin path's workloads of a kind.
func (s settings) mixinUnitNames(kind string) []string {
	var out []string
	for i := range s.mixinRuns {
		out = append(out, fmt.Sprintf("faultbench-%s-m%d.service", kind, i))
	}
	return out
}

// mixinFor is the mixin rule's for: in a scenario.
func (s settings) mixinFor(scenario string) time.Duration {
	if scenario == "crash" {
		return s.mixinCrashFor
	}
	return s.mixin5xxFor
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == webHelperArg {
		os.Exit(runWebHelper(os.Args[2:]))
	}
	var s settings
	flag.StringVar(&s.vigil, "vigil", "", "path of the vigil binary (required)")
	flag.IntVar(&s.runs, "runs", 15, "measured faults per scenario (each measured on both paths)")
	flag.Float64Var(&s.rps, "rps", 50, "requests per second the load generator sends to each web server")
	flag.DurationVar(&s.localInterval, "local-interval", 0, "Vigil's rules.evaluation_interval (0: Vigil's default, 5s)")
	flag.DurationVar(&s.promInterval, "prom-interval", 5*time.Second, "Prometheus scrape and evaluation interval")
	flag.StringVar(&s.window, "window", "15s", "range of increase() in the 5xx and crash rules (both paths)")
	flag.IntVar(&s.pool, "pool", 4, "workloads per scenario, used in turn so each fault starts from healthy")
	flag.DurationVar(&s.timeout, "timeout", time.Minute, "a path that has not acted this long after a fault misses it")
	flag.StringVar(&s.report, "report", "", "also write the Markdown report to this file")
	flag.BoolVar(&s.keep, "keep", false, "keep the work folder (configs and logs of every server)")
	flag.IntVar(&s.mixinRuns, "mixin-runs", 4, "faults per scenario on the kubernetes-mixin path, all at once on workloads of their own (0: skip that path)")
	flag.DurationVar(&s.mixinCrashFor, "mixin-crash-for", 15*time.Minute, "for: of the mixin path's crash-loop rule (the mixin's KubePodCrashLooping: 15m)")
	flag.DurationVar(&s.mixin5xxFor, "mixin-5xx-for", 10*time.Minute, "for: of the mixin path's 5xx-ratio rule (the mixin's KubeAPIErrorsHigh: 10m)")
	scenarios := flag.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios to run: crash, 5xx, hang")
	flag.Parse()
	s.scenarios = strings.Split(*scenarios, ",")
	if err := s.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "faultbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir, err := os.MkdirTemp("", "vigil-faultbench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "faultbench:", err)
		os.Exit(1)
	}
	r := &testenv.Runner{Ctx: ctx, Dir: dir, Log: log, Label: "faultbench", LogLevel: slog.LevelDebug}
	code := r.Run(func() { bench(r, s) })
	if code != 0 || s.keep {
		log.Info("work folder kept", "dir", dir)
	} else {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

func (s *settings) validate() error {
	var errs []error
	if s.vigil == "" {
		errs = append(errs, errors.New("-vigil: the path of the vigil binary is required"))
	} else if _, err := os.Stat(s.vigil); err != nil {
		errs = append(errs, fmt.Errorf("-vigil: %w", err))
	}
	if s.runs < 1 {
		errs = append(errs, fmt.Errorf("-runs: must be at least 1, got %d", s.runs))
	}
	if s.rps <= 0 || s.rps > 1000 {
		errs = append(errs, fmt.Errorf("-rps: must be in (0, 1000], got %g", s.rps))
	}
	if s.localInterval != 0 && s.localInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("-local-interval: Vigil's minimum is 100ms, got %s", s.localInterval))
	}
	if s.mixinRuns < 0 || s.mixinRuns > 20 {
		errs = append(errs, fmt.Errorf("-mixin-runs: must be between 0 and 20, got %d", s.mixinRuns))
	}
	for name, d := range map[string]time.Duration{"-mixin-crash-for": s.mixinCrashFor, "-mixin-5xx-for": s.mixin5xxFor} {
		if d < 0 || d > time.Hour {
			errs = append(errs, fmt.Errorf("%s: must be between 0s and 1h, got %s", name, d))
		}
	}
	if s.promInterval < time.Second {
		errs = append(errs, fmt.Errorf("-prom-interval: must be at least 1s, got %s", s.promInterval))
	}
	if s.pool < 1 {
		errs = append(errs, fmt.Errorf("-pool: must be at least 1, got %d", s.pool))
	}
	if len(s.scenarios) == 0 || slices.ContainsFunc(s.scenarios, func(n string) bool { return !slices.Contains(allScenarios, n) }) ||
		len(slices.Compact(slices.Sorted(slices.Values(s.scenarios)))) != len(s.scenarios) {
		errs = append(errs, fmt.Errorf("-scenarios: want some of %s, each once, got %q", strings.Join(allScenarios, ", "), strings.Join(s.scenarios, ",")))
	}
	if s.timeout < 10*time.Second {
		errs = append(errs, fmt.Errorf("-timeout: must be at least 10s, got %s", s.timeout))
	}
	return errors.Join(errs...)
}

// bench sets everything up, runs the scenarios and prints the report.
func bench(r *testenv.Runner, s settings) {
	if os.Geteuid() != 0 {
		r.Fatalf("must run as root (eBPF programs and cgroups)")
	}
	start := time.Now()
	loadAtStart := loadAverage()
	rc := newReceiver()
	recvURL := rc.start(r)

	cg, err := newCgroups()
	if err != nil {
		r.Fatalf("cgroups: %v", err)
	}
	var crashUnits, webUnits, hangUnits []string
	if s.has("crash") {
		crashUnits = append(s.units("crash"), s.mixinUnitNames("crash")...)
	}
	if s.has("5xx") {
		webUnits = append(s.units("web"), s.mixinUnitNames("web")...)
	}
	if s.has("hang") {
		hangUnits = s.units("hang")
	}
	for _, u := range slices.Concat(crashUnits, webUnits, hangUnits) {
		if err := cg.create(u); err != nil {
			r.Fatalf("cgroup %s: %v", u, err)
		}
	}
	r.Cleanup(func() {
		if err := cg.removeAll(); err != nil {
			r.Logf("remove cgroups: %v", err)
		}
	})

	work := r.TempDir()
	paths := stack{token: writeFile(r, work, "token", "faultbench-"+randomHex(16)+"\n")}
	paths.promRules = writeFile(r, work, "prometheus.rules.yml", promRulesYAML(s))
	paths.vigilConfig = writeFile(r, work, "vigil.yaml", vigilYAML(s, paths, recvURL, filepath.Join(work, "maintenance")))

	var vigilURL string
	testenv.StartOnFreePorts(r, 1, func(ports []int) testenv.Command {
		vigilURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		return testenv.Command{
			Name:  "vigil",
			Path:  s.vigil,
			Args:  []string{"run", "--config", paths.vigilConfig, "--web.listen-address", fmt.Sprintf("127.0.0.1:%d", ports[0])},
			Ready: testenv.HTTPReady(vigilURL + "/-/ready"),
		}
	})
	am := testenv.StartAlertmanager(r, alertmanagerYAML(vigilURL, paths.token))
	prom := testenv.StartPrometheus(r, testenv.PrometheusOptions{
		ScrapeTargets:      []string{strings.TrimPrefix(vigilURL, "http://")},
		ScrapeJobs:         []string{"vigil"},
		ScrapeInterval:     s.promInterval,
		EvaluationInterval: s.promInterval,
		RuleFiles:          []string{paths.promRules},
		AlertmanagerURLs:   []string{am.URL},
	})
	if err := waitEBPF(r.Ctx, vigilURL); err != nil {
		r.Fatalf("%v", err)
	}
	env := &environment{s: s, rc: rc, cg: cg, vigilURL: vigilURL, promURL: prom.URL, log: r.Log}

	var scenarios []*scenario
	if s.has("crash") {
		scenarios = append(scenarios, env.crashScenario())
	}
	if s.has("5xx") {
		web, err := env.startWebServers(r, webUnits, false)
		if err != nil {
			r.Fatalf("web servers: %v", err)
		}
		scenarios = append(scenarios, env.httpScenario(web))
	}
	if s.has("hang") {
		web, err := env.startWebServers(r, hangUnits, true)
		if err != nil {
			r.Fatalf("web servers (hang): %v", err)
		}
		scenarios = append(scenarios, env.hangScenario(web))
	}
	r.Log.Info("environment up", "vigil", vigilURL, "prometheus", prom.URL, "alertmanager", am.URL, "setup", time.Since(start).Round(time.Millisecond))

	var wg sync.WaitGroup
	errs := make([]error, 2*len(scenarios))
	for i, sc := range scenarios {
		wg.Add(2)
		go func() {
			defer wg.Done()
			errs[2*i] = env.runScenario(r.Ctx, sc)
		}()
		go func() {
			defer wg.Done()
			errs[2*i+1] = env.runMixin(r.Ctx, sc)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		r.Fatalf("%v", err)
	}
	if bad := rc.unexpected(); len(bad) > 0 {
		r.Fatalf("the receiver got calls it did not expect: %s", strings.Join(bad, "; "))
	}
	host := fmt.Sprintf("%s; load average (1, 5, 15 min) %s at the start, %s at the end", hostInfo(), loadAtStart, loadAverage())
	rep := report{settings: s, scenarios: scenarios, elapsed: time.Since(start), host: host, calls: rc.byPolicy()}
	md := rep.markdown()
	fmt.Print(md)
	if s.report != "" {
		if err := os.WriteFile(s.report, []byte(md), 0o644); err != nil {
			r.Fatalf("write report: %v", err)
		}
		r.Log.Info("report written", "file", s.report)
	}
}

// stack holds the files shared by Vigil, Prometheus and Alertmanager.
type stack struct {
	token, promRules, vigilConfig string
}

func hostInfo() string {
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%d CPUs, Linux %s, %s", runtime.NumCPU(), kernel, runtime.Version())
}

// loadAverage is /proc/loadavg's three load averages, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}

func writeFile(r *testenv.Runner, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		r.Fatalf("%v", err)
	}
	return p
}
