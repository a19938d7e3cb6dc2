package testenv

// NodeExporter is a Prometheus node_exporter (Debian's
// prometheus-node-exporter) started by [StartNodeExporter].
type NodeExporter struct {
	// URL is the base URL, http://127.0.0.1:<port>; metrics are at /metrics.
	URL string
	// Process is the exporter process.
	*Process
}

// StartNodeExporter starts node_exporter with args (for example
// "--collector.disable-defaults", "--collector.meminfo",
// "--path.procfs=/proc") and waits until /metrics answers.
func StartNodeExporter(t TB, args ...string) *NodeExporter {
	t.Helper()
	bin := Binary(t, "prometheus-node-exporter")
	port := FreePort(t)
	n := &NodeExporter{URL: "http://" + hostPort(port)}
	n.Process = StartProcess(t, Command{
		Name:  "node-exporter",
		Path:  bin,
		Args:  append([]string{"--web.listen-address=" + hostPort(port)}, args...),
		Ready: HTTPReady(n.URL + "/metrics"),
	})
	return n
}
