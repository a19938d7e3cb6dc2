package rules

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const validPayload = `{
  "version": "4",
  "groupKey": "{}:{alertname=\"DiskFull\"}",
  "truncatedAlerts": 0,
  "status": "firing",
  "receiver": "vigil",
  "groupLabels": {"alertname": "DiskFull"},
  "commonLabels": {"alertname": "DiskFull"},
  "commonAnnotations": {},
  "externalURL": "http://am:9093",
  "alerts": [
    {"status": "firing", "labels": {"alertname": "DiskFull", "instance": "n1"}, "annotations": {"summary": "full"},
     "startsAt": "2026-11-25T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prom/graph", "fingerprint": "x"},
    {"status": "resolved", "labels": {"alertname": "DiskFull", "instance": "n2"}, "annotations": {},
     "startsAt": "2026-11-25T09:00:00Z", "endsAt": "2026-11-25T09:30:00Z", "generatorURL": "", "fingerprint": "y"}
  ]
}`

func newTestWebhook(t *testing.T, cfg WebhookConfig) (*webhook, *Stream, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	s := NewStream()
	w, err := newWebhook(cfg, newPublisher(s, reg), reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return w, s, reg
}

func tokenFile(t testing.TB, tok string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(p, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func post(t testing.TB, h http.Handler, body, auth string) (int, string) {
	t.Helper()
	r, _ := http.NewRequest(http.MethodPost, WebhookPath, strings.NewReader(body))
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	rec := &recorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	return rec.code, rec.body.String()
}

type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func TestWebhookRequiresAuthenticationAndCountsRejections(t *testing.T) {
	w, _, _ := newTestWebhook(t, WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "s3cret"), MaxBodyBytes: 1 << 20})
	for _, auth := range []string{"", "Bearer wrong", "Basic czNjcmV0", "Bearer"} {
		if code, _ := post(t, w, validPayload, auth); code != http.StatusUnauthorized {
			t.Errorf("auth %q: got %d, want 401", auth, code)
		}
	}
	if got := testutil.ToFloat64(w.requests.WithLabelValues("unauthorized")); got != 4 {
		t.Errorf("unauthorized calls counted %v, want 4", got)
	}
	if code, body := post(t, w, validPayload, "Bearer s3cret"); code != 0 && code != http.StatusOK {
		t.Fatalf("authorized call: %d %s", code, body)
	}
}

func TestWebhookDeliversFiringAndResolved(t *testing.T) {
	w, s, _ := newTestWebhook(t, WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "s3cret"), MaxBodyBytes: 1 << 20})
	sub := s.Subscribe(10)
	defer sub.Close()
	if code, body := post(t, w, validPayload, "bearer s3cret"); code != 0 && code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	a, r := <-sub.C(), <-sub.C()
	if a.State != StateFiring || a.Source != SourceAlertmanager || a.Labels["instance"] != "n1" || a.Annotations["summary"] != "full" ||
		!a.StartsAt.Equal(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)) || a.Fingerprint != Fingerprint(a.Labels) {
		t.Errorf("firing alert: %+v", a)
	}
	if r.State != StateResolved || r.EndsAt.IsZero() || r.Labels["instance"] != "n2" {
		t.Errorf("resolved alert: %+v", r)
	}
	// Alertmanager repeats a group's alerts; unchanged ones are not
	// published again.
	post(t, w, validPayload, "Bearer s3cret")
	select {
	case x := <-sub.C():
		t.Errorf("a repeated notification was published again: %+v", x)
	case <-time.After(100 * time.Millisecond):
	}
	if got := testutil.ToFloat64(w.requests.WithLabelValues("ok")); got != 2 {
		t.Errorf("ok calls %v", got)
	}
}

func TestWebhookRejectsBadPayloadsClearly(t *testing.T) {
	w, _, _ := newTestWebhook(t, WebhookConfig{Enabled: true, BearerTokenFile: tokenFile(t, "t"), MaxBodyBytes: 2048})
	for _, tc := range []struct{ body, want string }{
		{`{`, "malformed JSON"},
		{`{"version":"3","alerts":[]}`, `version: want "4", got "3"`},
		{`{"version":"4","alerts":[{"status":"weird","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z"}]}`, `alerts[0].status: want firing or resolved, got "weird"`},
		{`{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"2026-01-01T00:00:00Z"}]}`, "alerts[0].labels: alertname is missing"},
		{`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A"}}]}`, "alerts[0].startsAt: missing"},
		{`{"version":"4","alerts":"no"}`, "field alerts: expected []rules.WebhookAlert"},
		{`{"version":"4","alerts":[{"status":"firing","labels":{"alertname":"A","bad-name":"x"},"startsAt":"2026-01-01T00:00:00Z"}]}`, `invalid label name "bad-name"`},
		{`{"version":"4","pad":"` + strings.Repeat("x", 4096) + `"}`, "body larger than 2048 bytes"},
	} {
		code, body := post(t, w, tc.body, "Bearer t")
		if code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge {
			t.Errorf("%.40s: code %d", tc.body, code)
		}
		if !strings.Contains(body, tc.want) {
			t.Errorf("%.40s: body %q does not say %q", tc.body, body, tc.want)
		}
	}
	if got := testutil.ToFloat64(w.requests.WithLabelValues("invalid")); got != 8 {
		t.Errorf("invalid calls counted %v, want 8", got)
	}
}

