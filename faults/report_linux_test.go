package faults

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// writeReport prints the suite's table and writes it, as Markdown, to
// $FAULTS_REPORT when set (`make faults` writes docs/faults-report.md). The
// kubelet columns are the real kubelet's part (restarts, CrashLoopBackOff
// seen, last state) for the pods of the scenario's app; they are empty on
// the stand-in.
func writeReport(t *testing.T, runner string, results []result, full bool) {
	sort.SliceStable(results, func(i, j int) bool {
		if results[i].Mode != results[j].Mode {
			return results[i].Mode == "live"
		}
		return results[i].Scenario < results[j].Scenario
	})
	var b strings.Builder
	form := "short form (`make test`)"
	if full {
		form = "full (`make faults`)"
	}
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "<!-- written by the fault suite (faults/, %s, %s) on %s, %s; do not edit -->\n\n", runner, form, host, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintf(&b, "### %s\n\n", runnerTitle[runner])
	b.WriteString("| scenario | mode | detected (alert) | first action | time to action | time to healthy | end state | actions at fault | would-be (dry-run) | collateral actions | kubelet restarts | CrashLoopBackOff | kubelet last state | notes |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range results {
		det := "no"
		if r.Detected {
			det = "yes (" + r.Alert + ")"
		}
		toAct, toHealthy := "—", "—"
		if r.Detected {
			toAct = fmtDur(r.ToAction)
		}
		if r.ToHealthy > 0 {
			toHealthy = fmtDur(r.ToHealthy)
		}
		restarts, backoff, last := "—", "—", "—"
		if v := r.Kubelet; v != nil {
			restarts = fmt.Sprintf("%d (%d pods)", v.Restarts, v.Pods)
			backoff = "no"
			if v.CrashLoopSeen {
				backoff = "seen"
			}
			last = "none"
			if v.HasLastState {
				last = fmt.Sprintf("%s, exit %d", v.LastReason, v.LastExitCode)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %s | %s | %s | %s |\n",
			r.Scenario, r.Mode, det, r.Action, toAct, toHealthy, r.Healthy, r.Actions, r.DryRuns, r.Collateral,
			restarts, backoff, last, r.Notes)
	}
	t.Logf("fault suite report (%s):\n%s", runner, b.String())
	// Both runners' tables go into one file, the real node's first.
	reportMu.Lock()
	defer reportMu.Unlock()
	reportSections[runner] = b.String()
	if f := os.Getenv("FAULTS_REPORT"); f != "" {
		var all []string
		for _, r := range []string{"real node", "stand-in"} {
			if s, ok := reportSections[r]; ok {
				all = append(all, s)
			}
		}
		if err := os.WriteFile(f, []byte(strings.Join(all, "\n")), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
}

// runnerTitle heads each runner's table in the report.
var runnerTitle = map[string]string{
	"real node": "On the real node (kubelet, containerd, runc; Vigil installed from the Helm chart)",
	"stand-in":  "With the stand-in kubelet (kwok nodes, the vigil binary as a process)",
}

var (
	reportMu       sync.Mutex
	reportSections = map[string]string{}
)

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
