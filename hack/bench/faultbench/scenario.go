package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// environment is what the scenarios share: the settings, the receiver,
// the cgroups and the endpoints of Vigil and Prometheus.
type environment struct {
	s        settings
	rc       *receiver
	cg       *cgroups
	vigilURL string
	promURL  string
	log      *slog.Logger
}

// scenario is one kind of fault on a pool of workloads.
type scenario struct {
	name        string // crash, 5xx
	what        string // the fault, for the report
	units       []string
	localPolicy string
	convPolicy  string
	// series is the PromQL selector of a unit's error counter (%q is the
	// unit): Prometheus must hold it before a fault is measured, or the
	// conventional rule's increase() would need a second scrape (or, for a
	// counter that first appears at its final value, never fire).
	series string
	// prepare readies a fault on unit: inject causes it, revert ends it.
	prepare func(ctx context.Context, unit string) (inject, revert func() error, err error)
	// load returns the answers the load generator saw (5xx scenario).
	load func() string

	results []result
}

// result is one measured fault: how long each path took to call its
// action (missed: it had not acted by the timeout), and how much of that
// was before the alert started (detection; the rest is delivery to the
// action).
type result struct {
	unit                    string
	local, conv             time.Duration
	localDetect, convDetect time.Duration
}

// missed marks a path that did not act within the timeout.
const missed = time.Duration(-1)

func (e *environment) crashScenario() *scenario {
	sc := &scenario{name: "crash", what: "a process in faultbench-crash-N.service exits with code 3",
		localPolicy: policyLocalCrash, convPolicy: policyConvCrash,
		series: `vigil_process_exits_total{outcome="error",unit=%q}`}
	for i := range e.s.pool {
		sc.units = append(sc.units, fmt.Sprintf("faultbench-crash-%d.service", i))
	}
	sc.prepare = e.prepareCrash
	return sc
}

