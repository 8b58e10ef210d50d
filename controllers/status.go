package controllers

import (
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// setCondition sets one condition, keeping LastTransitionTime unless the
// status flips, so that an unchanged state makes no status write.
func setCondition(conds *[]metav1.Condition, generation int64, typ string, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	meta.SetStatusCondition(conds, metav1.Condition{
		Type: typ, Status: st, Reason: reason, Message: msg, ObservedGeneration: generation,
	})
}

// firstNotTrue returns the first of the given conditions that is not True,
// or nil when all are True.
func firstNotTrue(conds []metav1.Condition, types ...string) *metav1.Condition {
	for _, typ := range types {
		c := meta.FindStatusCondition(conds, typ)
		if c == nil {
			return &metav1.Condition{Type: typ, Status: metav1.ConditionUnknown, Reason: "Pending", Message: typ + " not yet observed"}
		}
		if c.Status != metav1.ConditionTrue {
			return c
		}
	}
	return nil
}
