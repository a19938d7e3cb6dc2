package agent

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startAgentWith runs an agent from the configuration file at path with
// opts on a free loopback port, waits until client sees it ready at
// base+"/-/ready", and returns it.
func startAgentWith(t *testing.T, path string, opts Options, client *http.Client, scheme string) (*Agent, string) {
	t.Helper()
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	opts.ConfigFile, opts.ListenAddress = path, "127.0.0.1:0"
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	url := scheme + "://" + a.Addr()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return a, url
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metricValue returns the value of the sample line named by series.
func metricValue(t *testing.T, url, series string) float64 {
	t.Helper()
	_, _, body := get(t, url+"/metrics")
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", series)
	return 0
}

// The lifecycle API is off unless enabled (404), and then only answers the
// API token (healing.auth_token_file): an outsider cannot reload.
func TestReloadNeedsLifecycleAndToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	writeFile(t, tok, "s3cret\n")
	path := filepath.Join(dir, "vigil.yaml")
	writeFile(t, path, "healing:\n  auth_token_file: "+tok+"\n")

	_, url := startAgentWith(t, path, Options{}, http.DefaultClient, "http")
	if code, _ := post(t, url+"/-/reload", "Authorization", "Bearer s3cret"); code != http.StatusNotFound {
		t.Errorf("lifecycle off: POST /-/reload = %d, want 404", code)
	}

	a, url := startAgentWith(t, path, Options{EnableLifecycle: true}, http.DefaultClient, "http")
	for _, auth := range []string{"", "Bearer wrong", "Basic czNjcmV0", "s3cret"} {
		if code, _ := post(t, url+"/-/reload", "Authorization", auth); code != http.StatusUnauthorized {
			t.Errorf("POST /-/reload with Authorization %q = %d, want 401", auth, code)
		}
	}
	if got := metricValue(t, url, `vigil_http_requests_rejected_total{reason="unauthorized"}`); got != 4 {
		t.Errorf("refused reloads counted %v, want 4", got)
	}
	if code, body := post(t, url+"/-/reload", "Authorization", "Bearer s3cret"); code != 200 {
		t.Errorf("POST /-/reload with the token = %d %q, want 200", code, body)
	}
	// The token is read on each request: a rotated token works at once.
	writeFile(t, tok, "n3w\n")
	if code, _ := post(t, url+"/-/reload", "Authorization", "Bearer s3cret"); code != http.StatusUnauthorized {
		t.Errorf("old token after rotation = %d, want 401", code)
	}
	if code, _ := post(t, url+"/-/reload", "Authorization", "Bearer n3w"); code != 200 {
		t.Errorf("new token = %d, want 200", code)
	}
	if a.Config().File != path {
		t.Errorf("running configuration %q", a.Config().File)
	}

	// Enabling the lifecycle API without a token is a configuration error.
	writeFile(t, path, "server:\n  enable_lifecycle: true\n")
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "server.enable_lifecycle: needs the API token, healing.auth_token_file") {
		t.Errorf("enable_lifecycle without a token: %v", err)
	}
}

// Every /api/v1/* read endpoint accepts the API token, refuses a wrong one,
// and with server.require_api_token requires it. The Alertmanager webhook
// keeps its own token.
func TestAPIToken(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	writeFile(t, tok, "s3cret\n")
	path := filepath.Join(dir, "vigil.yaml")
	base := "healing:\n  auth_token_file: " + tok + "\n  kubernetes: {mode: \"off\"}\n"
	reads := []string{"/api/v1/actions", "/api/v1/rules", "/api/v1/alerts", "/api/v1/query?query=1"}

	writeFile(t, path, base)
	_, url := startAgentWith(t, path, Options{}, http.DefaultClient, "http")
	for _, p := range reads {
		if code, _, body := get(t, url+p); code != 200 {
			t.Errorf("GET %s without a token (optional) = %d %s", p, code, body)
		}
		if code, _, _ := get(t, url+p, "Authorization", "Bearer s3cret"); code != 200 {
			t.Errorf("GET %s with the token = %d", p, code)
		}
		if code, _, _ := get(t, url+p, "Authorization", "Bearer wrong"); code != http.StatusUnauthorized {
			t.Errorf("GET %s with a wrong token = %d, want 401", p, code)
		}
	}

	writeFile(t, path, base+"server:\n  require_api_token: true\n")
	_, url = startAgentWith(t, path, Options{}, http.DefaultClient, "http")
	for _, p := range reads {
		if code, hdr, _ := get(t, url+p); code != http.StatusUnauthorized || hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s without a token (required) = %d, want 401 with WWW-Authenticate", p, code)
		}
		if code, _, _ := get(t, url+p, "Authorization", "Bearer s3cret"); code != 200 {
			t.Errorf("GET %s with the token (required) = %d", p, code)
		}
	}
	// The webhook is not behind the API token (it has its own; off here).
	if code, _ := post(t, url+"/api/v1/alertmanager"); code != http.StatusNotFound {
		t.Errorf("POST /api/v1/alertmanager = %d, want the webhook's own 404 (disabled)", code)
	}
	// /metrics and the probes stay open for the scraper and the kubelet.
	if code, _, _ := get(t, url+"/-/healthy"); code != 200 {
		t.Errorf("/-/healthy = %d", code)
	}
	if got := metricValue(t, url, `vigil_http_requests_rejected_total{reason="unauthorized"}`); got != float64(len(reads)) {
		t.Errorf("refused reads counted %v, want %d", got, len(reads))
	}
}

