package faults

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// scheduledJob is the bystander batch job: a CronJob whose Jobs run the
// fault app for a few seconds and exit 0, every minute, with the alerts
// seen about its pods while it runs.
type scheduledJob struct {
	c        *cluster
	ns, name string
	from     time.Time

	mu      sync.Mutex
	firing  []string // alerts about its pods seen firing, once each
	pending []string // and pending
}

// startCronJob creates CronJob ns/name, every minute: each Job's one pod
// (restartPolicy Never) serves for runFor in mode restart, then shuts
// down cleanly and exits 0, as a batch job that did its work. Until the
// test ends it polls the agent's alerts every 2 s for any about the Job's
// pods (its pods' names start with name).
func (c *cluster) startCronJob(t *testing.T, a *agentProc, ns, name string, runFor time.Duration) *scheduledJob {
	t.Helper()
	tmpl := c.podTemplate(ns, name, appOpts{env: map[string]string{"FAULTS_MODE": "restart", "FAULTS_RESTART_EVERY": runFor.String()}})
	tmpl.Labels = map[string]string{"app": name}
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: batchv1.CronJobSpec{
			Schedule:          "* * * * *",
			ConcurrencyPolicy: batchv1.ForbidConcurrent,
			// Every Job of the longest pass stays, to be counted.
			SuccessfulJobsHistoryLimit: ptr.To[int32](100),
			FailedJobsHistoryLimit:     ptr.To[int32](100),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template:     tmpl,
			}},
		},
	}
	if _, err := c.client.BatchV1().CronJobs(ns).Create(t.Context(), cj, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	j := &scheduledJob{c: c, ns: ns, name: name, from: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			al, err := a.alerts(ctx, j.isAbout)
			if err == nil {
				j.note(al)
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Second):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return j
}

// isAbout says whether an alert is about one of the Job's pods or Jobs.
func (j *scheduledJob) isAbout(l map[string]string) bool {
	return l["namespace"] == j.ns && (strings.HasPrefix(l["pod"], j.name+"-") || strings.HasPrefix(l["owner_name"], j.name+"-") || l["owner_name"] == j.name)
}

// note records alerts, once per name, state and pod.
func (j *scheduledJob) note(alerts []apiAlert) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, a := range alerts {
		list := &j.pending
		if a.State == "firing" {
			list = &j.firing
		}
		key := a.Labels["alertname"] + " " + a.State + " " + a.Labels["pod"]
		if !slices.ContainsFunc(*list, func(s string) bool { return strings.HasPrefix(s, key+" ") }) {
			*list = append(*list, key+" "+a.String())
		}
	}
}

// alerts returns the alerts seen about the Job's pods, firing and pending.
func (j *scheduledJob) alerts() (firing, pending []string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.firing), slices.Clone(j.pending)
}

// runs counts the CronJob's Jobs: all of them, those that succeeded (their
// pod exited 0) and those that failed.
func (j *scheduledJob) runs(ctx context.Context) (all, succeeded, failed int, err error) {
	l, err := j.c.client.BatchV1().Jobs(j.ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, 0, 0, err
	}
	for _, job := range l.Items {
		if !slices.ContainsFunc(job.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "CronJob" && o.Name == j.name }) {
			continue
		}
		all++
		switch {
		case job.Status.Succeeded > 0:
			succeeded++
		case job.Status.Failed > 0:
			failed++
		}
	}
	return all, succeeded, failed, nil
}
