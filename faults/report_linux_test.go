package faults

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeReport prints the suite's table and writes it, as Markdown, to
// $FAULTS_REPORT when set (`make faults` writes docs/faults-report.md). The
// kubelet columns are the kubelet's part (restarts, CrashLoopBackOff seen,
// last state) for the pods of the scenario's app.
func writeReport(t *testing.T, results []result, full bool) {
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
	fmt.Fprintf(&b, "<!-- written by the fault suite (faults/, %s) on %s, %s; do not edit -->\n\n", form, host, time.Now().UTC().Format(time.RFC3339))
	b.WriteString("On the real node of internal/testenv (kubelet, containerd, runc, kube-proxy), Vigil installed from the Helm chart; see docs/faults.md.\n\n")
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
	t.Logf("fault suite report:\n%s", b.String())
	if f := os.Getenv("FAULTS_REPORT"); f != "" {
		if err := os.WriteFile(f, []byte(b.String()), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		}
	}
}

func fmtDur(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.2f s", d.Seconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
