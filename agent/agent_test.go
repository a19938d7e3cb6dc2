package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/component"
	_ "github.com/vigil-agent/vigil/components"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/vigil-agent/vigil/agent.runUpdate.func2"))
}

// testConfig is the configuration of the test collectors registered below.
type testConfig struct {
	Value int `yaml:"value"`
}

func (c *testConfig) Validate() error {
	if c.Value < 0 {
		return errors.New("value must not be negative")
	}
	return nil
}

var (
	testOKBuilds atomic.Int64
	hangRelease  = make(chan struct{})
)

var testGaugeDesc = prometheus.NewDesc("vigil_test_value", "A value from the test collector.", nil, nil)

type funcCollector func(ctx context.Context, ch chan<- prometheus.Metric) error

func (f funcCollector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	return f(ctx, ch)
}

// The test collectors behave as real ones can: one works, one fails, one
// panics, one ignores its deadline.
func init() {
	reg := func(name string, c func(cfg *testConfig) funcCollector) {
		component.RegisterCollector(name, false, func() *testConfig { return &testConfig{} },
			func(cfg *testConfig, _ collectors.Settings) (funcCollector, error) {
				if name == "test_ok" {
					testOKBuilds.Add(1)
				}
				return c(cfg), nil
			})
	}
	reg("test_ok", func(cfg *testConfig) funcCollector {
		return func(_ context.Context, ch chan<- prometheus.Metric) error {
			ch <- prometheus.MustNewConstMetric(testGaugeDesc, prometheus.GaugeValue, float64(cfg.Value))
			return nil
		}
	})
	reg("test_fail", func(*testConfig) funcCollector {
		return func(context.Context, chan<- prometheus.Metric) error { return errors.New("cannot read the source") }
	})
	reg("test_panic", func(*testConfig) funcCollector {
		return func(context.Context, chan<- prometheus.Metric) error { panic("collector bug") }
	})
	reg("test_hang", func(*testConfig) funcCollector {
		return func(context.Context, chan<- prometheus.Metric) error { <-hangRelease; return nil }
	})
}

// startAgent runs an agent from the configuration file at path on a free
// loopback port and returns its base URL.
func startAgent(t *testing.T, path string) (*Agent, string) {
	t.Helper()
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{ConfigFile: path, ListenAddress: "127.0.0.1:0"})
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
	url := "http://" + a.Addr()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return a, url
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, url string, header ...string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body)
}

func post(t *testing.T, url string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// reload reloads the agent as SIGHUP does and answers as POST /-/reload
// does (the lifecycle endpoint itself, off by default and behind the API
// token, is tested in web_test.go).
func reload(t *testing.T, a *Agent) (int, string) {
	t.Helper()
	if err := a.Reload(context.Background()); err != nil {
		return http.StatusInternalServerError, "reload failed, running configuration kept: " + err.Error()
	}
	return http.StatusOK, "configuration reloaded"
}

func wantLine(t *testing.T, metrics, line string) {
	t.Helper()
	for _, l := range strings.Split(metrics, "\n") {
		if l == line {
			return
		}
	}
	t.Errorf("/metrics has no line %q", line)
}

const allTestCollectors = `global:
  collector_timeout: 300ms
collectors:
  test_ok: {value: 7}
  test_fail: {}
  test_panic: {}
  test_hang: {}
`

func TestFailingCollectorsNeverBreakTheScrape(t *testing.T) {
	defer func() { close(hangRelease); hangRelease = make(chan struct{}) }()
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, allTestCollectors)
	_, url := startAgent(t, path)

	code, _, body := get(t, url+"/metrics")
	if code != 200 {
		t.Fatalf("/metrics status %d", code)
	}
	wantLine(t, body, "vigil_test_value 7")
	wantLine(t, body, `vigil_collector_success{collector="test_ok"} 1`)
	wantLine(t, body, `vigil_collector_success{collector="test_fail"} 0`)
	wantLine(t, body, `vigil_collector_success{collector="test_panic"} 0`)
	wantLine(t, body, `vigil_collector_success{collector="test_hang"} 0`)
	for _, c := range []string{"test_ok", "test_fail", "test_panic", "test_hang"} {
		if !strings.Contains(body, `vigil_collector_duration_seconds{collector="`+c+`"}`) {
			t.Errorf("no duration for %s", c)
		}
	}
}