func TestWebhookDisabled(t *testing.T) {
	w, _, _ := newTestWebhook(t, WebhookConfig{MaxBodyBytes: 10})
	if code, _ := post(t, w, validPayload, ""); code != http.StatusNotFound {
		t.Errorf("disabled webhook answered %d", code)
	}
}

// FuzzWebhook feeds malformed bodies to the handler: it never panics,
// answers 200 only for payloads ParseWebhook accepts and 400/413 with a
// message otherwise, and counts every call.
func FuzzWebhook(f *testing.F) {
	for _, s := range []string{validPayload, `{`, `null`, `[]`, `{"version":"4"}`, `{"version":"4","alerts":[null]}`,
		`{"version":"4","alerts":[{"status":"firing","labels":null,"startsAt":"x"}]}`, "\x00\xff", `{"version":4}`,
		`{"version":"4","alerts":[{"status":"resolved","labels":{"alertname":"A"},"startsAt":"2026-01-01T00:00:00Z","endsAt":"bad"}]}`} {
		f.Add([]byte(s))
	}
	tok := filepath.Join(f.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("t"), 0o600); err != nil {
		f.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := NewStream()
	w, err := newWebhook(WebhookConfig{Enabled: true, BearerTokenFile: tok, MaxBodyBytes: 1 << 16}, newPublisher(s, reg), reg, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		before := testutil.ToFloat64(w.requests.WithLabelValues("ok")) + testutil.ToFloat64(w.requests.WithLabelValues("invalid"))
		code, msg := post(t, w, string(body), "Bearer t")
		_, perr := ParseWebhook(body)
		switch {
		case perr == nil && code != 0 && code != http.StatusOK:
			t.Fatalf("valid payload answered %d: %s", code, msg)
		case perr != nil && code != http.StatusBadRequest && code != http.StatusRequestEntityTooLarge:
			t.Fatalf("invalid payload answered %d", code)
		case perr != nil && !strings.Contains(msg, "invalid Alertmanager webhook payload") && code == http.StatusBadRequest:
			t.Fatalf("unclear message %q", msg)
		}
		after := testutil.ToFloat64(w.requests.WithLabelValues("ok")) + testutil.ToFloat64(w.requests.WithLabelValues("invalid"))
		if after != before+1 {
			t.Fatal("call not counted")
		}
	})
}

// pki makes a CA and certificates signed by it.
type pki struct {
	dir    string
	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns cert and key files for name (a server or client).
func (p *pki) issue(t *testing.T, name string, server bool) (certFile, keyFile string) {
	t.Helper()
	p.serial++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.serial + 1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

func TestWebhookMutualTLS(t *testing.T) {
	p := newPKI(t)
	srvCert, srvKey := p.issue(t, "server", true)
	cliCert, cliKey := p.issue(t, "alertmanager", false)
	cfg := NewConfig()
	cfg.RuleFiles = nil
	cfg.AlertmanagerWebhook = WebhookConfig{Enabled: true, MaxBodyBytes: 1 << 20, MaxAlerts: 100, TLS: WebhookTLSConfig{
		ListenAddress: "127.0.0.1:0", CertFile: srvCert, KeyFile: srvKey, ClientCAFile: filepath.Join(p.dir, "ca.pem")}}
	te := startEngine(t, cfg)
	sub := te.stream.Subscribe(10)
	defer sub.Close()

	roots := x509.NewCertPool()
	roots.AddCert(p.caCert)
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
		if withCert {
			c, err := tls.LoadX509KeyPair(cliCert, cliKey)
			if err != nil {
				t.Fatal(err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 10 * time.Second}
	}
	u := "https://" + te.WebhookTLSAddr() + WebhookPath
	resp, err := client(false).Post(u, "application/json", strings.NewReader(validPayload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no client certificate: %s, want 401", resp.Status)
	}
	resp, err = client(true).Post(u, "application/json", strings.NewReader(validPayload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with client certificate: %s", resp.Status)
	}
	if a := nextAlert(t, sub, "DiskFull", StateFiring); a.Source != SourceAlertmanager {
		t.Errorf("source %s", a.Source)
	}
	// The plain listener has no token configured: every call is refused.
	resp, err = http.Post(te.srv.URL+WebhookPath, "application/json", strings.NewReader(validPayload))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("plain listener without token: %s", resp.Status)
	}
}
