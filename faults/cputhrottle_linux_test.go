package faults

import (
	"testing"
	"time"
)

func init() { extraScenarios = append(extraScenarios, cputhrottleScenario) }

// cputhrottle: a one-replica Deployment limited to 100m of CPU starts
// burning every CPU it may use (fault app mode cpuburn): the kernel
// throttles it in nearly every CFS period. Vigil sees more than half of its
// quota periods throttled for 2 minutes (VigilWorkloadCPUThrottled). The
// right action is none: restarting adds no CPU, and a larger limit or more
// replicas is a capacity decision; the policy only escalates, and the suite
// checks that the escalation came and that nothing was touched. The
// replica gets no traffic here, so that its own latency alert (which the
// saturation policy answers by scaling) does not mix in: that is the
// saturation scenario's case.
func cputhrottleScenario() scenario {
	return scenario{
		name: "cputhrottle", long: true, notify: true, app: "burner",
		setup: func(t *testing.T, e *env, ns string) any {
			e.c.deploy(t, ns, "burner", appOpts{replicas: 1, cpuLimit: "100m"})
			return nil
		},
		inject: func(t *testing.T, e *env, ns string, _ any) time.Time {
			control(t, e.ctrl, "app-"+ns+"-burner", "cpuburn")
			return time.Now()
		},
		// Nothing is to be acted on: any action is collateral.
		atFault: func(record, string, any) bool { return false },
		finish:  escalatedOnly("cputhrottle", "nothing touched"),
		clear:   func(t *testing.T, e *env, ns string, _ any) { control(t, e.ctrl, "app-"+ns+"-burner", "") },
	}
}
