package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-agent/vigil/internal/fuzztest"
)

// fuzzRecord is one remediation record as /api/v1/actions writes it.
const fuzzRecord = `{"id":7,"time":"2026-12-03T07:00:00Z","incident":"i-1","policy":"clean-tmp","step":0,"action":"exec","target":{"node":"n1"},"args":{"command":["/bin/true"]},"alert":"DiskFull","alert_labels":{"alertname":"DiskFull","instance":"n1"},"result":"success","dry_run":false,"duration_seconds":0.01,"node":"n1","agent":"n1"}`

// FuzzStatusStream fuzzes the decoders of `vigil status`: the event
// stream of `vigil status --follow` (followOnce: Server-Sent Events lines,
// each record JSON) and the one-shot answer (runStatus: an
// ActionsResponse), both served by a test server with the fuzzed body.
// Oracle: fuzztest.Bounded (no panic, at most fuzztest.AllocBudget bytes per body,
// no hang) and runStatus exits 0 or 1.
func FuzzStatusStream(f *testing.F) {
	f.Add([]byte("event: action\ndata: " + fuzzRecord + "\n\n: keep-alive\n\ndata: " + strings.Replace(fuzzRecord, `"id":7`, `"id":8`, 1) + "\n\n"))
	f.Add([]byte(`{"paused":true,"dry_run":true,"agent":"n1","actions":[` + fuzzRecord + `]}`))
	f.Add([]byte("data: {\"id\":1,\"time\":\"x\"}\ndata: null\ndata: \ndata: [1,2]\n"))
	f.Add([]byte("data: " + strings.Repeat("a", 70<<10) + "\n"))
	var mu sync.Mutex
	var body []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	u, err := actionsURL(srv.URL, 10)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mu.Lock()
		body = data
		mu.Unlock()
		fuzztest.Bounded(t, data, func() error {
			var last printed
			if streamed, _ := followOnce(u, "", &last, statusTable(io.Discard), io.Discard); !streamed {
				return fmt.Errorf("a 200 answer was not taken for a stream")
			}
			if code := runStatus(srv.URL, 10, "", io.Discard, io.Discard); code != 0 && code != 1 {
				return fmt.Errorf("runStatus exited %d", code)
			}
			return nil
		})
	})
}
