package agent_test

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/agent/agenttest"
)

// The README's table of the agent's own metrics matches what a running
// agent exposes: every vigil_* family of the agent itself (build info,
// collectors, components, reloads, the HTTP listener) is listed, and every
// listed one is exposed (vigil_capabilities and vigil_no_new_privs only by
// `vigil run`, which drops capabilities).
func TestReadmeMetricsTable(t *testing.T) {
	url := agenttest.Start(t, "server:\n  listen_address: 127.0.0.1:0\n")
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exposed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (vigil_[a-z_]+) `).FindAllStringSubmatch(string(body), -1) {
		exposed[m[1]] = true
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, _ := strings.Cut(string(readme), "## Metrics\n")
	table, _, _ = strings.Cut(table, "\n## ")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile("`(vigil_[a-z_]+)`").FindAllStringSubmatch(table, -1) {
		listed[m[1]] = true
	}
	// The HTTP listener's own families, not the eBPF collector's
	// vigil_http_requests_total and friends about the host's traffic,
	// which appear whenever something on this machine speaks HTTP.
	own := regexp.MustCompile(`^vigil_(build_info|collector_|component_|config_|http_(connection|idle_connections_|requests_rejected_))`)
	for name := range exposed {
		if own.MatchString(name) && !listed[name] {
			t.Errorf("the agent exposes %s; README's metrics table lacks it", name)
		}
	}
	runOnly := map[string]bool{"vigil_capabilities": true, "vigil_no_new_privs": true}
	for name := range listed {
		if !exposed[name] && !runOnly[name] {
			t.Errorf("README lists %s; a running agent does not expose it", name)
		}
	}
	if len(listed) < 10 {
		t.Fatalf("found only %v in README's metrics table", listed)
	}
}
