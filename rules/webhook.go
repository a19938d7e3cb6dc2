package rules

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// WebhookPath is where Alertmanager's webhook is received, on the agent's
// server and on the webhook's own TLS listener.
const WebhookPath = "/api/v1/alertmanager"

// WebhookMessage is Alertmanager's webhook payload (version 4).
type WebhookMessage struct {
	Version           string            `json:"version"`
	GroupKey          string            `json:"groupKey"`
	TruncatedAlerts   uint64            `json:"truncatedAlerts"`
	Status            string            `json:"status"`
	Receiver          string            `json:"receiver"`
	GroupLabels       map[string]string `json:"groupLabels"`
	CommonLabels      map[string]string `json:"commonLabels"`
	CommonAnnotations map[string]string `json:"commonAnnotations"`
	ExternalURL       string            `json:"externalURL"`
	Alerts            []WebhookAlert    `json:"alerts"`
}

// WebhookAlert is one alert of a webhook payload.
type WebhookAlert struct {
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt"`
	GeneratorURL string            `json:"generatorURL"`
	Fingerprint  string            `json:"fingerprint"`
}

// webhook receives Alertmanager's notifications.
type webhook struct {
	pub    *publisher
	logger *slog.Logger
	state  atomic.Pointer[webhookState]

	requests *prometheus.CounterVec
	alerts   *prometheus.CounterVec

	// logLimit keeps refused or invalid calls from flooding the log: one
	// record a second at most; the counters have every call.
	logLimit rate.Sometimes

	tlsServer *http.Server
	tlsDone   chan struct{}
	tlsAddr   string // the bound TLS address, once started
}

// webhookState is the part of the configuration a reload swaps.
type webhookState struct {
	cfg   WebhookConfig
	token []byte
}

func newWebhook(cfg WebhookConfig, pub *publisher, reg prometheus.Registerer, logger *slog.Logger) (*webhook, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &webhook{pub: pub, logger: logger, logLimit: rate.Sometimes{Interval: time.Second},
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_webhook_requests_total",
			Help: "Alertmanager webhook calls by result: ok, unauthorized (401), invalid (400/413), disabled (404).",
		}, []string{"result"}),
		alerts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_rules_webhook_alerts_total",
			Help: "Alerts received through the Alertmanager webhook, by status (firing, resolved).",
		}, []string{"status"}),
	}
	for _, r := range []string{"ok", "unauthorized", "invalid", "disabled"} {
		w.requests.WithLabelValues(r)
	}
	reg.MustRegister(w.requests, w.alerts)
	st, err := w.prepare(cfg)
	if err != nil {
		return nil, err
	}
	w.apply(st)
	return w, nil
}

// prepare reads what a configuration needs (the token) without applying it.
func (w *webhook) prepare(cfg WebhookConfig) (*webhookState, error) {
	st := &webhookState{cfg: cfg}
	if cfg.Enabled && cfg.BearerTokenFile != "" {
		tok, err := readToken(cfg.BearerTokenFile)
		if err != nil {
			return nil, fmt.Errorf("alertmanager_webhook.bearer_token_file: %w", err)
		}
		st.token = tok
	}
	return st, nil
}

func (w *webhook) apply(st *webhookState) { w.state.Store(st) }

// readToken reads a bearer token file; surrounding white space is ignored
// and an empty token is an error.
func readToken(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return []byte(tok), nil
}

