package healing

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/testenv"
)

func TestHAProxyActuatorsAgainstRealHAProxy(t *testing.T) {
	b0 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("s0")) }))
	defer b0.Close()
	b1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("s1")) }))
	defer b1.Close()
	hp := testenv.StartHAProxy(t, strings.TrimPrefix(b0.URL, "http://"), strings.TrimPrefix(b1.URL, "http://"))

	h := startEngine(t, `
dry_run: false
policies:
  routes:
    - name: reroute-host
      matchers: ['alertname="BackendErrors"']
      steps:
        - action: haproxy_state
          params: {socket: "`+hp.AdminSocket+`", backend: "{{.backend}}", server: "{{.server}}", state: "{{.state}}"}
    - name: weigh
      matchers: ['alertname="BackendSlow"']
      steps:
        - action: haproxy_weight
          params: {socket: "`+hp.AdminSocket+`", backend: "{{.backend}}", server: "{{.server}}", weight: "{{.weight}}"}
`)
	for i, c := range []struct{ state, want string }{{"drain", "DRAIN"}, {"maint", "MAINT"}, {"ready", "no check"}} {
		h.fire(map[string]string{"alertname": "BackendErrors", "backend": "be", "server": "s1", "state": c.state, "i": c.want})
		recs := h.settle()
		if r := recs[i]; r.Result != ResultSuccess {
			t.Fatalf("set %s:%s", c.state, dump(recs))
		}
		if got, err := hp.ServerStatus("be", "s1"); err != nil || got != c.want {
			t.Fatalf("after %s: status %q, %v; want %q", c.state, got, err, c.want)
		}
	}
	h.fire(map[string]string{"alertname": "BackendSlow", "backend": "be", "server": "s0", "weight": "10"})
	recs := h.settle()
	if r := recs[len(recs)-1]; r.Result != ResultSuccess || r.Target.String() != "HAProxyServer "+hp.AdminSocket+"/be/s0" {
		t.Fatalf("set weight:%s", dump(recs))
	}
	if out, err := hp.Command("get weight be/s0"); err != nil || !strings.HasPrefix(out, "10 ") {
		t.Fatalf("get weight: %q, %v", out, err)
	}
	// HAProxy's refusal (an unknown server) is a failed action with its
	// own words.
	h.fire(map[string]string{"alertname": "BackendErrors", "backend": "be", "server": "nope", "state": "drain"})
	recs = h.settle()
	if r := recs[len(recs)-1]; r.Result != ResultFailed || !strings.Contains(r.Reason, "haproxy refused") || !strings.Contains(r.Reason, "No such server") {
		t.Fatalf("unknown server:%s", dump(recs))
	}
}
