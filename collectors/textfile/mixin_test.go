package textfile

import (
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// node-mixin's NodeTextFileCollectorScrapeError works on Vigil: a real
// Prometheus scrapes the agent as job "node" with the mixin's rule as
// shipped; a broken *.prom file makes the alert fire, and fixing the file
// resolves it.
func TestNodeMixinTextFileAlert(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: starts Prometheus")
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "backup.prom"), []byte("backup_last_success_seconds{ 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vigil := startVigil(t, dir)
	u, err := url.Parse(vigil)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := filepath.Abs("testdata/node-mixin.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	prom := testenv.StartPrometheus(t, testenv.PrometheusOptions{
		ScrapeTargets: []string{u.Host}, ScrapeJobs: []string{"node"}, RuleFiles: []string{rules},
	})
	const firing = `ALERTS{alertname="NodeTextFileCollectorScrapeError",alertstate="firing",job="node"}`
	prom.WaitForQuery(t, time.Minute, firing, func(s []testenv.Sample) bool { return len(s) == 1 })

	if err := os.WriteFile(filepath.Join(dir, "backup.prom"), []byte("backup_last_success_seconds 1.7e9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	prom.WaitForQuery(t, time.Minute, `ALERTS{alertname="NodeTextFileCollectorScrapeError"}`, func(s []testenv.Sample) bool { return len(s) == 0 })
	prom.WaitForQuery(t, time.Minute, `backup_last_success_seconds{job="node"}`, func(s []testenv.Sample) bool { return len(s) == 1 && s[0].Value == 1.7e9 })
}
