package controllers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Retention (spec.retention) is carried out by the worker, the only component that
// reaches the tenant's store: the operator passes the maximum age on the worker's
// command line (WorkerArgs), and shows in status.retention the policy in force and the
// worker's last run, which the worker reports in the ConfigMap below. The worker has no
// access to Tenants; its Role lets it patch that one ConfigMap and no other.

// retentionArgs are the worker's retention flags: none when spec.retention is unset,
// so that removing the policy removes the flag (and the worker keeps everything).
func retentionArgs(t *platformv1.Tenant) []string {
	if t.Spec.Retention == nil {
		return nil
	}
	return []string{"--retention-max-age=" + t.Spec.Retention.MessagesMaxAge.Duration.String()}
}

// desiredWorkerReport is the worker's report ConfigMap: created empty, owned by the
// Tenant, labelled so that the operator's cache holds it. Its data is the worker's (the
// operator applies no data field, so server-side apply never takes it back).
func desiredWorkerReport(t *platformv1.Tenant) *corev1ac.ConfigMapApplyConfiguration {
	return corev1ac.ConfigMap(platformv1.WorkerReportName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t))
}

// reconcileRetention ensures the report ConfigMap and shows the policy in force and
// its last run in status, the worker's shared-files counts (status.files) and how far
// its encryption pass got (status.encryption.sealedVersion).
func (r *TenantReconciler) reconcileRetention(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	cm := &corev1.ConfigMap{}
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: platformv1.WorkerReportName}
	created, err := applyIfChanged(ctx, r.Client, key, cm, desiredWorkerReport(t), corev1ac.ExtractConfigMap)
	if err != nil {
		return nil, fmt.Errorf("ensure worker report configmap: %w", err)
	}
	if created {
		logCreated(ctx, "ConfigMap", cm)
	}
	t.Status.Retention = retentionStatus(t, cm.Data[platformv1.WorkerReportRetentionKey])
	t.Status.Files = filesStatus(cm.Data[platformv1.WorkerReportMediaKey], t.Status.Files)
	t.Status.Encryption = encryptionProgress(t.Status.Encryption, cm.Data[platformv1.WorkerReportEncryptionKey])
	return nil, nil
}

// retentionStatus is status.retention: nil without a policy; the policy's age; and the
// worker's last run if the report is of a run under that same age (after a change, the
// new worker runs at start and reports again). A report that does not decode as a
// well-formed RetentionStatus is ignored: the worker's word is not trusted to write
// the Tenant's status as it likes.
func retentionStatus(t *platformv1.Tenant, report string) *platformv1.RetentionStatus {
	if t.Spec.Retention == nil {
		return nil
	}
	st := &platformv1.RetentionStatus{MessagesMaxAge: &metav1.Duration{Duration: t.Spec.Retention.MessagesMaxAge.Duration}}
	var rep platformv1.RetentionStatus
	dec := json.NewDecoder(bytes.NewReader([]byte(report)))
	dec.DisallowUnknownFields()
	if report == "" || dec.Decode(&rep) != nil || !wellFormed(&rep) || rep.MessagesMaxAge.Duration != st.MessagesMaxAge.Duration {
		return st
	}
	st.Interval, st.LastRunAt, st.LastRunResult, st.LastRunPruned = rep.Interval, rep.LastRunAt, rep.LastRunResult, rep.LastRunPruned
	return st
}

func wellFormed(r *platformv1.RetentionStatus) bool {
	c := r.LastRunPruned
	return r.MessagesMaxAge != nil && r.Interval != nil && r.Interval.Duration > 0 && r.LastRunAt != nil &&
		(r.LastRunResult == platformv1.RetentionRunSucceeded || r.LastRunResult == platformv1.RetentionRunFailed) &&
		c != nil && c.Messages >= 0 && c.Statuses >= 0 && c.Files >= 0 && c.Contacts >= 0
}