// prepareCrash starts a shell in unit's cgroup that exits with code 3 when
// it reads a line: the injection is that line.
func (e *environment) prepareCrash(ctx context.Context, unit string) (inject, revert func() error, err error) {
	procs := filepath.Join(e.cg.dir(unit), "cgroup.procs")
	cmd := exec.Command("sh", "-c", `echo $$ > "$0" && exec sh -c 'read line; exit 3'`, procs)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	kill := func() {
		_ = cmd.Process.Kill()
		<-done
	}
	// Ready once the shell has moved into the cgroup and exec'd the one
	// that waits for the line (its command line no longer names the file).
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "cmdline"))
		if len(b) > 0 && !strings.Contains(string(b), "cgroup.procs") {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			kill()
			return nil, nil, fmt.Errorf("crasher in %s did not start", unit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	injected := false
	inject = func() error {
		injected = true
		_, err := io.WriteString(stdin, "crash\n")
		return err
	}
	revert = func() error {
		if !injected { // the run was cut short before its fault
			kill()
			return nil
		}
		select {
		case err := <-done:
			var ee *exec.ExitError
			if errors.As(err, &ee) && ee.ExitCode() == 3 {
				return nil
			}
			return fmt.Errorf("crasher in %s: want exit code 3, got %v", unit, err)
		case <-time.After(10 * time.Second):
			kill()
			return fmt.Errorf("crasher in %s did not exit", unit)
		}
	}
	return inject, revert, nil
}

// startWebServers starts one web server per 5xx workload and a load
// generator on each; both stop at cleanup (the load first).
func (e *environment) startWebServers(r *testenv.Runner) (map[string]*webServer, error) {
	web := map[string]*webServer{}
	r.Cleanup(func() {
		for _, w := range web {
			w.stop()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r.Cleanup(func() { cancel(); wg.Wait() })
	for i := range e.s.pool {
		unit := fmt.Sprintf("faultbench-web-%d.service", i)
		w, err := startWeb(e.cg, unit)
		if err != nil {
			return nil, err
		}
		web[unit] = w
		wg.Add(1)
		go func() { defer wg.Done(); w.load(ctx, e.s.rps) }()
	}
	return web, nil
}

func (e *environment) httpScenario(web map[string]*webServer) *scenario {
	sc := &scenario{name: "5xx", what: fmt.Sprintf("an HTTP server in faultbench-web-N.service under %g req/s starts answering 500", e.s.rps),
		localPolicy: policyLocal5xx, convPolicy: policyConv5xx,
		series: `vigil_http_requests_total{kind="server",status_class="5xx",unit=%q}`}
	for i := range e.s.pool {
		sc.units = append(sc.units, fmt.Sprintf("faultbench-web-%d.service", i))
	}
	sc.prepare = func(_ context.Context, unit string) (inject, revert func() error, err error) {
		w := web[unit]
		return func() error { return w.set("5xx") }, func() error { return w.set("ok") }, nil
	}
	sc.load = func() string {
		var ok, bad, failed int64
		for _, w := range web {
			ok, bad, failed = ok+w.ok.Load(), bad+w.errors5xx.Load(), failed+w.failed.Load()
		}
		return fmt.Sprintf("load generator: %d answers 2xx, %d answers 5xx, %d failed requests", ok, bad, failed)
	}
	return sc
}

// runScenario primes every workload, then measures e.s.runs faults, using
// the workloads in turn.
func (e *environment) runScenario(ctx context.Context, sc *scenario) error {
	if err := e.prime(ctx, sc); err != nil {
		return fmt.Errorf("%s: %w", sc.name, err)
	}
	for i := range e.s.runs {
		unit := sc.units[i%len(sc.units)]
		res, err := e.fault(ctx, sc, unit)
		if err != nil {
			return fmt.Errorf("%s run %d (%s): %w", sc.name, i+1, unit, err)
		}
		sc.results = append(sc.results, res)
		e.log.Info("fault measured", "scenario", sc.name, "run", i+1, "of", e.s.runs, "unit", unit,
			"local", fmtDur(res.local), "conventional", fmtDur(res.conv))
	}
	return nil
}

// prime makes every workload's error counter exist, in Vigil and in
// Prometheus, before the first measured fault: one short, unmeasured fault
// each, ended as soon as the local path has acted on it. (A counter that
// appears at its final value never makes increase() positive.)
func (e *environment) prime(ctx context.Context, sc *scenario) error {
	var wg sync.WaitGroup
	errs := make([]error, len(sc.units))
	for i, unit := range sc.units {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inject, revert, err := sc.prepare(ctx, unit)
			if err != nil {
				errs[i] = err
				return
			}
			t0 := time.Now()
			err = inject()
			if err == nil {
				wctx, cancel := context.WithTimeout(ctx, e.s.timeout)
				_, err = e.rc.first(wctx, sc.localPolicy, unit, t0)
				cancel()
				if err != nil {
					err = fmt.Errorf("priming %s: the local path did not act within %s: %w", unit, e.s.timeout, err)
				}
			}
			errs[i] = errors.Join(err, revert())
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// fault measures one fault on unit: wait until it is healthy on both paths,
// wait a random part of the Prometheus interval (so faults fall at every
// phase of the scrape and evaluation cycle), inject, and wait for both
// paths' actions.
func (e *environment) fault(ctx context.Context, sc *scenario, unit string) (result, error) {
	if err := e.waitHealthy(ctx, sc, unit); err != nil {
		return result{}, err
	}
	inject, revert, err := sc.prepare(ctx, unit)
	if err != nil {
		return result{}, err
	}
	select {
	case <-ctx.Done():
		return result{}, errors.Join(ctx.Err(), revert())
	case <-time.After(rand.N(e.s.promInterval)):
	}
	t0 := time.Now()
	if err := inject(); err != nil {
		return result{}, errors.Join(fmt.Errorf("inject: %w", err), revert())
	}
	res := result{unit: unit}
	wctx, cancel := context.WithTimeout(ctx, e.s.timeout)
	defer cancel()
	for _, p := range []struct {
		policy        string
		total, detect *time.Duration
	}{{sc.localPolicy, &res.local, &res.localDetect}, {sc.convPolicy, &res.conv, &res.convDetect}} {
		c, err := e.rc.first(wctx, p.policy, unit, t0)
		switch {
		case err == nil:
			*p.total = c.at.Sub(t0)
			*p.detect = c.startsAt.Sub(t0)
		case ctx.Err() != nil:
			return res, errors.Join(ctx.Err(), revert())
		default:
			*p.total, *p.detect = missed, missed
			e.log.Warn("no action within the timeout", "scenario", sc.name, "policy", p.policy, "unit", unit, "timeout", e.s.timeout)
		}
	}
	return res, revert()
}

// measuredAlerts are the alerts the measured policies act on. Other alerts
// of the default rule set may fire about a benchmark workload too
// (VigilWorkloadCrashLooping after three crashes in 5 minutes,
// VigilWorkloadHigh5xxRatio after a minute of errors); no policy acts on
// them, so they do not hold a fault back.
var measuredAlerts = map[string]bool{"VigilProcessExitedNonZero": true, alertCrash: true, alert5xx: true}

// waitHealthy waits until no measured alert about unit is active in Vigil
// (its own, and Alertmanager's as delivered) or in Prometheus, and
// Prometheus holds the unit's error counter: the next fault then raises a
// new alert on both paths.
func (e *environment) waitHealthy(parent context.Context, sc *scenario, unit string) error {
	ctx, cancel := context.WithTimeout(parent, 3*time.Minute)
	defer cancel()
	var why string
	for {
		var err error
		why, err = e.unhealthy(ctx, sc, unit)
		if err == nil && why == "" {
			return nil
		}
		if err != nil {
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			if err := parent.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%s not healthy after 3m: %s", unit, why)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (e *environment) unhealthy(ctx context.Context, sc *scenario, unit string) (string, error) {
	for _, base := range []string{e.vigilURL, e.promURL} {
		var v struct {
			Data struct {
				Alerts []struct {
					Labels map[string]string `json:"labels"`
					State  string            `json:"state"`
				} `json:"alerts"`
			} `json:"data"`
		}
		if err := getJSON(ctx, base+"/api/v1/alerts", &v); err != nil {
			return "", err
		}
		for _, a := range v.Data.Alerts {
			if a.Labels["unit"] == unit && measuredAlerts[a.Labels["alertname"]] {
				return fmt.Sprintf("%s is %s at %s", a.Labels["alertname"], a.State, base), nil
			}
		}
	}
	var q struct {
		Data struct {
			Result []any `json:"result"`
		} `json:"data"`
	}
	sel := fmt.Sprintf(sc.series, unit)
	if err := getJSON(ctx, e.promURL+"/api/v1/query?"+url.Values{"query": {sel}}.Encode(), &q); err != nil {
		return "", err
	}
	if len(q.Data.Result) == 0 {
		return "Prometheus has not scraped " + sel + " yet", nil
	}
	return "", nil
}

func fmtDur(d time.Duration) string {
	if d == missed {
		return "missed"
	}
	return d.Round(time.Millisecond).String()
}
