// Command testenv-up starts Vigil's whole test environment — a Kubernetes
// control plane with two kwok nodes, Prometheus, Alertmanager,
// node_exporter, VictoriaLogs, an OpenTelemetry Collector and HAProxy — and
// keeps it running until it gets SIGTERM or SIGINT, for debugging by hand.
//
// It writes the servers' endpoints as shell assignments to STATE/env, then
// creates STATE/ready; logs and data live under STATE. hack/testenv/up.sh and
// down.sh (make testenv-up / testenv-down) run it in the background.
//
// Usage: testenv-up -state DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func main() {
	state := flag.String("state", "", "state folder for data, logs and the env file (required)")
	flag.Parse()
	if *state == "" {
		fmt.Fprintln(os.Stderr, "testenv-up: -state is required")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	r := &runner{ctx: ctx, dir: *state, log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	code := r.run(func() {
		up(r)
		r.log.Info("test environment up; waiting for SIGTERM", "state", r.dir)
		<-ctx.Done()
		r.log.Info("stopping test environment")
	})
	os.Exit(code)
}

// up starts every server and writes the env and ready files.
func up(r *runner) {
	env := map[string]string{}
	k := testenv.StartKubernetes(r)
	env["KUBECONFIG"] = k.Kubeconfig
	env["VIGIL_KUBE_SERVER"] = k.Server
	env["VIGIL_KUBE_NODES"] = strings.Join(k.Nodes, ",")

	am := testenv.StartAlertmanager(r, "route:\n  receiver: none\n  group_wait: 1s\nreceivers:\n  - name: none\n")
	env["VIGIL_ALERTMANAGER_URL"] = am.URL

	ne := testenv.StartNodeExporter(r)
	env["VIGIL_NODE_EXPORTER_URL"] = ne.URL

	prom := testenv.StartPrometheus(r, testenv.PrometheusOptions{
		ScrapeTargets:       []string{strings.TrimPrefix(ne.URL, "http://")},
		ScrapeJobs:          []string{"node"},
		AlertmanagerURLs:    []string{am.URL},
		RemoteWriteReceiver: true,
	})
	env["VIGIL_PROMETHEUS_URL"] = prom.URL

	vl := testenv.StartVictoriaLogs(r)
	env["VIGIL_VICTORIALOGS_URL"] = vl.URL
	env["VIGIL_LOKI_PUSH_URL"] = vl.LokiPushURL()

	col := testenv.StartOTelCollector(r)
	env["VIGIL_OTLP_GRPC_ENDPOINT"] = col.GRPCEndpoint
	env["VIGIL_OTLP_HTTP_URL"] = col.HTTPURL
	env["VIGIL_OTLP_TRACES_FILE"] = col.TracesFile
	env["VIGIL_OTLP_METRICS_FILE"] = col.MetricsFile
	env["VIGIL_OTLP_LOGS_FILE"] = col.LogsFile

	hp := testenv.StartHAProxy(r, strings.TrimPrefix(prom.URL, "http://"))
	env["VIGIL_HAPROXY_URL"] = hp.URL
	env["VIGIL_HAPROXY_SOCKET"] = hp.AdminSocket

	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, strconv.Quote(env[k]))
	}
	if err := os.WriteFile(filepath.Join(r.dir, "env"), []byte(b.String()), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(r.dir, "ready"), nil, 0o644); err != nil {
		r.Fatalf("%v", err)
	}
}

// runner implements testenv.TB outside of a test: cleanups run when run's
// function returns or Fatalf is called, and temp folders live under the
// state folder.
type runner struct {
	ctx      context.Context
	dir      string
	log      *slog.Logger
	cleanups []func()
	failed   bool
	n        int
}

// fatal unwinds run's function after Fatalf or Skipf.
type fatal struct{}

// run calls fn, then the cleanups in reverse order, and returns the exit code.
func (r *runner) run(fn func()) (code int) {
	defer func() {
		if v := recover(); v != nil {
			if _, ok := v.(fatal); !ok {
				panic(v)
			}
			r.failed = true
		}
		for i := len(r.cleanups) - 1; i >= 0; i-- {
			r.cleanups[i]()
		}
		if r.failed {
			code = 1
		}
	}()
	fn()
	return 0
}

func (r *runner) Helper()      {}
func (r *runner) Name() string { return "testenv-up" }
func (r *runner) Failed() bool { return r.failed }

func (r *runner) Context() context.Context { return r.ctx }

func (r *runner) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

func (r *runner) Logf(format string, args ...any) { r.log.Info(fmt.Sprintf(format, args...)) }

func (r *runner) Fatalf(format string, args ...any) {
	r.log.Error(fmt.Sprintf(format, args...))
	r.failed = true
	panic(fatal{})
}

func (r *runner) Skipf(format string, args ...any) { r.Fatalf(format, args...) }

// LogDir is where every server's log goes: STATE/logs.
func (r *runner) LogDir() string { return filepath.Join(r.dir, "logs") }

// TempDir returns a new numbered folder under the state folder; unlike a
// test's, it is kept after the run for inspection.
func (r *runner) TempDir() string {
	r.n++
	d := filepath.Join(r.dir, fmt.Sprintf("%03d", r.n))
	if err := os.MkdirAll(d, 0o755); err != nil {
		r.Fatalf("%v", err)
	}
	return d
}
