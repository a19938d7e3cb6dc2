package agent

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/time/rate"

	"github.com/vigil-agent/vigil/component"
)

// The main listener's protection. TLS, client certificates and basic auth
// come from exporter-toolkit's web configuration file, as for Prometheus
// and its exporters. On top of it, one bearer token — the healing API's,
// healing.auth_token_file — guards POST /-/reload (served only with
// server.enable_lifecycle) and is accepted, or with
// server.require_api_token required, by every /api/v1/* read endpoint.

// validate checks the server section; tokenFile is the API token file
// (healing.auth_token_file). Problems name their field path.
func (s ServerConfig) validate(tokenFile string) error {
	var errs []error
	if s.ReadTimeout <= 0 {
		errs = append(errs, fmt.Errorf("server.read_timeout: must be positive, got %s", s.ReadTimeout))
	}
	if s.IdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("server.idle_timeout: must be positive, got %s", s.IdleTimeout))
	}
	if s.MaxConnections < 2 {
		errs = append(errs, fmt.Errorf("server.max_connections: must be at least 2, got %d", s.MaxConnections))
	}
	if s.MaxEventStreams < 0 {
		errs = append(errs, fmt.Errorf("server.max_event_streams: must not be negative, got %d", s.MaxEventStreams))
	}
	if s.WebConfigFile != "" {
		if err := web.Validate(s.WebConfigFile); err != nil {
			errs = append(errs, fmt.Errorf("server.web_config_file: %w", err))
		}
	}
	if tokenFile == "" {
		if s.EnableLifecycle {
			errs = append(errs, errors.New("server.enable_lifecycle: needs the API token, healing.auth_token_file"))
		}
		if s.RequireAPIToken {
			errs = append(errs, errors.New("server.require_api_token: needs the API token, healing.auth_token_file"))
		}
	}
	return errors.Join(errs...)
}

// apiTokenFile is the file holding the API token, named by the section
// whose configuration is a component.APITokenSource
// (healing.auth_token_file).
func apiTokenFile(c *Config) string {
	for _, f := range component.Factories(component.KindSection) {
		if ts, ok := c.Sections[f.Name].(component.APITokenSource); ok && ts.APITokenFile() != "" {
			return ts.APITokenFile()
		}
	}
	return ""
}

// pathOf is the path of a ServeMux pattern ("POST /a/b" -> "/a/b").
func pathOf(pattern string) string {
	if _, p, ok := strings.Cut(pattern, " "); ok {
		return p
	}
	return pattern
}

// tokenResult is what a request's credentials amount to.
type tokenResult int

const (
	tokenNone  tokenResult = iota // no bearer token sent
	tokenValid                    // the API token
	tokenWrong                    // a bearer token that is not the API token
	tokenUnset                    // no API token configured or readable
)

// checkToken compares the request's bearer token with the API token, read
// from its file on every request so that a rotated token takes effect at
// once (as the healing endpoints do).
func (a *Agent) checkToken(r *http.Request) tokenResult {
	got, sent := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	file := apiTokenFile(a.cfg.Load())
	if file == "" {
		if sent {
			return tokenUnset
		}
		return tokenNone
	}
	b, err := os.ReadFile(file)
	want := strings.TrimSpace(string(b))
	if err != nil || want == "" {
		a.rejectLog.Do(func() {
			a.logger.Error("cannot read the API token (healing.auth_token_file); refusing token-protected requests", "file", file, "err", err)
		})
		return tokenUnset
	}
	if !sent {
		return tokenNone
	}
	if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(want)) != 1 {
		return tokenWrong
	}
	return tokenValid
}

// webGuard is the state of the listener's protection for one run.
type webGuard struct {
	streams  atomic.Int64
	rejected *prometheus.CounterVec
}

