package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"go.uber.org/goleak"

	"github.com/vigil-agent/vigil/agent"
	_ "github.com/vigil-agent/vigil/components"
	"github.com/vigil-agent/vigil/rules"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ms(v ...int) []time.Duration {
	out := make([]time.Duration, len(v))
	for i, x := range v {
		out[i] = time.Duration(x) * time.Millisecond
		if x < 0 {
			out[i] = missed
		}
	}
	return out
}

func TestSummarize(t *testing.T) {
	for _, c := range []struct {
		name        string
		in          []time.Duration
		acted       int
		median, p99 time.Duration
	}{
		{"odd count", ms(50, 10, 40, 20, 30), 5, 30 * time.Millisecond, 50 * time.Millisecond},
		{"even count takes the lower middle", ms(4, 1, 3, 2), 4, 2 * time.Millisecond, 4 * time.Millisecond},
		{"missed faults are left out", ms(-1, 7, -1, 9, 8), 3, 8 * time.Millisecond, 9 * time.Millisecond},
		{"all missed", ms(-1, -1), 0, 0, 0},
	} {
		s := summarize(c.in)
		if s.faults != len(c.in) || s.acted != c.acted || s.median != c.median || s.p99 != c.p99 {
			t.Errorf("%s: summarize(%v) = %+v, want %d faults, %d acted, median %s, p99 %s", c.name, c.in, s, len(c.in), c.acted, c.median, c.p99)
		}
	}
	// With 200 values 1..200 ms the p99 is the 198th value, not the maximum.
	var many []time.Duration
	for i := 200; i >= 1; i-- {
		many = append(many, time.Duration(i)*time.Millisecond)
	}
	if s := summarize(many); s.median != 100*time.Millisecond || s.p99 != 198*time.Millisecond {
		t.Errorf("1..200 ms: median %s p99 %s, want 100ms and 198ms", s.median, s.p99)
	}
}

func TestRatioAndFormat(t *testing.T) {
	if got := ratio(6*time.Second, 20*time.Millisecond, true); got != "300×" {
		t.Errorf("ratio = %q, want 300×", got)
	}
	if got := ratio(6*time.Second, 500*time.Millisecond, true); got != "12.0×" {
		t.Errorf("ratio = %q, want 12.0×", got)
	}
	if got := ratio(6*time.Second, 0, false); got != "–" {
		t.Errorf("ratio without data = %q, want –", got)
	}
	if got := seconds(420 * time.Millisecond); got != "420 ms" {
		t.Errorf("seconds = %q", got)
	}
	if got := seconds(5576 * time.Millisecond); got != "5.58 s" {
		t.Errorf("seconds = %q", got)
	}
}

// The configuration the benchmark gives Vigil loads with the agent's own
// loader (which also loads the local rule file and the policies), and the
// Prometheus rule file is a valid Prometheus rule file.
func TestGeneratedConfigs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := settings{localInterval: 250 * time.Millisecond, window: "15s"}
	p := stack{token: write("token", "secret\n")}
	p.localRules = write("local.rules.yml", rulesYAML("faultbench-local", "local", s.window))
	p.promRules = write("prometheus.rules.yml", rulesYAML("faultbench-conventional", "conventional", s.window))
	cfgFile := write("vigil.yaml", vigilYAML(s, p, "http://127.0.0.1:1", filepath.Join(dir, "maintenance")))
	if _, err := agent.LoadFile(cfgFile); err != nil {
		t.Fatalf("vigil config: %v\n%s", err, vigilYAML(s, p, "http://127.0.0.1:1", "m"))
	}
	for _, f := range []string{p.localRules, p.promRules} {
		// Legacy name validation: the Prometheus here is 2.42.
		rg, errs := rulefmt.ParseFile(f, false, model.LegacyValidation, rules.Parser, slog.New(slog.DiscardHandler))
		if len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		var names []string
		for _, g := range rg.Groups {
			for _, r := range g.Rules {
				names = append(names, r.Alert+"/"+r.Labels["path"]+"/"+r.For.String())
			}
		}
		want := "FaultbenchHTTP5xx/local/0s"
		if f == p.promRules {
			want = "FaultbenchHTTP5xx/conventional/0s,FaultbenchCrash/conventional/0s"
		}
		if got := strings.Join(names, ","); got != want {
			t.Errorf("%s: rules %s, want %s", f, got, want)
		}
	}
	// A broken policy is refused by the same loader, so the test above
	// would catch a policy Vigil does not accept.
	bad := strings.Replace(vigilYAML(s, p, "http://127.0.0.1:1", "m"), "action: webhook", "action: webhok", 1)
	if _, err := agent.Load("bad.yaml", []byte(bad)); err == nil || !strings.Contains(err.Error(), "webhok") {
		t.Errorf("a config with an unknown action loaded: %v", err)
	}
}