// start serves the webhook on its own mutual-TLS listener when configured.
func (w *webhook) start(context.Context) error {
	st := w.state.Load()
	t := st.cfg.TLS
	if !st.cfg.Enabled || !t.Enabled() {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return fmt.Errorf("alertmanager_webhook.tls: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return fmt.Errorf("alertmanager_webhook.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("alertmanager_webhook.tls.client_ca_file: no certificates in %s", t.ClientCAFile)
		}
		tc.ClientCAs = pool
		// A client without a certificate may still use the bearer token.
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	l, err := net.Listen("tcp", t.ListenAddress)
	if err != nil {
		return fmt.Errorf("alertmanager_webhook.tls.listen_address: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+WebhookPath, w)
	w.tlsServer = &http.Server{Handler: mux, TLSConfig: tc, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(w.logger.Handler(), slog.LevelWarn)}
	w.tlsDone = make(chan struct{})
	w.tlsAddr = l.Addr().String()
	w.logger.Info("alertmanager webhook listening with TLS", "address", l.Addr().String())
	go func() {
		defer close(w.tlsDone)
		if err := w.tlsServer.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			w.logger.Error("webhook TLS listener failed", "err", err)
		}
	}()
	return nil
}

func (w *webhook) shutdown(ctx context.Context) error {
	if w.tlsServer == nil {
		return nil
	}
	err := w.tlsServer.Shutdown(ctx)
	<-w.tlsDone
	w.tlsServer = nil
	return err
}

// authenticated reports whether r carries a verified client certificate or
// the configured bearer token.
func (st *webhookState) authenticated(r *http.Request) bool {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && st.cfg.TLS.ClientCAFile != "" {
		return true
	}
	if len(st.token) == 0 {
		return false
	}
	scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(strings.TrimSpace(cred)), st.token) == 1
}

func (w *webhook) fail(rw http.ResponseWriter, code int, result, msg string) {
	w.requests.WithLabelValues(result).Inc()
	if code == http.StatusUnauthorized {
		rw.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
	}
	http.Error(rw, msg, code)
}

// ServeHTTP receives one webhook call.
func (w *webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	st := w.state.Load()
	if !st.cfg.Enabled {
		w.fail(rw, http.StatusNotFound, "disabled", "the Alertmanager webhook is not enabled (rules.alertmanager_webhook.enabled)")
		return
	}
	if !st.authenticated(r) {
		w.logLimit.Do(func() {
			w.logger.Warn("unauthenticated webhook call rejected (logged at most once a second; vigil_rules_webhook_requests_total counts all)", "remote", r.RemoteAddr)
		})
		w.fail(rw, http.StatusUnauthorized, "unauthorized", "authentication required: a bearer token or a client certificate")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, st.cfg.MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			w.fail(rw, http.StatusRequestEntityTooLarge, "invalid", fmt.Sprintf("body larger than %d bytes (rules.alertmanager_webhook.max_body_bytes)", mbe.Limit))
			return
		}
		w.fail(rw, http.StatusBadRequest, "invalid", "reading body: "+err.Error())
		return
	}
	alerts, err := ParseWebhook(body)
	if err != nil {
		w.logLimit.Do(func() {
			w.logger.Warn("invalid webhook payload (logged at most once a second; vigil_rules_webhook_requests_total counts all)", "remote", r.RemoteAddr, "err", err)
		})
		w.fail(rw, http.StatusBadRequest, "invalid", "invalid Alertmanager webhook payload: "+err.Error())
		return
	}
	dropped := 0
	for _, a := range alerts {
		w.alerts.WithLabelValues(string(a.State)).Inc()
		if !w.pub.publish(a) {
			dropped++
		}
	}
	if dropped > 0 {
		w.logLimit.Do(func() {
			w.logger.Warn("webhook alerts dropped: rules.alertmanager_webhook.max_alerts alerts are kept already (logged at most once a second; vigil_rules_webhook_alerts_dropped_total counts all)",
				"remote", r.RemoteAddr, "dropped", dropped, "max_alerts", st.cfg.MaxAlerts)
		})
	}
	w.requests.WithLabelValues("ok").Inc()
	rw.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(rw, `{"status":"success","alerts":%d,"dropped":%d}`+"\n", len(alerts), dropped)
}

// ParseWebhook decodes and validates an Alertmanager webhook payload
// (version 4) and returns its alerts. Every problem names its field.
func ParseWebhook(body []byte) ([]Alert, error) {
	var m WebhookMessage
	if err := json.Unmarshal(body, &m); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Errorf("malformed JSON at byte %d: %v", se.Offset, se)
		case errors.As(err, &te):
			return nil, fmt.Errorf("field %s: expected %s, got JSON %s", te.Field, te.Type, te.Value)
		}
		return nil, err
	}
	if m.Version != "4" {
		return nil, fmt.Errorf("version: want \"4\", got %q", m.Version)
	}
	var errs []error
	out := make([]Alert, 0, len(m.Alerts))
	for i, wa := range m.Alerts {
		p := fmt.Sprintf("alerts[%d]", i)
		a := Alert{
			Labels:       wa.Labels,
			Annotations:  wa.Annotations,
			Source:       SourceAlertmanager,
			StartsAt:     wa.StartsAt,
			GeneratorURL: wa.GeneratorURL,
		}
		switch wa.Status {
		case "firing":
			a.State = StateFiring
		case "resolved":
			a.State = StateResolved
			a.EndsAt = wa.EndsAt
		default:
			errs = append(errs, fmt.Errorf("%s.status: want firing or resolved, got %q", p, wa.Status))
		}
		if wa.Labels["alertname"] == "" {
			errs = append(errs, fmt.Errorf("%s.labels: alertname is missing", p))
		}
		for k := range wa.Labels {
			if !labelNameRe.MatchString(k) {
				errs = append(errs, fmt.Errorf("%s.labels: invalid label name %q", p, k))
			}
		}
		if wa.StartsAt.IsZero() {
			errs = append(errs, fmt.Errorf("%s.startsAt: missing", p))
		}
		if a.Annotations == nil {
			a.Annotations = map[string]string{}
		}
		a.Fingerprint = Fingerprint(a.Labels)
		out = append(out, a)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}