func newWebGuard(reg prometheus.Registerer) *webGuard {
	g := &webGuard{rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_http_requests_rejected_total",
		Help: "Requests the agent's listener refused, by reason: unauthorized (401, missing or wrong API token), forbidden (403, no API token configured), too_many_streams (503, server.max_event_streams).",
	}, []string{"reason"})}
	for _, r := range []string{"unauthorized", "forbidden", "too_many_streams"} {
		g.rejected.WithLabelValues(r)
	}
	reg.MustRegister(g.rejected)
	return g
}

// reject answers a refused request, counts it and logs it at most once a
// second (a flood of refused calls must not become a flood of log lines;
// the counter has every one).
func (a *Agent) reject(w http.ResponseWriter, r *http.Request, code int, reason, msg string) {
	a.guard.rejected.WithLabelValues(reason).Inc()
	a.rejectLog.Do(func() {
		a.logger.Warn("request refused (logged at most once a second; vigil_http_requests_rejected_total counts all)",
			"reason", reason, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
	})
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
	}
	if code == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "10")
	}
	http.Error(w, msg, code)
}

// protect wraps the mux: API token on /api/v1/* (the Alertmanager webhook
// keeps its own token) and the bound on event streams.
func (a *Agent) protect(next http.Handler) http.Handler {
	srv := a.cfg.Load().Server
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, own := a.ownAuth.Load(r.URL.Path); !strings.HasPrefix(r.URL.Path, "/api/v1/") || own {
			next.ServeHTTP(w, r)
			return
		}
		switch a.checkToken(r) {
		case tokenWrong:
			a.reject(w, r, http.StatusUnauthorized, "unauthorized", "unauthorized: wrong API token")
			return
		case tokenUnset:
			// A bearer token that cannot be checked is refused; without
			// one, reads are open unless the token is required.
			if srv.RequireAPIToken || strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
				a.reject(w, r, http.StatusForbidden, "forbidden", "the API token (healing.auth_token_file) is not configured or cannot be read; refusing")
				return
			}
		case tokenNone:
			if srv.RequireAPIToken {
				a.reject(w, r, http.StatusUnauthorized, "unauthorized", "authentication required: Authorization: Bearer <API token> (server.require_api_token)")
				return
			}
		}
		if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
			if n := a.guard.streams.Add(1); srv.MaxEventStreams > 0 && n > int64(srv.MaxEventStreams) {
				a.guard.streams.Add(-1)
				a.reject(w, r, http.StatusServiceUnavailable, "too_many_streams",
					fmt.Sprintf("too many event streams open (server.max_event_streams=%d); retry later", srv.MaxEventStreams))
				return
			}
			defer a.guard.streams.Add(-1)
		}
		next.ServeHTTP(w, r)
	})
}

// serveReload is POST /-/reload, registered only with the lifecycle API
// enabled, and only for the API token.
func (a *Agent) serveReload(w http.ResponseWriter, r *http.Request) {
	switch a.checkToken(r) {
	case tokenValid:
	case tokenUnset:
		a.reject(w, r, http.StatusForbidden, "forbidden", "the API token (healing.auth_token_file) is not configured or cannot be read; refusing")
		return
	default:
		a.reject(w, r, http.StatusUnauthorized, "unauthorized", "authentication required: Authorization: Bearer <API token>")
		return
	}
	if err := a.Reload(r.Context()); err != nil {
		http.Error(w, "reload failed, running configuration kept: "+err.Error(), http.StatusInternalServerError)
		return
	}
	fmt.Fprintln(w, "configuration reloaded")
}

// serve runs the HTTP server on l until it is shut down, with TLS and
// basic auth from the web configuration file when one is set.
func (a *Agent) serve(l *connLimiter, srv ServerConfig) error {
	no := false
	addrs := []string{l.Addr().String()}
	file := srv.WebConfigFile
	return web.Serve(l, a.server, &web.FlagConfig{
		WebListenAddresses: &addrs,
		WebSystemdSocket:   &no,
		WebConfigFile:      &file,
	}, a.logger.With("component", "http"))
}

// newRejectLog returns the once-a-second limiter for refused-request logs.
func newRejectLog() *rate.Sometimes { return &rate.Sometimes{Interval: time.Second} }
