// Command testenv-up starts Vigil's whole test environment — a Kubernetes
// control plane with a real node (kubelet, containerd, kube-proxy) and two
// kwok nodes, Prometheus, Alertmanager,
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
	r := &testenv.Runner{Ctx: ctx, Dir: *state, Log: slog.New(slog.NewTextHandler(os.Stderr, nil)), Label: "testenv-up", LogLevel: slog.LevelInfo}
	code := r.Run(func() {
		up(r)
		r.Log.Info("test environment up; waiting for SIGTERM", "state", r.Dir)
		<-ctx.Done()
		r.Log.Info("stopping test environment")
	})
	os.Exit(code)
}

// up starts every server and writes the env and ready files.
func up(r *testenv.Runner) {
	env := map[string]string{}
	k := testenv.StartKubernetesWith(r, testenv.KubeOptions{RealNode: true, Nodes: 2})
	env["KUBECONFIG"] = k.Kubeconfig
	env["VIGIL_KUBE_SERVER"] = k.Server
	env["VIGIL_KUBE_NODES"] = strings.Join(k.Nodes, ",")
	env["VIGIL_KUBECTL"] = testenv.Binary(r, "kubectl")
	n := k.Node
	env["VIGIL_NODE_NAME"] = n.Name
	env["VIGIL_NODE_IP"] = n.IP
	env["VIGIL_NODE_HOST_IP"] = n.HostIP
	env["VIGIL_NODE_POD_CIDR"] = n.PodCIDR
	env["VIGIL_NODE_DIR"] = n.Dir
	env["VIGIL_NODE_CTR"] = fmt.Sprintf("%s --address %s -n k8s.io", testenv.Binary(r, "ctr"), n.Socket())

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
	if err := os.WriteFile(filepath.Join(r.Dir, "env"), []byte(b.String()), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	if err := os.WriteFile(filepath.Join(r.Dir, "ready"), nil, 0o644); err != nil {
		r.Fatalf("%v", err)
	}
}
