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
	"slices"
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
	name       string   // crash, 5xx, hang
	what       string   // the fault, for the report
	units      []string // the main workloads, measured on the local and conventional paths
	mixinUnits []string // the mixin path's own workloads (and the local path's on them)
	// noMixin says why the mixin path has no rule for this fault ("" when
	// it has one): the report shows that instead of a figure.
	noMixin string

	localPolicy, convPolicy, mixinPolicy string
	// fresh are the alerts a fault must raise anew: none of them may be
	// active (or pending) about a workload before its fault.
	fresh []string
	// series is the PromQL selector of a unit's error counter (%q is the
	// unit): Prometheus must hold it before a fault is measured, or the
	// conventional rule's increase() would need a second scrape (or, for a
	// counter that first appears at its final value, never fire).
	series string
	// primeScraped makes priming last until Prometheus holds series (for a
	// counter that only starts some time into the fault), not only until
	// the local path acted.
	primeScraped bool
	// prepare readies a fault on unit: inject causes it, revert ends it.
	prepare func(ctx context.Context, unit string) (inject, revert func() error, err error)
	// sustain readies the mixin path's fault, which lasts until revert: a
	// crash loop, or 5xx answers. revert says what happened (e.g. how many
	// failed exits).
	sustain func(ctx context.Context, unit string) (inject func() error, revert func() (string, error), err error)
	// load returns the answers the load generator saw (5xx and hang).
	load func() string

	results []result
	mixin   []mixinResult
}

// result is one measured fault: how long each path took to call its
// action (missed: it had not acted by the timeout), how much of that was
// before the alert started (detection; the rest is delivery to the
// action), and which of Vigil's default alerts the local path acted on.
type result struct {
	unit                    string
	local, conv             time.Duration
	localDetect, convDetect time.Duration
	localAlert              string // alertname (source) of the local call
	evidence                string // for an evidence alert: bad requests / requests at firing
	// localSince is, for an evidence alert, when its CUSUM last left zero
	// (the batch of outcomes with the first bad observations), after the
	// fault; missed otherwise.
	localSince time.Duration
}

// mixinResult is one fault of the mixin path, timed on that path and on
// the local one.
type mixinResult struct {
	unit               string
	local, mixin       time.Duration
	mixinDetect        time.Duration
	localAlert, detail string
}

// missed marks a path that did not act within the timeout.
const missed = time.Duration(-1)

