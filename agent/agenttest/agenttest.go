// Package agenttest runs a real, in-process Vigil agent for other
// packages' tests (the differential tests against node_exporter, the
// node-mixin alert test), configured from YAML as a user configures it.
package agenttest

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/agent"
	"github.com/vigil-agent/vigil/internal/testenv"
)

// Start loads configYAML (its server.listen_address should be
// 127.0.0.1:0), runs the agent until the test ends and returns its
// /metrics URL once that answers. Only the parts registered in the test
// binary exist: import them (or package components).
func Start(t testing.TB, configYAML string) string {
	t.Helper()
	cfg, err := agent.Load(t.Name(), []byte(configYAML))
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan error, 1)
	go func() { exited <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-exited; err != nil {
			t.Errorf("agent: %v", err)
		}
	})
	url := "http://" + a.Addr() + "/metrics"
	testenv.Eventually(t, time.Minute, 50*time.Millisecond, "the agent answers "+url, func(ctx context.Context) error {
		select {
		case err := <-exited:
			t.Fatalf("the agent exited before it was ready: %v", err)
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	})
	return url
}