func TestEndpoints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, "collectors:\n  test_ok: {value: 1}\n")
	_, url := startAgent(t, path)

	if code, _, body := get(t, url+"/-/healthy"); code != 200 || !strings.Contains(body, "Healthy") {
		t.Errorf("/-/healthy = %d %q", code, body)
	}
	if code, _, body := get(t, url+"/-/ready"); code != 200 || !strings.Contains(body, "Ready") {
		t.Errorf("/-/ready = %d %q", code, body)
	}
	code, hdr, body := get(t, url+"/metrics")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") || strings.Contains(body, "# EOF") {
		t.Errorf("/metrics without Accept: %d %s", code, hdr.Get("Content-Type"))
	}
	wantLine(t, body, "vigil_config_last_reload_successful 1")
	wantLine(t, body, `vigil_component_up{component="collector/test_ok"} 1`)
	if !strings.Contains(body, "vigil_build_info{") || !strings.Contains(body, "go_goroutines") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Error("/metrics lacks build info or runtime metrics")
	}
	code, hdr, body = get(t, url+"/metrics", "Accept", "application/openmetrics-text;version=1.0.0")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/openmetrics-text") || !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("/metrics with OpenMetrics Accept: %d %s", code, hdr.Get("Content-Type"))
	}
	// The lifecycle API is off unless enabled.
	if code, _, _ := get(t, url+"/-/reload"); code != http.StatusNotFound {
		t.Errorf("GET /-/reload = %d, want 404", code)
	}
	if code, _ := post(t, url+"/-/reload"); code != http.StatusNotFound {
		t.Errorf("POST /-/reload = %d, want 404 (lifecycle API off)", code)
	}
	if code, _, _ := get(t, url+"/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}
}

func TestBadReloadKeepsRunningConfiguration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vigil.yaml")
	writeFile(t, path, "collectors:\n  test_ok: {value: 1}\n")
	a, url := startAgent(t, path)
	builds := testOKBuilds.Load()

	// A typo: the reload is refused, the old collector keeps serving.
	writeFile(t, path, "collectors:\n  test_ok: {valeu: 2}\n")
	code, body := reload(t, a)
	if code != 500 || !strings.Contains(body, path+":2:") || !strings.Contains(body, "valeu") {
		t.Errorf("bad reload = %d %q, want 500 naming the file, line and key", code, body)
	}
	_, _, metrics := get(t, url+"/metrics")
	wantLine(t, metrics, "vigil_config_last_reload_successful 0")
	wantLine(t, metrics, "vigil_test_value 1")

	// A valid file that fails validation is refused too.
	writeFile(t, path, "collectors:\n  test_ok: {value: -5}\n")
	if code, _ := reload(t, a); code != 500 {
		t.Errorf("invalid reload = %d, want 500", code)
	}

	// A reload with an unchanged collector section keeps the collector.
	writeFile(t, path, "log: {level: debug}\ncollectors:\n  test_ok: {value: 1}\n")
	if code, body := reload(t, a); code != 200 {
		t.Fatalf("good reload = %d %q", code, body)
	}
	if got := testOKBuilds.Load(); got != builds {
		t.Errorf("unchanged collector was rebuilt (%d builds, want %d)", got, builds)
	}
	if a.Config().Log.Level != "debug" {
		t.Errorf("log level = %q after reload, want debug", a.Config().Log.Level)
	}

	// A changed section rebuilds it, and the metric reflects the new value.
	writeFile(t, path, "collectors:\n  test_ok: {value: 2}\n")
	if code, body := reload(t, a); code != 200 {
		t.Fatalf("good reload = %d %q", code, body)
	}
	_, _, metrics = get(t, url+"/metrics")
	wantLine(t, metrics, "vigil_config_last_reload_successful 1")
	wantLine(t, metrics, "vigil_test_value 2")
}
