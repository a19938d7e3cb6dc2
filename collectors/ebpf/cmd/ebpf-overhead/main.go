//go:build linux

// Command ebpf-overhead measures what Vigil's eBPF programs cost the
// workloads they watch: it times a loopback connect loop and a keep-alive
// HTTP loop with the programs detached and attached, alternating rounds in
// one run, and reports the ratio, the events consumed per second and the
// events lost. hack/bench/ebpf.sh runs it for `make bench`; it needs root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumertest"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/ebpf"
	"github.com/vigil-agent/vigil/internal/event"
)

func main() {
	conns := flag.Int("connections", 20000, "connections per round of the connect loop")
	reqs := flag.Int("requests", 20000, "requests per round of the keep-alive HTTP loop")
	rounds := flag.Int("rounds", 3, "rounds per mode; the median is reported")
	flag.BoolVar(&bpfStats, "bpf-stats", false, "enable the kernel's BPF run-time statistics and report each program's cost (adds a little overhead)")
	flag.Parse()
	if err := run(*conns, *reqs, *rounds); err != nil {
		fmt.Fprintln(os.Stderr, "ebpf-overhead:", err)
		os.Exit(1)
	}
}

var bpfStats bool

// agent is the eBPF collector as the agent runs it.
type agent struct {
	c   collectors.Collector
	reg *prometheus.Registry
}

type adapter struct{ c collectors.Collector }

func (a adapter) Describe(chan<- *prometheus.Desc) {}
func (a adapter) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Update(context.Background(), ch)
}

func startAgent() (*agent, error) {
	f, ok := collectors.Lookup(ebpf.Name)
	if !ok {
		return nil, fmt.Errorf("collector %s not registered", ebpf.Name)
	}
	sub := event.NewBus()
	cfg := f.NewConfig().(*ebpf.Config)
	cfg.BPFStats = bpfStats
	c, err := f.New(cfg, collectors.Settings{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Events: sub,
		Traces: map[bool]consumer.Traces{true: consumertest.NewNop()}[os.Getenv("X_SPANS") != ""], Paths: collectors.Paths{ProcFS: "/proc", SysFS: "/sys", RootFS: "/"},
	})
	if err != nil {
		return nil, err
	}
	if err := c.(collectors.Lifecycle).Start(context.Background()); err != nil {
		return nil, err
	}
	a := &agent{c: c, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(adapter{c})
	if n := a.sum("vigil_ebpf_program_loaded"); n == 0 {
		_ = a.stop()
		return nil, fmt.Errorf("no eBPF program loaded (root needed)")
	}
	return a, nil
}

func (a *agent) stop() error { return a.c.(collectors.Lifecycle).Shutdown(context.Background()) }

// sum adds every sample of the named metric.
func (a *agent) sum(name string) float64 {
	mfs, _ := a.reg.Gather()
	s := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			s += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return s
}

// addStats adds each program's run time and run count.
func (a *agent) addStats(runTime, runs map[string]float64) {
	mfs, _ := a.reg.Gather()
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			prog := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "program" {
					prog = l.GetValue()
				}
			}
			switch mf.GetName() {
			case "vigil_ebpf_program_run_seconds_total":
				runTime[prog] += m.GetCounter().GetValue()
			case "vigil_ebpf_program_runs_total":
				runs[prog] += m.GetCounter().GetValue()
			}
		}
	}
}

// connectLoop opens and closes n loopback connections one after another.
func connectLoop(addr string, n int) (time.Duration, error) {
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp4", addr)
		if err != nil {
			return 0, err
		}
		c.Close()
	}
	return time.Since(start), nil
}

// httpLoop sends n requests over one keep-alive connection.
func httpLoop(url string, n int) (time.Duration, error) {
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer cl.CloseIdleConnections()
	start := time.Now()
	for range n {
		resp, err := cl.Get(url)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return time.Since(start), nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func run(conns, reqs, rounds int) error {
	// Servers: a TCP listener that accepts and closes, and an HTTP server.
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	hl, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})}
	go func() { _ = srv.Serve(hl) }()
	defer srv.Close()
	url := "http://" + hl.Addr().String() + "/api/items/42"

	type result struct{ without, with []time.Duration }
	var tcp, web result
	var events, lost float64
	var eventTime time.Duration
	runTime, runs := map[string]float64{}, map[string]float64{}
	// Warm up both paths once.
	if _, err := connectLoop(ln.Addr().String(), 1000); err != nil {
		return err
	}
	if _, err := httpLoop(url, 1000); err != nil {
		return err
	}
	for range rounds {
		d, err := connectLoop(ln.Addr().String(), conns)
		if err != nil {
			return err
		}
		tcp.without = append(tcp.without, d)
		if d, err = httpLoop(url, reqs); err != nil {
			return err
		}
		web.without = append(web.without, d)

		a, err := startAgent()
		if err != nil {
			return err
		}
		before := a.sum("vigil_ebpf_events_total")
		t0 := time.Now()
		if d, err = connectLoop(ln.Addr().String(), conns); err != nil {
			return err
		}
		tcp.with = append(tcp.with, d)
		if d, err = httpLoop(url, reqs); err != nil {
			return err
		}
		web.with = append(web.with, d)
		// Let the reader drain what was submitted without a wake-up.
		time.Sleep(300 * time.Millisecond)
		events += a.sum("vigil_ebpf_events_total") - before
		eventTime += time.Since(t0)
		lost += a.sum("vigil_ebpf_events_lost_total")
		if bpfStats {
			a.addStats(runTime, runs)
		}
		if err := a.stop(); err != nil {
			return err
		}
	}

	fmt.Printf("%-34s %12s %12s %8s\n", "scenario (median of "+fmt.Sprint(rounds)+" rounds)", "without", "with eBPF", "ratio")
	row := func(name string, r result) {
		w, x := median(r.without), median(r.with)
		fmt.Printf("%-34s %12s %12s %8.3f\n", name, w.Round(time.Millisecond), x.Round(time.Millisecond), float64(x)/float64(w))
	}
	row(fmt.Sprintf("connect loop, %d connections", conns), tcp)
	row(fmt.Sprintf("keep-alive HTTP, %d requests", reqs), web)
	fmt.Printf("%-34s %12.0f events/s over %d rounds (%.0f events), lost %.0f\n", "events consumed", events/eventTime.Seconds(), rounds, events, lost)
	if bpfStats {
		total := 0.0
		for _, p := range slices.Sorted(maps.Keys(runTime)) {
			if runs[p] > 0 {
				fmt.Printf("  kernel: %-22s %10.0f runs %8.0f ns/run %8.3f s total\n", p, runs[p], runTime[p]/runs[p]*1e9, runTime[p])
			}
			total += runTime[p]
		}
		fmt.Printf("  kernel: all programs %.3f s over %s of attached rounds\n", total, eventTime.Round(time.Millisecond))
	}
	fmt.Println(strings.Repeat("-", 70))
	fmt.Println("goal: ratio <= 1.03 with zero events lost; wall time on a shared machine is noisy, compare ratios")
	return nil
}
