//go:build linux

package faults

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func init() { extraScenarios = append(extraScenarios, hungScenario) }

// hung: one of three replicas reads every request and answers none (fault
// app mode hang); its process stays alive and it sets no liveness probe,
// so the kubelet would never restart it. Vigil sees requests read and not
// answered (VigilWorkloadNotAnswering, on evidence: docs/detection.md) and
// the policy replaces that pod.
func hungScenario() scenario {
	return podFault("hung", false, "web", appOpts{replicas: 3}, 30, "hang",
		func(ctx context.Context, t *testing.T, e *env, ns, pod string) string {
			if p, err := e.c.client.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{}); err == nil && p.DeletionTimestamp == nil {
				t.Errorf("hung: the hung pod %s is still there", pod)
			}
			return "hung pod replaced; traffic clean"
		})
}
