package controllers

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

func retentionTenant(maxAge time.Duration) *platformv1.Tenant {
	t := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "u1"}}
	if maxAge > 0 {
		t.Spec.Retention = &platformv1.RetentionPolicy{MessagesMaxAge: metav1.Duration{Duration: maxAge}}
	}
	return t
}

func retentionFlags(args []string) []string {
	var out []string
	for _, a := range args {
		if strings.HasPrefix(a, "--retention") {
			out = append(out, a)
		}
	}
	return out
}

// spec.retention reaches the worker's command line in the Deployment, and leaves it
// when the policy is removed.
func TestWorkerDeploymentCarriesRetentionOnlyWhenSet(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		maxAge time.Duration
		want   []string
	}{
		{"unset: no flag, the worker keeps everything", 0, nil},
		{"a year", 8760 * time.Hour, []string{"--retention-max-age=8760h0m0s"}},
		{"a day and a half", 36 * time.Hour, []string{"--retention-max-age=36h0m0s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dep := desiredDeployment(retentionTenant(tc.maxAge), WorkerConfig{Image: "img"}, false)
			if got := retentionFlags(dep.Spec.Template.Spec.Containers[0].Args); !slices.Equal(got, tc.want) {
				t.Errorf("retention args %q, want %q", got, tc.want)
			}
		})
	}
}

// The worker may patch its report ConfigMap and no other, and may not read or create
// ConfigMaps at all.
func TestWorkerRoleNamesOnlyItsReportConfigMap(t *testing.T) {
	t.Parallel()
	role := desiredRole(retentionTenant(0), []string{"s1"})
	var rules []string
	for _, r := range role.Rules {
		if slices.Contains(r.Resources, "configmaps") {
			rules = append(rules, strings.Join(r.ResourceNames, ",")+":"+strings.Join(r.Verbs, ","))
		}
	}
	if want := []string{platformv1.WorkerReportName + ":patch"}; !slices.Equal(rules, want) {
		t.Errorf("configmap rules %q, want %q", rules, want)
	}
	cm := desiredWorkerReport(retentionTenant(0))
	if *cm.Name != platformv1.WorkerReportName || cm.Data != nil || len(cm.OwnerReferences) != 1 ||
		cm.Labels[platformv1.LabelManagedBy] != platformv1.ManagedByValue {
		t.Errorf("report configmap %+v: want owned, labelled and without data (the worker's)", cm)
	}
}

func report(t *testing.T, rep retention.Report) string {
	t.Helper()
	b, err := json.Marshal(workerreport.RetentionStatus(rep))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// status.retention is the policy in force and the worker's last run under it; a report
// of another age, or one that is not well formed, is not shown.
func TestRetentionStatusFromTheWorkersReport(t *testing.T) {
	t.Parallel()
	const age = 720 * time.Hour
	at := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	run := retention.Report{MaxAge: age, Interval: time.Hour, StartedAt: at, Pruned: store.Counts{Messages: 3, Statuses: 2, Files: 1, Contacts: 1}}
	failed := run
	failed.Err = errors.New("disk full")
	other := run
	other.MaxAge = 2 * age
	policyOnly := &platformv1.RetentionStatus{MessagesMaxAge: &metav1.Duration{Duration: age}}
	withRun := func(result platformv1.RetentionRunResult) *platformv1.RetentionStatus {
		return &platformv1.RetentionStatus{
			MessagesMaxAge: &metav1.Duration{Duration: age}, Interval: &metav1.Duration{Duration: time.Hour},
			LastRunAt: &metav1.Time{Time: at}, LastRunResult: result,
			LastRunPruned: &platformv1.RetentionCounts{Messages: 3, Statuses: 2, Files: 1, Contacts: 1},
		}
	}
	for _, tc := range []struct {
		name   string
		maxAge time.Duration
		report string
		want   *platformv1.RetentionStatus
	}{
		{"no policy, no status (even with an old report)", 0, report(t, run), nil},
		{"policy, no run yet", age, "", policyOnly},
		{"policy and its last run", age, report(t, run), withRun(platformv1.RetentionRunSucceeded)},
		{"a failed run", age, report(t, failed), withRun(platformv1.RetentionRunFailed)},
		{"a run under another age is not this policy's", age, report(t, other), policyOnly},
		{"not JSON", age, "{", policyOnly},
		{"unknown field", age, strings.Replace(report(t, run), `{`, `{"x":1,`, 1), policyOnly},
		{"unknown result", age, strings.Replace(report(t, run), `"Succeeded"`, `"Maybe"`, 1), policyOnly},
		{"negative count", age, strings.Replace(report(t, run), `"messages":3`, `"messages":-3`, 1), policyOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := retentionStatus(retentionTenant(tc.maxAge), tc.report)
			if !equality.Semantic.DeepEqual(got, tc.want) {
				g, _ := json.Marshal(got)
				w, _ := json.Marshal(tc.want)
				t.Errorf("retentionStatus = %s, want %s", g, w)
			}
		})
	}
}
