package testenv

import (
	"context"
	"encoding/json"
	"path/filepath"
)

// Alertmanager is an Alertmanager (Debian's prometheus-alertmanager, 0.25)
// started by [StartAlertmanager], without clustering.
type Alertmanager struct {
	// URL is the base URL, http://127.0.0.1:<port>.
	URL string
	// ConfigFile is the path of its configuration.
	ConfigFile string
	// Process is the server process.
	*Process
}

// StartAlertmanager starts Alertmanager with the given alertmanager.yml
// content and waits until it is ready. For quick delivery in tests use
// group_wait: 1s and a short group_interval in the route.
func StartAlertmanager(t TB, configYAML string) *Alertmanager {
	t.Helper()
	bin := Binary(t, "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := writeFile(t, dir, "alertmanager.yml", configYAML)
	port := FreePort(t)
	a := &Alertmanager{URL: "http://" + hostPort(port), ConfigFile: cfg}
	a.Process = StartProcess(t, Command{
		Name: "alertmanager",
		Path: bin,
		Args: []string{
			"--config.file=" + cfg,
			"--storage.path=" + filepath.Join(dir, "data"),
			"--web.listen-address=" + hostPort(port),
			"--cluster.listen-address=",
			"--log.level=info",
		},
		Ready: HTTPReady(a.URL + "/-/ready"),
	})
	return a
}

// Alerts returns the alerts Alertmanager holds, as decoded JSON objects of
// its v2 API (labels, annotations, status, …).
func (a *Alertmanager) Alerts(ctx context.Context) ([]map[string]any, error) {
	body, err := httpGet(ctx, a.URL+"/api/v2/alerts")
	if err != nil {
		return nil, err
	}
	var alerts []map[string]any
	if err := json.Unmarshal(body, &alerts); err != nil {
		return nil, err
	}
	return alerts, nil
}
