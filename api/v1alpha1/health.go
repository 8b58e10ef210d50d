package v1alpha1

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Health is what kstatus (and so Flux's health checks, `kubectl wait` and
// the Argo CD health check in docs/gitops.md) makes of an object.
type Health string

const (
	// HealthCurrent: the object is in the state its spec asks for (Ready=True).
	HealthCurrent Health = "Current"
	// HealthInProgress: the operator is getting there (Reconciling=True).
	HealthInProgress Health = "InProgress"
	// HealthFailed: it will not get there without a human (Stalled=True).
	HealthFailed Health = "Failed"
)

// HealthVerdict is the health of an object with the reason and message of
// the condition that carries it.
// +kubebuilder:object:generate=false
type HealthVerdict struct {
	Health  Health
	Reason  string
	Message string
}

// Ready reasons of a Tenant that need a human: the spec asks for what
// cannot be (reactivating an erased tenant), or the cluster refuses it.
var tenantStalledReasons = map[string]bool{
	ReasonNamespaceConflict:    true,
	ReasonStorageUnsupported:   true,
	ReasonHTTPRouteNotAccepted: true,
	ReasonReactivationRefused:  true,
}

// TenantHealth decides a Tenant's health from its status. Settled: an
// Active tenant, a Deactivated tenant waiting out its grace period (the
// operator has nothing to do until the scheduled time, which may be days
// away) and an Erased tenant. Failed: a conflict or refusal that only a
// human can lift, and an erasure at risk of its 14-day deadline (it goes
// on, but someone must look now). Everything else is in progress.
func TenantHealth(t *Tenant) HealthVerdict {
	if c := meta.FindStatusCondition(t.Status.Conditions, ConditionErasureAtRisk); c != nil && c.Status == metav1.ConditionTrue {
		return HealthVerdict{HealthFailed, ConditionErasureAtRisk, c.Message}
	}
	v, ready := fromReady(t.Status.Conditions)
	if ready != nil && ready.Status != metav1.ConditionTrue &&
		(t.Status.Phase == TenantPhaseFailed || tenantStalledReasons[ready.Reason]) {
		v.Health = HealthFailed
	}
	return v
}

// fromReady is the verdict of Ready alone: Current when True, in progress
// otherwise (what kstatus itself makes of Ready). It returns Ready too.
func fromReady(conds []metav1.Condition) (HealthVerdict, *metav1.Condition) {
	ready := meta.FindStatusCondition(conds, ConditionReady)
	switch {
	case ready == nil:
		return HealthVerdict{HealthInProgress, ReasonProgressing, "not yet reconciled"}, nil
	case ready.Status == metav1.ConditionTrue:
		return HealthVerdict{HealthCurrent, ready.Reason, ready.Message}, ready
	}
	return HealthVerdict{HealthInProgress, ready.Reason, ready.Message}, ready
}

// MetaChannelHealth decides a MetaChannel's health. A channel is settled
// only when it is served (Ready=True). Every reason it is not served needs a
// human: a Secret to create or fix, a claim held by another channel, a
// namespace that is not an Active tenant's. The operator keeps checking, so
// the channel turns Current by itself once the cause is gone.
func MetaChannelHealth(ch *MetaChannel) HealthVerdict {
	v, ready := fromReady(ch.Status.Conditions)
	if ready != nil && v.Health == HealthInProgress {
		v.Health = HealthFailed
	}
	return v
}

// DeletionRequestHealth decides a DeletionRequest's health from its phase.
// Completed is settled. Refused and Failed are final and need a human: the
// request must be filed again, correctly. An unfinished request at risk of
// its 30-day deadline needs a human now. Pending and Running are in progress.
func DeletionRequestHealth(dr *DeletionRequest) HealthVerdict {
	v, _ := fromReady(dr.Status.Conditions)
	switch dr.Status.Phase {
	case DeletionCompleted:
		v.Health = HealthCurrent
		return v
	case DeletionRefused, DeletionFailed:
		v.Health = HealthFailed
		return v
	}
	if c := meta.FindStatusCondition(dr.Status.Conditions, ConditionAtRisk); c != nil && c.Status == metav1.ConditionTrue {
		return HealthVerdict{HealthFailed, ConditionAtRisk, c.Message}
	}
	v.Health = HealthInProgress
	return v
}

// SetHealthConditions writes Reconciling and Stalled for a verdict, both
// always present (False when they do not apply), stamped with generation.
func SetHealthConditions(conds *[]metav1.Condition, generation int64, v HealthVerdict) {
	set := func(typ string, on bool) {
		st, reason, msg := metav1.ConditionFalse, string(v.Health), ""
		if on {
			st, reason, msg = metav1.ConditionTrue, v.Reason, v.Message
		}
		if reason == "" {
			reason = string(v.Health)
		}
		meta.SetStatusCondition(conds, metav1.Condition{
			Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation,
		})
	}
	set(ConditionReconciling, v.Health == HealthInProgress)
	set(ConditionStalled, v.Health == HealthFailed)
}

// MetaAppHealth decides a MetaApp's health. Ready=True is settled. A Secret
// missing or empty needs a human (Failed); anything else (pods starting) is
// in progress.
func MetaAppHealth(a *MetaApp) HealthVerdict {
	v, ready := fromReady(a.Status.Conditions)
	if ready != nil && ready.Status != metav1.ConditionTrue && metaAppStalledReasons[ready.Reason] {
		v.Health = HealthFailed
	}
	return v
}
