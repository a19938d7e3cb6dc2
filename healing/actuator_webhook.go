package healing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// webhook POSTs the alert, the policy and every record of the runbook so
// far as JSON to an escalation endpoint (a pager, a chat bridge).
type webhook struct{}

func init() { Register(webhook{}) }

func (webhook) Name() string { return "webhook" }
func (webhook) Scope() Scope { return ScopeNode }
func (webhook) Doc() string {
	return "POSTs `{alert, policy, runbook_url, reason, tried: [records…], agent}`; `alert` is `{labels, annotations, state, source, starts_at, ends_at, generator_url, fingerprint}` (empty ones left out)"
}
func (webhook) Params() []Param {
	return []Param{
		{Name: "url", Required: true, Fixed: true, Check: checkURL, Doc: "http(s) URL to POST to"},
		{Name: "bearer_token_file", Fixed: true, Check: checkAbs, Doc: "file holding a bearer token for the Authorization header"},
	}
}
func (webhook) Target(a Args) Target {
	host := a.Str("url")
	if u, err := url.Parse(host); err == nil {
		host = u.Host
	}
	return Target{Kind: "Webhook", Name: host}
}

// Notifies marks webhook as a notification: its cooldown is kept per
// alert and receiver (guardCooldown).
func (webhook) Notifies() bool { return true }

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("must be an http or https URL, got %q", s)
	}
	return nil
}

func (webhook) Act(ctx context.Context, env *Env, in Request) (Outcome, error) {
	a := in.Args
	payload := in.Escalation
	if payload == nil {
		payload = &Escalation{}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return Outcome{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.Str("url"), bytes.NewReader(body))
	if err != nil {
		return Outcome{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "vigil-healing")
	if f := a.Str("bearer_token_file"); f != "" {
		tok, err := os.ReadFile(f)
		if err != nil {
			return Outcome{}, fmt.Errorf("bearer token: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := env.HTTP.Do(req)
	if err != nil {
		return Outcome{}, fmt.Errorf("POST %s: %w", a.Str("url"), err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return Outcome{}, fmt.Errorf("POST %s: %s: %s", a.Str("url"), resp.Status, strings.TrimSpace(string(msg)))
	}
	return Outcome{Message: fmt.Sprintf("escalated to %s (%s)", req.URL.Host, resp.Status)}, nil
}
