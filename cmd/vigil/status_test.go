package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/healing"
	"github.com/vigil-agent/vigil/internal/confyaml"
	"github.com/vigil-agent/vigil/rules"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// statusAgent runs a real healing engine (live, one exec policy) behind
// /api/v1/actions.
func statusAgent(t *testing.T) (*healing.Engine, *rules.Stream, *httptest.Server) {
	t.Helper()
	cfg := healing.NewConfig()
	cfg.Kubernetes.Mode = "off"
	node, err := confyaml.Parse("t.yaml", []byte(`
dry_run: false
policies:
  runbook_url: https://runbooks.example/disk
  routes:
    - name: clean-tmp
      steps:
        - action: exec
          params: {command: ["/bin/true"], target: "{{.instance}}"}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := confyaml.Decode("t.yaml", "healing", node, cfg); err != nil {
		t.Fatal(err)
	}
	stream := rules.NewStream()
	e, err := healing.New(cfg, healing.Options{NodeName: "n1", Alerts: stream})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	e.Routes(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		e.Shutdown(context.Background())
	})
	return e, stream, srv
}

func TestStatusPrintsRecentDecisions(t *testing.T) {
	e, stream, srv := statusAgent(t)
	stream.Publish(rules.Alert{Labels: map[string]string{"alertname": "DiskFull", "instance": "db-1"}, State: rules.StateFiring})
	testenv.EventuallyTrue(t, time.Minute, "a record", func() bool { return len(e.History().Recent(0)) == 1 })

	var out, errb bytes.Buffer
	if code := Main([]string{"status", "--url", srv.URL}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := out.String()
	for _, want := range []string{"agent n1: remediation live; 1 recent decisions", "POLICY", "clean-tmp", "exec", "Command db-1", "success", "https://runbooks.example/disk"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}

// TestStatusFollowStreams follows the stream across a broken connection
// (as when the agent restarts): it reconnects, prints no decision twice,
// goes on with new ones, and gives up once the agent stays unreachable
// for --give-up-after.
func TestStatusFollowStreams(t *testing.T) {
	e, stream, srv := statusAgent(t)
	var mu sync.Mutex
	var out bytes.Buffer
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	output := func() string { mu.Lock(); defer mu.Unlock(); return out.String() }
	done := make(chan int)
	go func() { done <- Main([]string{"status", "--follow", "--give-up-after", "2s", "--url", srv.URL}, w, w) }()
	testenv.EventuallyTrue(t, time.Minute, "the header", func() bool { return strings.Contains(output(), "RESULT") })
	stream.Publish(rules.Alert{Labels: map[string]string{"alertname": "DiskFull", "instance": "db-2"}, State: rules.StateFiring})
	testenv.EventuallyTrue(t, time.Minute, "the streamed decision", func() bool { return strings.Contains(output(), "Command db-2") })

	srv.CloseClientConnections()
	testenv.EventuallyTrue(t, time.Minute, "the reconnection", func() bool { return strings.Contains(output(), "reconnecting in 1s") })
	stream.Publish(rules.Alert{Labels: map[string]string{"alertname": "DiskFull", "instance": "db-3"}, State: rules.StateFiring})
	testenv.EventuallyTrue(t, time.Minute, "a decision made after the reconnection", func() bool { return strings.Contains(output(), "Command db-3") })
	if n := strings.Count(output(), "Command db-2"); n != 1 {
		t.Errorf("the decision before the break was printed %d times:\n%s", n, output())
	}
	if n := len(e.History().Recent(0)); n != 2 {
		t.Errorf("history has %d records, want 2", n)
	}

	srv.CloseClientConnections() // Close waits for the stream's handler
	srv.Close()
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(output(), "giving up after 2s") {
			t.Errorf("exit %d:\n%s", code, output())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("vigil status --follow did not give up on an unreachable agent")
	}
}

func TestStatusUnreachable(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"status", "--url", "http://127.0.0.1:1"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "connection refused") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