// Event streams beyond server.max_event_streams are answered 503; a closed
// stream frees its place; read_timeout does not cut a stream.
func TestEventStreamCap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "vigil.yaml")
	writeFile(t, path, "server:\n  max_event_streams: 3\n  read_timeout: 1s\nhealing:\n  kubernetes: {mode: \"off\"}\n")
	_, url := startAgentWith(t, path, Options{}, http.DefaultClient, "http")

	open := func() (*http.Response, error) {
		req, _ := http.NewRequest("GET", url+"/api/v1/actions", nil)
		req.Header.Set("Accept", "text/event-stream")
		return http.DefaultTransport.RoundTrip(req)
	}
	var streams []*http.Response
	for i := 0; i < 3; i++ {
		resp, err := open()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, err, resp)
		}
		streams = append(streams, resp)
	}
	defer func() {
		for _, s := range streams {
			s.Body.Close()
		}
	}()
	resp, err := open()
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("4th stream = %d, want 503 with Retry-After", resp.StatusCode)
	}
	if got := metricValue(t, url, `vigil_http_requests_rejected_total{reason="too_many_streams"}`); got != 1 {
		t.Errorf("refused streams counted %v, want 1", got)
	}

	// Past read_timeout the streams are still open: the keep-alive comment
	// is not due yet, so a read must block rather than end.
	time.Sleep(1500 * time.Millisecond)
	got := make(chan error, 1)
	go func() {
		_, err := streams[0].Body.Read(make([]byte, 1))
		got <- err
	}()
	select {
	case err := <-got:
		t.Errorf("stream ended after read_timeout: %v", err)
	case <-time.After(300 * time.Millisecond):
	}

	streams[1].Body.Close()
	streams = append(streams[:1], streams[2:]...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := open()
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			streams = append(streams, resp)
			break
		}
		resp.Body.Close()
		if time.Now().After(deadline) {
			t.Fatalf("a closed stream did not free its place: %d", resp.StatusCode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Idle keep-alive connections beyond server.max_connections do not starve
// /-/healthy: the longest-idle one is closed to make room, and the agent
// never holds more connections than the bound.
func TestIdleConnectionsDoNotStarveHealthy(t *testing.T) {
	const max = 8
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, fmt.Sprintf("server:\n  max_connections: %d\n", max))
	_, url := startAgentWith(t, path, Options{}, http.DefaultClient, "http")
	addr := strings.TrimPrefix(url, "http://")

	// 5 × the bound, each made idle after one request, as a client keeping
	// keep-alive connections open does.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 5*max; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		fmt.Fprintf(c, "GET /-/healthy HTTP/1.1\r\nHost: vigil\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("connection %d: %d", i, resp.StatusCode)
		}
	}
	// A new client (the kubelet's probe) is served at once.
	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := probe.Get(url + "/-/healthy")
	if err != nil {
		t.Fatalf("/-/healthy starved: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/-/healthy = %d", resp.StatusCode)
	}
	if got := metricValue(t, url, "vigil_http_connections"); got > max {
		t.Errorf("vigil_http_connections = %v, over the bound %d", got, max)
	}
	if got := metricValue(t, url, "vigil_http_idle_connections_closed_total"); got < 4*max {
		t.Errorf("vigil_http_idle_connections_closed_total = %v, want at least %d", got, 4*max)
	}
	if got := metricValue(t, url, "vigil_http_connections_max"); got != max {
		t.Errorf("vigil_http_connections_max = %v", got)
	}
}

// scrapeHash is the bcrypt hash of "scrape-pass" (cost 4).
const scrapeHash = "$2a$04$th0bX5vY4NdsUyLAS6S9rOD6gVC3zwIyab0L2RMGwTCK5.P7gksQq"

