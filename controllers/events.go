package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// ReasonProvisioned is the reason of the one Normal Event of a normal
// provisioning: the Tenant became Ready.
const ReasonProvisioned = "Provisioned"

// logCreated records that a child object was created. A log line, not an
// Event: ten Events per tenant said nothing the Tenant's conditions do not,
// and at thousands of tenants they were noise and load on etcd.
func logCreated(ctx context.Context, kind string, obj client.Object) {
	logf.FromContext(ctx).V(1).Info("Created object", "kind", kind, "object", klog.KObj(obj))
}

// becameReady says whether a status write turns the Tenant's Ready
// condition True: the moment a provisioning (or a recovery) completes.
func becameReady(orig, t *platformv1.Tenant) bool {
	return !meta.IsStatusConditionTrue(orig.Status.Conditions, platformv1.ConditionReady) &&
		meta.IsStatusConditionTrue(t.Status.Conditions, platformv1.ConditionReady)
}

// distinctWarnings is an Event recorder that no aggregation can make hide a
// Warning. The events.k8s.io recorder folds an Event into an earlier one of
// the same type, reason, action and objects within six minutes, keeping
// only the first note and counting the rest as a series: a second Warning
// with a different message (another step failing, another deadline) would
// be invisible. Warnings therefore carry a short digest of their note in
// their action, so that only a true repetition joins a series. Normal
// Events are left to aggregate.
type distinctWarnings struct {
	events.EventRecorder
}

// Eventf records the event, a Warning with its note's digest in the action.
func (r distinctWarnings) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	if eventtype == corev1.EventTypeWarning {
		msg := fmt.Sprintf(note, args...)
		r.EventRecorder.Eventf(regarding, related, eventtype, reason, warningAction(action, msg), "%s", msg)
		return
	}
	r.EventRecorder.Eventf(regarding, related, eventtype, reason, action, note, args...)
}

// warningAction appends a digest of note to action ("Erase/1a2b3c4d").
func warningAction(action, note string) string {
	sum := sha256.Sum256([]byte(note))
	return action + "/" + hex.EncodeToString(sum[:4])
}
