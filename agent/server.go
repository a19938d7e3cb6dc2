package agent

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes registers the agent's own endpoints.
func (a *Agent) routes() {
	metrics := promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{
		EnableOpenMetrics:   true,
		ErrorHandling:       promhttp.ContinueOnError,
		ErrorLog:            slog.NewLogLogger(a.logger.With("component", "http").Handler(), slog.LevelWarn),
		MaxRequestsInFlight: a.cfg.Load().Server.MaxRequests,
		Registry:            a.reg,
	})
	a.mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(a.reg, metrics))
	a.mux.HandleFunc("GET /-/healthy", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "Vigil is Healthy.")
	})
	a.mux.HandleFunc("GET /-/ready", func(w http.ResponseWriter, _ *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "Vigil is not ready.", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "Vigil is Ready.")
	})
	// The lifecycle API, like Prometheus's --web.enable-lifecycle: off
	// unless enabled (404), and then only for the API token.
	if a.cfg.Load().Server.EnableLifecycle {
		a.mux.HandleFunc("POST /-/reload", a.serveReload)
	}
	a.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>Vigil</title></head><body><h1>Vigil</h1>
<ul><li><a href="/metrics">/metrics</a></li><li><a href="/-/healthy">/-/healthy</a></li><li><a href="/-/ready">/-/ready</a></li></ul>
</body></html>`)
	})
}
