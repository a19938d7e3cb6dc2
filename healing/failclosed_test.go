package healing

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// With the API server unreachable, Kubernetes actions fail closed after
// bounded retries with a clear record, and node-local actions keep
// working.
func TestKubernetesUnreachableFailsClosedLocalActionsWork(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	kc, err := kubeclient.New(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	h := startEngine(t, `
dry_run: false
kubernetes: {retries: 2}
policies:
  routes:
    - name: restart
      matchers: ['alertname="CrashLoop"']
      steps:
        - action: rollout_restart
          params: {namespace: "{{.namespace}}", name: "{{.deployment}}"}
    - name: local
      matchers: ['alertname="Broken"']
      steps:
        - action: exec
          params: {command: ["/bin/sh", "-c", "echo local >> $DIR/acted"]}
`, func(o *Options) { o.Kube = kc })
	h.fire(map[string]string{"alertname": "CrashLoop", "namespace": "n", "deployment": "d"})
	recs := h.settle()
	if len(recs) != 1 || recs[0].Result != ResultFailed || !strings.Contains(recs[0].Reason, "kubernetes API unreachable after 3 attempts, failing closed") ||
		!strings.Contains(recs[0].Reason, "connection refused") {
		t.Fatalf("records:%s", dump(recs))
	}
	h.fire(map[string]string{"alertname": "Broken"})
	recs = h.settle()
	if recs[1].Result != ResultSuccess || strings.Join(lines(t, filepath.Join(h.dir, "acted")), ",") != "local" {
		t.Fatalf("local action:%s", dump(recs))
	}
}

// Without any Kubernetes configuration (a plain host), a Kubernetes action
// is a failed record and does not stop the runbook's next step.
func TestNoKubernetesOnPlainHost(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  name: p
  steps:
    - action: cordon
      params: {node: "{{.node}}", nodes: ["n*"]}
    - action: exec
      params: {command: ["/bin/true"]}
`)
	h.fire(map[string]string{"alertname": "X", "node": "n1"})
	recs := h.settle()
	if results(recs) != "failed success" || !strings.Contains(recs[0].Reason, "kubernetes is not configured") {
		t.Fatalf("records:%s", dump(recs))
	}
}
