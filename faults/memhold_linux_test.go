package faults

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func init() { extraScenarios = append(extraScenarios, memholdScenario) }

// memhold: one of two replicas, limited to 512 MiB, holds 470 MiB and reads
// a 128 MiB file of its emptyDir over and over (fault app mode memhold with
// FAULTS_MEMHOLD_BYTES and FAULTS_MEMHOLD_CHURN): its page cache pushes the
// container's memory cgroup against its limit, so the kernel reclaims on
// every read and the tasks stall, and nothing is OOM-killed. Vigil sees the
// working set over 90 % of the limit with memory stalls (PSI) for 2 minutes
// (VigilWorkloadMemoryAtLimit, on the container's cgroup) and the policy
// replaces that pod, as docs/faults.md recommends (delete_pod, at most 3 an
// hour; raising the limit is a person's call). (With the stand-in kubelet
// this suite had before, the fault app in this mode was OOM-killed.)
//
// The sizes (seen on this node, cgroup v1): the churn's pages are read once
// a cycle and stay on the inactive list (memory.stat: active_file 0), so
// the working set (usage less inactive file) is about the anonymous memory,
// the hold plus the Go runtime's few MiB. Under 128 MiB, 100 and 108 MiB
// held stayed at 0.87 and 0.88 of the limit, under the alert's 0.90, and
// 108 MiB was OOM-killed after 2 minutes (VigilOOMKill acted instead): the
// page cache had too little room to churn in. 470 of 512 MiB sits at 0.93
// with 40 MiB to churn in, and was not killed.
func memholdScenario() scenario {
	const (
		hold  = 470 << 20
		churn = 128 << 20
	)
	sc := podFault("memhold", false, "hog", appOpts{replicas: 2, memoryLimit: "512Mi", scratch: "/scratch", env: map[string]string{
		"FAULTS_MEMHOLD_BYTES": fmt.Sprint(hold),
		"FAULTS_MEMHOLD_CHURN": fmt.Sprint(churn),
		"FAULTS_MEMHOLD_DIR":   "/scratch",
	}}, 10, "memhold",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			// Until Vigil replaced it, the replica sat at its limit: the
			// kubelet never restarted it (no OOM kill). The pod is still
			// there, terminating, when the first action has been taken.
			var restarts int32
			var last string
			if p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil && len(p.Status.ContainerStatuses) > 0 {
				cs := p.Status.ContainerStatuses[0]
				restarts = cs.RestartCount
				if l := cs.LastTerminationState.Terminated; l != nil {
					last = l.Reason
				}
			}
			err := poll(ctx, func() bool {
				p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
				return err != nil || p.DeletionTimestamp != nil
			})
			if restarts > 0 {
				t.Errorf("memhold: the pod at its limit was restarted %d times (last %s): it was to sit at the limit, not die", restarts, last)
			}
			if err != nil {
				t.Errorf("memhold: the pod %s at its memory limit was not replaced", pod)
				return "not replaced"
			}
			return "replaced without an OOM kill; replacement serves"
		})
	sc.long = true
	return sc
}