func (e *environment) crashScenario() *scenario {
	sc := &scenario{name: "crash", what: "a process in faultbench-crash-N.service exits with code 3",
		localPolicy: policyLocalCrash, convPolicy: policyConvCrash, mixinPolicy: policyMixinCrash,
		fresh:  []string{defaultExited, alertCrash},
		series: `vigil_process_exits_total{outcome="error",unit=%q}`,
		units:  e.s.units("crash"), mixinUnits: e.s.mixinUnitNames("crash")}
	sc.prepare = e.prepareCrash
	sc.sustain = e.prepareCrashLoop
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

// kubeletBackoff is the wait before restart n (from 1) of a crash-looping
// container: kubelet's back-off, 10 s doubled at each restart up to 5
// minutes.
func kubeletBackoff(n int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < n && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// prepareCrashLoop readies a crash loop in unit, the mixin path's crash
// fault: inject makes the first process exit with code 3, and a new one
// is started and made to exit the same way after each of kubelet's
// back-offs until revert.
func (e *environment) prepareCrashLoop(ctx context.Context, unit string) (inject func() error, revert func() (string, error), err error) {
	first, firstRevert, err := e.prepareCrash(ctx, unit)
	if err != nil {
		return nil, nil, err
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	exits := 0
	started := false
	inject = func() error {
		if err := first(); err != nil {
			return err
		}
		started = true
		go func() {
			wait := firstRevert // waits for the exit and checks its code
			for n := 1; ; n++ {
				if err := wait(); err != nil {
					done <- err
					return
				}
				exits++
				select {
				case <-stop:
					done <- nil
					return
				case <-ctx.Done():
					done <- nil
					return
				case <-time.After(kubeletBackoff(n)):
				}
				crash, rev, err := e.prepareCrash(ctx, unit)
				if err != nil {
					done <- err
					return
				}
				if err := crash(); err != nil {
					done <- errors.Join(err, rev())
					return
				}
				wait = rev
			}
		}()
		return nil
	}
	revert = func() (string, error) {
		if !started {
			return "", firstRevert()
		}
		close(stop)
		err := <-done
		return fmt.Sprintf("%d failed exits", exits), err
	}
	return inject, revert, nil
}

// startWebServers starts a web server in each unit and a load generator
// on each (open loop: see loadOpen; else one request at a time); both stop
// at cleanup (the load first).
func (e *environment) startWebServers(r *testenv.Runner, units []string, openLoop bool) (map[string]*webServer, error) {
	web := map[string]*webServer{}
	r.Cleanup(func() {
		for _, w := range web {
			w.stop()
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r.Cleanup(func() { cancel(); wg.Wait() })
	for _, unit := range units {
		w, err := startWeb(e.cg, unit)
		if err != nil {
			return nil, err
		}
		web[unit] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			if openLoop {
				w.loadOpen(ctx, e.s.rps, openInFlight, openTimeout)
			} else {
				w.load(ctx, e.s.rps)
			}
		}()
	}
	return web, nil
}

func (e *environment) httpScenario(web map[string]*webServer) *scenario {
	sc := &scenario{name: "5xx", what: fmt.Sprintf("an HTTP server in faultbench-web-N.service under %g req/s starts answering 500", e.s.rps),
		localPolicy: policyLocal5xx, convPolicy: policyConv5xx, mixinPolicy: policyMixin5xx,
		fresh:  []string{default5xx, alert5xx},
		series: `vigil_http_requests_total{kind="server",status_class="5xx",unit=%q}`,
		units:  e.s.units("web"), mixinUnits: e.s.mixinUnitNames("web")}
	sc.prepare = func(_ context.Context, unit string) (inject, revert func() error, err error) {
		w := web[unit]
		return func() error { return w.set("5xx") }, func() error { return w.set("ok") }, nil
	}
	sc.sustain = func(ctx context.Context, unit string) (inject func() error, revert func() (string, error), err error) {
		inj, rev, err := sc.prepare(ctx, unit)
		return inj, func() (string, error) { return "", rev() }, err
	}
	sc.load = func() string {
		var ok, bad, failed int64
		for _, w := range web {
			ok, bad, failed = ok+w.ok.Load(), bad+w.errors5xx.Load(), failed+w.failed.Load()+w.timedOut.Load()
		}
		return fmt.Sprintf("load generator: %d answers 2xx, %d answers 5xx, %d failed requests", ok, bad, failed)
	}
	return sc
}

func (e *environment) hangScenario(web map[string]*webServer) *scenario {
	sc := &scenario{name: "hang", what: fmt.Sprintf("an HTTP server in faultbench-hang-N.service under %g req/s (open loop) reads each request and answers none", e.s.rps),
		localPolicy: policyLocalHang, convPolicy: policyConvHang,
		noMixin:      "no such alert in the mixin",
		fresh:        []string{defaultNotAnswering, alertHang},
		series:       `vigil_http_server_requests_unanswered_total{unit=%q}`,
		primeScraped: true,
		units:        e.s.units("hang")}
	sc.prepare = func(_ context.Context, unit string) (inject, revert func() error, err error) {
		w := web[unit]
		return func() error { return w.set("hang") }, func() error { return w.set("ok") }, nil
	}
	sc.load = func() string {
		var ok, bad, timedOut, failed, skipped int64
		for _, w := range web {
			ok, bad, timedOut = ok+w.ok.Load(), bad+w.errors5xx.Load(), timedOut+w.timedOut.Load()
			failed, skipped = failed+w.failed.Load(), skipped+w.skipped.Load()
		}
		return fmt.Sprintf("load generator (open loop, at most %d requests in flight per server, client timeout %s): %d answers 2xx, %d answers 5xx, "+
			"%d requests given up at the timeout, %d cut without an answer (the connections a hang held when it ended) or failed otherwise, %d sends skipped at the in-flight bound",
			openInFlight, openTimeout, ok, bad, timedOut, failed, skipped)
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
			"local", fmtDur(res.local), "local_alert", res.localAlert, "evidence", res.evidence, "conventional", fmtDur(res.conv))
	}
	return nil
}

// prime makes every workload's error counter exist, in Vigil and in
// Prometheus, before the first measured fault: one short, unmeasured fault
// each, ended as soon as the local path has acted on it (with
// sc.primeScraped, and Prometheus holds the counter). (A counter that
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
			if err == nil && sc.primeScraped {
				err = e.waitScraped(ctx, fmt.Sprintf(sc.series, unit), t0.Add(e.s.timeout))
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
	deadline := t0.Add(e.s.timeout)
	c, err := e.await(ctx, sc.localPolicy, unit, t0, deadline)
	if err != nil {
		return res, errors.Join(err, revert())
	}
	res.local, res.localDetect = c.took(t0)
	res.localAlert, res.evidence = c.alert(), c.evidence()
	res.localSince = missed
	if since := c.evidenceSince(); !since.IsZero() {
		res.localSince = since.Sub(t0)
	}
	c, err = e.await(ctx, sc.convPolicy, unit, t0, deadline)
	if err != nil {
		return res, errors.Join(err, revert())
	}
	res.conv, res.convDetect = c.took(t0)
	return res, revert()
}

// await returns policy's first call about unit at or after since, or a
// zero call when there was none by deadline; err only when ctx ended.
func (e *environment) await(ctx context.Context, policy, unit string, since, deadline time.Time) (call, error) {
	wctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := e.rc.first(wctx, policy, unit, since)
	switch {
	case err == nil:
		return c, nil
	case ctx.Err() != nil:
		return call{}, ctx.Err()
	}
	e.log.Warn("no action within the timeout", "policy", policy, "unit", unit, "timeout", deadline.Sub(since).Round(time.Second))
	return call{}, nil
}

// took is how long after t0 the call came and its alert started (missed
// for a zero call).
func (c call) took(t0 time.Time) (total, detect time.Duration) {
	if c.at.IsZero() {
		return missed, missed
	}
	return c.at.Sub(t0), c.startsAt.Sub(t0)
}

// alert is "alertname (source)", or "" for a zero call.
func (c call) alert() string {
	if c.at.IsZero() {
		return ""
	}
	return c.labels["alertname"] + " (" + c.source + ")"
}

// evidence is "bad/requests" from an evidence alert's annotations.
func (c call) evidence() string {
	if c.source != "evidence" {
		return ""
	}
	return c.annotations["evidence_bad_requests"] + "/" + c.annotations["evidence_requests"]
}

// evidenceSince is an evidence alert's evidence_since annotation (when its
// CUSUM last left zero), or the zero time.
func (c call) evidenceSince() time.Time {
	if c.source != "evidence" {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, c.annotations["evidence_since"])
	if err != nil {
		return time.Time{}
	}
	return t
}

// runMixin measures the mixin path on its own workloads, all at once: a
// fault that lasts (sustain) on each, timed on the mixin and the local
// paths. The workloads are new (no priming: a priming fault would leave
// the mixin rule pending for as long as its range), so Prometheus first
// sees each error counter when the fault creates it.
func (e *environment) runMixin(ctx context.Context, sc *scenario) error {
	forDur := e.s.mixinFor(sc.name)
	var wg sync.WaitGroup
	errs := make([]error, len(sc.mixinUnits))
	res := make([]mixinResult, len(sc.mixinUnits))
	for i, unit := range sc.mixinUnits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = e.mixinFault(ctx, sc, unit, forDur)
			if errs[i] == nil {
				e.log.Info("mixin fault measured", "scenario", sc.name, "unit", unit,
					"local", fmtDur(res[i].local), "mixin", fmtDur(res[i].mixin), "detail", res[i].detail)
			}
		}()
	}
	wg.Wait()
	sc.mixin = res
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s (mixin path): %w", sc.name, err)
	}
	return nil
}

func (e *environment) mixinFault(ctx context.Context, sc *scenario, unit string, forDur time.Duration) (mixinResult, error) {
	res := mixinResult{unit: unit}
	inject, revert, err := sc.sustain(ctx, unit)
	if err != nil {
		return res, err
	}
	end := func(err error) (mixinResult, error) {
		detail, rerr := revert()
		res.detail = detail
		return res, errors.Join(err, rerr)
	}
	select {
	case <-ctx.Done():
		return end(ctx.Err())
	case <-time.After(rand.N(e.s.promInterval)):
	}
	t0 := time.Now()
	if err := inject(); err != nil {
		return end(fmt.Errorf("inject: %w", err))
	}
	c, err := e.await(ctx, sc.localPolicy, unit, t0, t0.Add(e.s.timeout))
	if err != nil {
		return end(err)
	}
	res.local, _ = c.took(t0)
	res.localAlert = c.alert()
	// The mixin rule fires after its for:, once it has seen the fault
	// (a scrape or two, and the second exit of a crash loop: the first
	// one creates the counter); then Alertmanager and healing.
	c, err = e.await(ctx, sc.mixinPolicy, unit, t0, t0.Add(forDur+e.s.timeout+2*time.Minute))
	if err != nil {
		return end(err)
	}
	res.mixin, res.mixinDetect = c.took(t0)
	return end(nil)
}

// waitHealthy waits until none of the alerts a fault on unit must raise
// anew (sc.fresh) is active or pending about unit in Vigil (its own, and
// Alertmanager's as delivered) or in Prometheus, and Prometheus holds the
// unit's error counter.
func (e *environment) waitHealthy(parent context.Context, sc *scenario, unit string) error {
	ctx, cancel := context.WithTimeout(parent, 5*time.Minute)
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
			return fmt.Errorf("%s not healthy after 5m: %s", unit, why)
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
			if a.Labels["unit"] == unit && slices.Contains(sc.fresh, a.Labels["alertname"]) {
				return fmt.Sprintf("%s is %s at %s", a.Labels["alertname"], a.State, base), nil
			}
		}
	}
	sel := fmt.Sprintf(sc.series, unit)
	ok, err := e.scraped(ctx, sel)
	if err != nil {
		return "", err
	}
	if !ok {
		return "Prometheus has not scraped " + sel + " yet", nil
	}
	return "", nil
}

// scraped says whether Prometheus holds a series of the selector sel.
func (e *environment) scraped(ctx context.Context, sel string) (bool, error) {
	var q struct {
		Data struct {
			Result []any `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(ctx, e.promURL+"/api/v1/query?"+url.Values{"query": {sel}}.Encode(), &q); err != nil {
		return false, err
	}
	return len(q.Data.Result) > 0, nil
}

// waitScraped waits until Prometheus holds a series of sel, until deadline.
func (e *environment) waitScraped(ctx context.Context, sel string, deadline time.Time) error {
	for {
		ok, err := e.scraped(ctx, sel)
		if err == nil && ok {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no series %s in Prometheus by the timeout (last error: %v)", sel, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func fmtDur(d time.Duration) string {
	if d == missed {
		return "missed"
	}
	return d.Round(time.Millisecond).String()
}
