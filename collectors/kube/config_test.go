package kube_test

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/agent"
	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/collectors/kube"
	"github.com/vigil-agent/vigil/component"
)

func TestConfigValidate(t *testing.T) {
	c := kube.NewConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	c = &kube.Config{Kubeconfig: "/nonexistent/kubeconfig", Namespaces: []string{"a", "", "a"},
		SyncTimeout: 0, ResyncPeriod: -time.Second, QPS: 0, Burst: 0}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken configuration")
	}
	if _, err := c.Check(); err == nil || !strings.Contains(err.Error(), "kubeconfig: stat /nonexistent/kubeconfig") {
		t.Errorf("Check: %v", err)
	}
	for _, want := range []string{"namespaces[1]: must not be empty",
		`namespaces[2]: "a" is listed twice`, "sync_timeout: must be positive", "resync_period: must not be negative",
		"qps: must be positive", "burst: must be at least 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestConfigInAgentFile(t *testing.T) {
	// A typo in the section is refused with its file position and path.
	_, err := agent.Load("vigil.yaml", []byte("global:\n  node_name: n1\ncollectors:\n  kube:\n    sync_timout: 5s\n"))
	if err == nil || !strings.Contains(err.Error(), "vigil.yaml:5:5") || !strings.Contains(err.Error(), "sync_timout") {
		t.Fatalf("typo not reported with its position: %v", err)
	}
	// Giving the section turns the collector on even outside a cluster.
	cfg, err := agent.Load("vigil.yaml", []byte("global:\n  node_name: n1\ncollectors:\n  kube:\n    namespaces: [shop]\n"))
	if err != nil {
		t.Fatal(err)
	}
	sec := cfg.Collectors["kube"]
	if !sec.Enabled || sec.Config.(*kube.Config).Namespaces[0] != "shop" {
		t.Fatalf("section not applied: %+v", sec)
	}
}

func TestDefaultEnabledOnlyInCluster(t *testing.T) {
	f, ok := component.Lookup(component.KindCollector, "kube")
	if !ok {
		t.Fatal("kube collector not registered")
	}
	if f.DefaultEnabled != kube.InCluster() {
		t.Fatalf("DefaultEnabled = %v, in cluster = %v", f.DefaultEnabled, kube.InCluster())
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if kube.InCluster() {
		t.Fatal("InCluster with KUBERNETES_SERVICE_HOST empty")
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
	if !kube.InCluster() {
		t.Fatal("not InCluster with KUBERNETES_SERVICE_HOST set")
	}
}

func TestNewNeedsNodeName(t *testing.T) {
	_, err := kube.New(kube.NewConfig(), collectors.Settings{})
	if err == nil || !strings.Contains(err.Error(), "node name is unknown") {
		t.Fatalf("New without a node name: %v", err)
	}
	c, err := kube.New(&kube.Config{NodeName: "n2", SyncTimeout: time.Second, QPS: 1, Burst: 1}, collectors.Settings{NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	if c.NodeName() != "n2" {
		t.Fatalf("node_name did not override the agent's node name: %s", c.NodeName())
	}
	// Shutdown before Start is safe; Start outside a cluster without a
	// kubeconfig says why it cannot run.
	if err := c.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	if err := c.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "collectors.kube.kubeconfig is empty") {
		t.Fatalf("Start outside a cluster: %v", err)
	}
}
