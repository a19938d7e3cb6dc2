package healing

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func serve(t *testing.T, e *Engine) string {
	mux := http.NewServeMux()
	e.Routes(mux.Handle)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func post(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

func TestStateChangingEndpointsNeedTheToken(t *testing.T) {
	h := startEngine(t, `
dry_run: false
auth_token_file: $DIR/token
policies:
  routes:`+touchPolicy)
	if err := os.WriteFile(filepath.Join(h.dir, "token"), []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url := serve(t, h.e)
	for _, tok := range []string{"", "wrong"} {
		if code, _ := post(t, url+"/api/v1/healing/pause", tok); code != http.StatusUnauthorized {
			t.Errorf("pause with token %q: %d, want 401", tok, code)
		}
	}
	if h.e.Paused() {
		t.Fatal("an unauthenticated request paused the engine")
	}
	// Paused through the API: the maintenance guard stops the action.
	if code, body := post(t, url+"/api/v1/healing/pause", "s3cret"); code != http.StatusOK {
		t.Fatalf("pause: %d %s", code, body)
	}
	h.fire(map[string]string{"alertname": "Broken", "target": "a"})
	h.settle()
	if code, body := post(t, url+"/api/v1/healing/resume", "s3cret"); code != http.StatusOK {
		t.Fatalf("resume: %d %s", code, body)
	}
	h.fire(map[string]string{"alertname": "Broken", "target": "b"})
	recs := h.settle()
	if got := results(recs); got != "vetoed(maintenance) success" || !strings.Contains(recs[0].Reason, "paused through the API") {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "b" {
		t.Fatalf("acted: %s", got)
	}
}

func TestStateChangingEndpointsRefusedWithoutTokenFile(t *testing.T) {
	h := startEngine(t, `policies: {}`)
	url := serve(t, h.e)
	if code, body := post(t, url+"/api/v1/healing/pause", "anything"); code != http.StatusForbidden || !strings.Contains(body, "auth_token_file") {
		t.Fatalf("pause without a token file: %d %s", code, body)
	}
}

func TestApproval(t *testing.T) {
	h := startEngine(t, `
dry_run: false
auth_token_file: $DIR/token
policies:
  require_approval: true
  routes:`+touchPolicy)
	os.WriteFile(filepath.Join(h.dir, "token"), []byte("tok"), 0o600)
	url := serve(t, h.e)
	h.fire(map[string]string{"alertname": "Broken", "target": "a"})
	recs := h.waitRecords(1)
	if recs[0].Result != ResultPending {
		t.Fatalf("records:%s", dump(recs))
	}
	if got := lines(t, filepath.Join(h.dir, "acted")); got != nil {
		t.Fatalf("acted before approval: %v", got)
	}
	if code, _ := post(t, fmt.Sprintf("%s/api/v1/actions/%d/approve", url, recs[0].ID), ""); code != http.StatusUnauthorized {
		t.Fatalf("approve without token: %d", code)
	}
	if code, body := post(t, fmt.Sprintf("%s/api/v1/actions/%d/approve", url, recs[0].ID), "tok"); code != http.StatusOK {
		t.Fatalf("approve: %d %s", code, body)
	}
	h.settle()
	// A second one is denied.
	h.fire(map[string]string{"alertname": "Broken", "target": "b"})
	recs = h.waitRecords(3)
	if code, body := post(t, fmt.Sprintf("%s/api/v1/actions/%d/deny", url, recs[2].ID), "tok"); code != http.StatusOK {
		t.Fatalf("deny: %d %s", code, body)
	}
	recs = h.settle()
	if got := results(recs); got != "pending_approval success pending_approval vetoed(approval)" {
		t.Fatalf("results %q%s", got, dump(recs))
	}
	if got := strings.Join(lines(t, filepath.Join(h.dir, "acted")), ","); got != "a" {
		t.Fatalf("acted: %s", got)
	}
	if code, _ := post(t, url+"/api/v1/actions/999/approve", "tok"); code != http.StatusNotFound {
		t.Fatalf("approving an unknown action: %d", code)
	}
}

func TestActionsJSONAndEventStream(t *testing.T) {
	h := startEngine(t, `
dry_run: false
policies:
  runbook_url: https://runbooks.example/x
  routes:`+touchPolicy)
	url := serve(t, h.e)
	h.fire(map[string]string{"alertname": "Broken", "target": "a"})
	h.settle()

	resp, err := http.Get(url + "/api/v1/actions?limit=10")
	if err != nil {
		t.Fatal(err)
	}
	var ar ActionsResponse
	if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ar.DryRun || ar.Paused || ar.Agent != "node-a" || len(ar.Actions) != 1 || ar.Actions[0].RunbookURL != "https://runbooks.example/x" {
		t.Fatalf("answer: %+v", ar)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/api/v1/actions", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	events := make(chan Record, 10)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var r Record
				if json.Unmarshal([]byte(d), &r) == nil {
					events <- r
				}
			}
		}
	}()
	next := func() Record {
		select {
		case r := <-events:
			return r
		case <-time.After(60 * time.Second):
			t.Fatal("no event")
		}
		return Record{}
	}
	// The backlog first, then a new decision as it happens.
	if r := next(); r.ID != 1 || r.Result != ResultSuccess {
		t.Fatalf("first event: %+v", r)
	}
	h.fire(map[string]string{"alertname": "Broken", "target": "b"})
	if r := next(); r.ID != 2 || r.Target.Name != "b" {
		t.Fatalf("live event: %+v", r)
	}
	cancel()
	for range events {
	}
}