// TLS with a required client certificate and basic auth, from an
// exporter-toolkit web configuration file, as a Prometheus exporter runs.
func TestWebConfigTLSClientCertAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	webCfg := filepath.Join(dir, "web.yml")
	writeFile(t, webCfg, fmt.Sprintf(`tls_server_config:
  cert_file: %s
  key_file: %s
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: %s
basic_auth_users:
  prometheus: %s
`, pki.serverCert, pki.serverKey, pki.caFile, scrapeHash))
	path := filepath.Join(dir, "vigil.yaml")
	writeFile(t, path, "log: {level: info}\n")

	withCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pki.pool, Certificates: []tls.Certificate{pki.client}}}}
	authed := &http.Client{Timeout: 10 * time.Second, Transport: basicAuth{"prometheus", "scrape-pass", withCert.Transport}}
	_, url := startAgentWith(t, path, Options{WebConfigFile: webCfg}, authed, "https")

	// Plain HTTP is not served.
	if resp, err := http.Get("http" + strings.TrimPrefix(url, "https") + "/metrics"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served /metrics")
		}
	}
	// No client certificate: the handshake fails.
	noCert := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.pool}}}
	if resp, err := noCert.Get(url + "/metrics"); err == nil {
		resp.Body.Close()
		t.Errorf("no client certificate: got %d, want a TLS handshake failure", resp.StatusCode)
	}
	// A certificate but no password: 401.
	resp, err := withCert.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("client certificate without basic auth: %d, want 401", resp.StatusCode)
	}
	// A wrong password: 401.
	wrong := &http.Client{Timeout: 10 * time.Second, Transport: basicAuth{"prometheus", "nope", withCert.Transport}}
	if resp, err := wrong.Get(url + "/metrics"); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong password: %v %v, want 401", err, resp)
	} else {
		resp.Body.Close()
	}
	// Both: the metrics.
	resp, err = authed.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "vigil_build_info") {
		t.Errorf("client certificate and basic auth: %d", resp.StatusCode)
	}
	// Basic credentials in Authorization are not a wrong API token: the
	// reads stay open to the authenticated client.
	if resp, err := authed.Get(url + "/api/v1/actions"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /api/v1/actions with basic auth: %v %v, want 200", err, resp)
	} else {
		resp.Body.Close()
	}

	// A web configuration file that does not load is a configuration error.
	bad := filepath.Join(dir, "bad.yml")
	writeFile(t, bad, "tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n")
	writeFile(t, path, "server:\n  web_config_file: "+bad+"\n")
	if _, err := LoadFile(path); err == nil || !strings.Contains(err.Error(), "server.web_config_file") {
		t.Errorf("bad web config: %v", err)
	}
}

type basicAuth struct {
	user, pass string
	next       http.RoundTripper
}

func (b basicAuth) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.SetBasicAuth(b.user, b.pass)
	return b.next.RoundTrip(r)
}

type testPKI struct {
	caFile, serverCert, serverKey string
	pool                          *x509.CertPool
	client                        tls.Certificate
}

// newTestPKI writes a CA, a server certificate for 127.0.0.1 and returns a
// client certificate, all signed by the CA.
func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage) ([]byte, []byte) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kb, _ := x509.MarshalECPrivateKey(key)
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	}
	p := testPKI{caFile: filepath.Join(dir, "ca.crt"), serverCert: filepath.Join(dir, "server.crt"), serverKey: filepath.Join(dir, "server.key"), pool: x509.NewCertPool()}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.pool.AppendCertsFromPEM(caPEM)
	sc, sk := issue(2, "vigil", x509.ExtKeyUsageServerAuth)
	cc, ck := issue(3, "prometheus", x509.ExtKeyUsageClientAuth)
	for f, b := range map[string][]byte{p.caFile: caPEM, p.serverCert: sc, p.serverKey: sk} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var err2 error
	if p.client, err2 = tls.X509KeyPair(cc, ck); err2 != nil {
		t.Fatal(err2)
	}
	return p
}

// The server section's new keys are validated with their field paths.
func TestServerConfigValidation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, `server:
  read_timeout: 0s
  idle_timeout: -1s
  max_connections: 1
  max_event_streams: -1
  require_api_token: true
`)
	_, err := LoadFile(path)
	for _, want := range []string{
		"server.read_timeout: must be positive, got 0s",
		"server.idle_timeout: must be positive, got -1s",
		"server.max_connections: must be at least 2, got 1",
		"server.max_event_streams: must not be negative, got -1",
		"server.require_api_token: needs the API token, healing.auth_token_file",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadFile() = %v, want %q", err, want)
		}
	}
	// The defaults.
	cfg, err := LoadDefault()
	if err != nil {
		t.Fatal(err)
	}
	s := cfg.Server
	if s.ReadTimeout != 30*time.Second || s.IdleTimeout != time.Minute || s.MaxConnections != 256 || s.MaxEventStreams != 16 ||
		s.WebConfigFile != "" || s.EnableLifecycle || s.RequireAPIToken {
		t.Errorf("server defaults: %+v", s)
	}
}
