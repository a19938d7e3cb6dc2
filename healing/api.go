package healing

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ActionsResponse is the body of GET /api/v1/actions.
type ActionsResponse struct {
	Paused  bool     `json:"paused"`
	DryRun  bool     `json:"dry_run"`
	Agent   string   `json:"agent"`
	Actions []Record `json:"actions"`
}

// Routes registers the engine's HTTP endpoints through handle:
//
//	GET  /api/v1/actions                 recent records (JSON), or a
//	                                     Server-Sent Events stream with
//	                                     Accept: text/event-stream
//	POST /api/v1/healing/pause           pause every action  (bearer token)
//	POST /api/v1/healing/resume          resume              (bearer token)
//	POST /api/v1/actions/{id}/approve    approve a pending action (bearer token)
//	POST /api/v1/actions/{id}/deny       deny a pending action    (bearer token)
func (e *Engine) Routes(handle func(pattern string, h http.Handler)) {
	handle("GET /api/v1/actions", http.HandlerFunc(e.serveActions))
	handle("POST /api/v1/healing/pause", e.authed(func(w http.ResponseWriter, r *http.Request) {
		e.Pause()
		e.logger.Warn("remediation paused through the API", "remote", r.RemoteAddr)
		fmt.Fprintln(w, "remediation paused")
	}))
	handle("POST /api/v1/healing/resume", e.authed(func(w http.ResponseWriter, r *http.Request) {
		e.Resume()
		e.logger.Warn("remediation resumed through the API", "remote", r.RemoteAddr)
		fmt.Fprintln(w, "remediation resumed")
	}))
	answer := func(ok bool) http.Handler {
		return e.authed(func(w http.ResponseWriter, r *http.Request) {
			id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
			if err != nil {
				http.Error(w, "bad record id", http.StatusBadRequest)
				return
			}
			if !e.Approve(id, ok) {
				http.Error(w, fmt.Sprintf("no action %d is waiting for approval", id), http.StatusNotFound)
				return
			}
			e.logger.Warn("pending remediation answered through the API", "id", id, "approved", ok, "remote", r.RemoteAddr)
			if ok {
				fmt.Fprintf(w, "action %d approved\n", id)
			} else {
				fmt.Fprintf(w, "action %d denied\n", id)
			}
		})
	}
	handle("POST /api/v1/actions/{id}/approve", answer(true))
	handle("POST /api/v1/actions/{id}/deny", answer(false))
}

// authed requires "Authorization: Bearer <token>" matching the content of
// healing.auth_token_file, read on each request so a rotated token takes
// effect at once. Without a token file every request is refused.
func (e *Engine) authed(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file := e.cfg.Load().AuthTokenFile
		if file == "" {
			http.Error(w, "state-changing endpoints are disabled: set healing.auth_token_file", http.StatusForbidden)
			return
		}
		want, err := os.ReadFile(file)
		tok := strings.TrimSpace(string(want))
		if err != nil || tok == "" {
			e.logger.Error("cannot read the healing API token; refusing the request", "file", file, "err", err)
			http.Error(w, "the API token cannot be read; refusing", http.StatusForbidden)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(tok)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}

func (e *Engine) serveActions(w http.ResponseWriter, r *http.Request) {
	limit := 100
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
			return
		}
		limit = n
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		e.streamActions(w, r, limit)
		return
	}
	resp := ActionsResponse{Paused: e.Paused(), DryRun: e.cfg.Load().DryRun, Agent: e.env.Identity, Actions: e.History().Recent(limit)}
	if resp.Actions == nil {
		resp.Actions = []Record{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

// streamActions sends the last limit records, then every new one, as
// Server-Sent Events ("event: action", "id: <record id>", "data: <JSON>").
// A comment line every 15 s keeps proxies from closing the stream.
func (e *Engine) streamActions(w http.ResponseWriter, r *http.Request, limit int) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	sub := e.History().Subscribe(256)
	defer sub.Close()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	var last uint64
	send := func(rec Record) bool {
		if rec.ID <= last {
			return true
		}
		last = rec.ID
		b, _ := json.Marshal(rec)
		if _, err := fmt.Fprintf(w, "event: action\nid: %d\ndata: %s\n\n", rec.ID, b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	for _, rec := range e.History().Recent(limit) {
		if !send(rec) {
			return
		}
	}
	fl.Flush()
	keep := time.NewTicker(15 * time.Second)
	defer keep.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-e.doneChan():
			return
		case rec, ok := <-sub.C():
			if !ok || !send(rec) {
				return
			}
		case <-keep.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func (e *Engine) doneChan() <-chan struct{} {
	if e.ctx == nil {
		return nil
	}
	return e.ctx.Done()
}
