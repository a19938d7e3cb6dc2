package healing

import (
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/rest"

	"github.com/vigil-agent/vigil/internal/kubeclient"
)

// hungAPIServer accepts connections and never answers, until release
// closes everything (the client then sees resets and refusals).
type hungAPIServer struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	done  chan struct{}
}

func startHungAPIServer(t *testing.T) *hungAPIServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &hungAPIServer{l: l, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(s.release)
	return s
}

func (s *hungAPIServer) release() {
	s.l.Close()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

// An alert that needs Kubernetes labels does not hold up the stream while
// the API server hangs: a later alert is matched and acted on first. When
// the lookup fails, the alert is matched without the extra labels, the
// error is logged and counted.
func TestEnrichmentNeverBlocksAndFailsSoft(t *testing.T) {
	api := startHungAPIServer(t)
	kube, err := kubeclient.New(&rest.Config{Host: "http://" + api.l.Addr().String(), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := startEngine(t, `
dry_run: false
kubernetes: {enrich_timeout: 2m, retries: 1}
policies:
  routes:`+touchPolicy, func(o *Options) { o.Kube = kube })

	// Needs the owner of shop/cart-1: the lookup hangs.
	slow := map[string]string{"alertname": "Broken", "target": "slow", "namespace": "shop", "pod": "cart-1"}
	h.stream.Publish(alertFiring(slow))
	// Needs nothing: acted on while the first one waits.
	h.fire(map[string]string{"alertname": "Broken", "target": "fast"})
	recs := h.waitRecords(1)
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "fast" || len(recs) != 1 {
		t.Fatalf("acted %q; records:%s", got, dump(recs))
	}
	if got := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("owner", "error")); got != 0 {
		t.Fatalf("enrichment errors before the API server failed: %v", got)
	}

	// The API server fails: the slow alert goes on without owner labels.
	api.release()
	recs = h.waitRecords(2)
	h.settle()
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "fast,slow" {
		t.Fatalf("acted %q; records:%s", got, dump(recs))
	}
	r := recs[1]
	if r.Result != ResultSuccess || r.AlertLabels["target"] != "slow" {
		t.Fatalf("record:%s", dump(recs))
	}
	if _, ok := r.AlertLabels[LabelOwnerName]; ok {
		t.Fatalf("owner label from a failed lookup: %v", r.AlertLabels)
	}
	if got := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("owner", "error")); got != 1 {
		t.Fatalf("vigil_healing_enrichments_total{lookup=owner,result=error} = %v, want 1", got)
	}
	n, err := testutil.GatherAndCount(h.reg, "vigil_healing_enrichments_total")
	if err != nil || n != 1 {
		t.Fatalf("vigil_healing_enrichments_total series: %d, %v", n, err)
	}
}

// A firing alert that resolves while its labels are being looked up
// starts no runbook.
func TestEnrichmentResolvedWhilePendingDoesNotAct(t *testing.T) {
	api := startHungAPIServer(t)
	kube, err := kubeclient.New(&rest.Config{Host: "http://" + api.l.Addr().String(), Timeout: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := startEngine(t, `
dry_run: false
kubernetes: {enrich_timeout: 2m, retries: 0}
policies:
  routes:`+touchPolicy, func(o *Options) { o.Kube = kube })
	labels := map[string]string{"alertname": "Broken", "target": "gone", "namespace": "shop", "pod": "cart-1"}
	h.stream.Publish(alertFiring(labels))
	h.resolve(labels)
	api.release()
	h.fire(map[string]string{"alertname": "Broken", "target": "after"})
	// Wait until all three alerts are dispatched (the first one once its
	// lookup failed).
	deadline := time.Now().Add(60 * time.Second)
	for h.e.handled.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the lookup did not end")
		}
		time.Sleep(10 * time.Millisecond)
	}
	recs := h.settle()
	if got := testutil.ToFloat64(h.e.m.enrichments.WithLabelValues("owner", "error")); got != 1 {
		t.Fatalf("lookup errors %v, want 1", got)
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "after" {
		t.Fatalf("acted %q; records:%s", got, dump(recs))
	}
}

func TestEnrichmentConfigValidation(t *testing.T) {
	cfg := NewConfig()
	if cfg.Kubernetes.EnrichTimeout != 2*time.Second || cfg.Kubernetes.EnrichCacheTTL != 30*time.Second {
		t.Fatalf("defaults: %+v", cfg.Kubernetes)
	}
	cfg.Kubernetes.EnrichTimeout, cfg.Kubernetes.EnrichCacheTTL = 0, -time.Second
	err := cfg.Validate()
	for _, want := range []string{"kubernetes.enrich_timeout: must be positive", "kubernetes.enrich_cache_ttl: must not be negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want %q", err, want)
		}
	}
}
