package healing

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LeaseName is the name of the coordination.k8s.io Lease that guards
// action on target: "vigil-" and a hash of both, so every agent derives
// the same name.
func LeaseName(action string, t Target) string {
	h := sha256.Sum256([]byte(action + "\x00" + t.Kind + "\x00" + t.Namespace + "\x00" + t.Name))
	return "vigil-" + hex.EncodeToString(h[:10])
}

// acquireLease takes the Lease for (action, target) for hold, unless
// another agent holds an unexpired one. It returns the holder when it lost.
// Creation and update use the API server's optimistic concurrency, so of N
// agents racing, exactly one wins.
func (env *Env) acquireLease(ctx context.Context, ns, action string, t Target, hold time.Duration) (won bool, holder string, err error) {
	name := LeaseName(action, t)
	secs := int32((hold + time.Second - 1) / time.Second)
	now := metav1.NewMicroTime(time.Now())
	err = env.kubeDo(ctx, "acquire lease "+ns+"/"+name, func(ctx context.Context) error {
		api := env.Kube.Leases(ns)
		cur, gerr := api.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(gerr) {
			l := &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/managed-by": "vigil"},
					Annotations: map[string]string{"vigil.dev/action": action, "vigil.dev/target": t.String()}},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &env.Identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
			}
			_, cerr := api.Create(ctx, l, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(cerr) {
				won, holder = false, "another agent (it created the lease first)"
				return nil
			}
			if cerr == nil {
				won = true
			}
			return cerr
		}
		if gerr != nil {
			return gerr
		}
		h := ptrOr(cur.Spec.HolderIdentity, "")
		if h != "" && h != env.Identity && cur.Spec.RenewTime != nil && cur.Spec.LeaseDurationSeconds != nil &&
			time.Since(cur.Spec.RenewTime.Time) < time.Duration(*cur.Spec.LeaseDurationSeconds)*time.Second {
			won, holder = false, h
			return nil
		}
		cur.Spec.HolderIdentity = &env.Identity
		cur.Spec.LeaseDurationSeconds = &secs
		cur.Spec.RenewTime = &now
		if h != env.Identity {
			cur.Spec.AcquireTime = &now
			tr := ptrOr(cur.Spec.LeaseTransitions, 0) + 1
			cur.Spec.LeaseTransitions = &tr
		}
		_, uerr := api.Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(uerr) {
			won, holder = false, "another agent (it updated the lease first)"
			return nil
		}
		if uerr == nil {
			won = true
		}
		return uerr
	})
	if err != nil {
		return false, "", fmt.Errorf("lease: %w", err)
	}
	return won, holder, nil
}
