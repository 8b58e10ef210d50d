package controllers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/retention"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// spec.retention reaches the worker's command line; the worker, as its own
// ServiceAccount under the Role the operator applied, reports its run in the report
// ConfigMap (and can write no other object); the Tenant's status shows the policy and
// the run; removing the policy removes the flag and the status.
func TestRetentionReachesTheWorkerAndItsRunsTheTenantStatus(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	const age = 720 * time.Hour
	tn := newTenant("retention")
	tn.Spec.Retention = &platformv1.RetentionPolicy{MessagesMaxAge: metav1.Duration{Duration: age}}
	createTenant(t, tn)
	ns := "tenant-retention"
	depKey := types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}
	reportKey := types.NamespacedName{Namespace: ns, Name: platformv1.WorkerReportName}

	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, depKey, &dep)).To(Succeed())
		g.Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--retention-max-age=720h0m0s"))
		got := getTenant(g, tn.Name)
		g.Expect(got.Status.Retention).NotTo(BeNil())
		g.Expect(got.Status.Retention.MessagesMaxAge.Duration).To(Equal(age))
		g.Expect(got.Status.Retention.LastRunAt).To(BeNil(), "the worker has not run yet")
	}, timeout, interval).Should(Succeed())
	var cm corev1.ConfigMap
	g.Expect(k8s.Get(ctx, reportKey, &cm)).To(Succeed())
	assertOwnedAndLabelled(g, &cm, getTenant(g, tn.Name))

	// The worker reports a run.
	worker := workerClient(g, ns)
	at := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	run := retention.Report{MaxAge: age, Interval: time.Hour, StartedAt: at, Pruned: store.Counts{Messages: 5, Statuses: 3, Files: 1, Contacts: 2}}
	reporter := &workerreport.Retention{Client: worker, Namespace: ns}
	// RBAC follows the Role through an informer: wait for the grant.
	g.Eventually(func() error { return reporter.Report(ctx, run) }, timeout, interval).Should(Succeed())
	g.Eventually(func(g Gomega) {
		st := getTenant(g, tn.Name).Status.Retention
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.LastRunAt).NotTo(BeNil())
		g.Expect(st.LastRunAt.Time.Equal(at)).To(BeTrue(), "lastRunAt %v", st.LastRunAt)
		g.Expect(st.LastRunResult).To(Equal(platformv1.RetentionRunSucceeded))
		g.Expect(st.Interval.Duration).To(Equal(time.Hour))
		g.Expect(*st.LastRunPruned).To(Equal(platformv1.RetentionCounts{Messages: 5, Statuses: 3, Files: 1, Contacts: 2}))
	}, timeout, interval).Should(Succeed())

	// At steady state a pass over the report writes nothing (the status is unchanged).
	before := waitSettled(g)
	reconcilesBefore := reconcileCount(g)
	g.Expect(k8s.Patch(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: reportKey.Name, Namespace: ns}},
		client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"example.test/touched":"yes"}}}`)))).To(Succeed())
	g.Eventually(func() float64 { return reconcileCount(g) }, timeout, interval).Should(BeNumerically(">", reconcilesBefore))
	after := waitSettled(g)
	_, paths := mgrWrites.snapshot()
	g.Expect(after).To(Equal(before), "writes after an unchanged report: %v", paths[before:])

	// That one ConfigMap, by patch, is all the worker may write or read of them.
	forbidden := func(err error, what string) {
		g.ExpectWithOffset(1, apierrors.IsForbidden(err)).To(BeTrue(), "%s: want Forbidden, got %v", what, err)
	}
	other := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other", Namespace: ns}}
	g.Expect(k8s.Create(ctx, other)).To(Succeed())
	elsewhere := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "retention-elsewhere"}}
	g.Expect(k8s.Create(ctx, elsewhere)).To(Succeed())
	foreignReport := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: platformv1.WorkerReportName, Namespace: elsewhere.Name}}
	g.Expect(k8s.Create(ctx, foreignReport)).To(Succeed())
	patch := client.RawPatch(types.MergePatchType, []byte(`{"data":{"x":"y"}}`))
	forbidden(worker.Patch(ctx, other.DeepCopy(), patch), "patch another ConfigMap")
	forbidden(worker.Patch(ctx, foreignReport.DeepCopy(), patch), "patch the report of another namespace")
	forbidden(worker.Get(ctx, reportKey, &corev1.ConfigMap{}), "get its report")
	forbidden(worker.List(ctx, &corev1.ConfigMapList{}, client.InNamespace(ns)), "list ConfigMaps")
	forbidden(worker.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "new", Namespace: ns}}), "create a ConfigMap")
	forbidden(worker.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: platformv1.WorkerReportName, Namespace: ns}}), "delete its report")
	forbidden(worker.Get(ctx, types.NamespacedName{Name: tn.Name}, &platformv1.Tenant{}), "get its Tenant")
	tenantPatch := client.RawPatch(types.MergePatchType, []byte(`{"status":{"retention":null}}`))
	forbidden(worker.Status().Patch(ctx, getTenant(g, tn.Name), tenantPatch), "patch its Tenant's status")

	// A report of another age (a worker not rolled out yet) is not this policy's run.
	run.MaxAge = 2 * age
	g.Expect(reporter.Report(ctx, run)).To(Succeed())
	g.Eventually(func(g Gomega) {
		st := getTenant(g, tn.Name).Status.Retention
		g.Expect(st).NotTo(BeNil())
		g.Expect(st.LastRunAt).To(BeNil())
	}, timeout, interval).Should(Succeed())

	// Policy removed: no flag, no status.
	got := getTenant(g, tn.Name)
	p := client.MergeFrom(got.DeepCopy())
	got.Spec.Retention = nil
	g.Expect(k8s.Patch(ctx, got, p)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, depKey, &dep)).To(Succeed())
		g.Expect(slices.ContainsFunc(dep.Spec.Template.Spec.Containers[0].Args, func(a string) bool {
			return strings.HasPrefix(a, "--retention")
		})).To(BeFalse(), "args %q", dep.Spec.Template.Spec.Containers[0].Args)
		g.Expect(getTenant(g, tn.Name).Status.Retention).To(BeNil())
	}, timeout, interval).Should(Succeed())
}

// RBAC lets the worker patch its report ConfigMap but cannot say which fields. The
// shipped admission policy does: the worker writes its retention report through the real
// reporter code, and cannot relabel, disown or otherwise fill the ConfigMap; the
// operator is not affected.
func TestWorkerWritesOnlyItsRetentionReport(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	installWorkerPolicy(t, g)
	ns := mchTenant(t, g, "report-vap")
	worker := workerClient(g, ns)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: platformv1.WorkerReportName, Namespace: ns}}
	patch := func(body string) error {
		return worker.Patch(ctx, cm.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(body)))
	}
	// Wait until the Role grants the patch and the API server enforces the policy.
	g.Eventually(func() error {
		err := patch(`{"data":{"probe":"x"}}`)
		if err == nil {
			// Too early: take the probe out again, or every later report would be refused.
			g.Expect(k8s.Patch(ctx, cm.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"data":{"probe":null}}`)))).To(Succeed())
			return errors.New("probe key written: policy not enforced yet")
		}
		if !strings.Contains(err.Error(), "may only write the keys retention") {
			return err
		}
		return nil
	}, timeout, interval).Should(Succeed())

	reporter := &workerreport.Retention{Client: worker, Namespace: ns}
	g.Expect(reporter.Report(ctx, retention.Report{MaxAge: 48 * time.Hour, Interval: time.Hour, StartedAt: time.Now()})).To(Succeed())

	denied := func(err error, says string) { expectDenied(g, err, says) }
	denied(patch(`{"metadata":{"labels":{"app.kubernetes.io/managed-by":null}}}`), "may not change its report ConfigMap's labels")
	denied(patch(`{"metadata":{"ownerReferences":null}}`), "owners")
	denied(patch(`{"metadata":{"annotations":{"x":"y"}}}`), "annotations")
	denied(patch(`{"data":{"retention":"`+strings.Repeat("x", 5000)+`"}}`), "at most 4096 bytes")
	denied(patch(`{"binaryData":{"blob":"eA=="}}`), "may only write the keys retention")

	// The operator (and people) are not the worker.
	g.Expect(k8s.Patch(ctx, cm.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"annotations":{"x":"y"}}}`)))).To(Succeed())
}

// installWorkerPolicy applies, for real, the admission policies about tenant workers
// that config/default ships (rendered with the pinned kustomize, named as deployed),
// and removes them when the test ends.
func installWorkerPolicy(t *testing.T, g Gomega) {
	t.Helper()
	ctx := context.Background()
	policies, err := testenv.RenderDefault(testenv.IsAdmissionPolicy)
	g.Expect(err).NotTo(HaveOccurred())
	var n int
	for _, obj := range policies {
		if name := obj.GetName(); name != "omniflow-worker-writes" && name != "omniflow-worker-report" {
			continue
		}
		g.Expect(obj.GetNamespace()).To(BeEmpty(), "%s is cluster-scoped", obj.GetKind())
		g.Expect(k8s.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner("policy-test"), client.ForceOwnership)).To(Succeed())
		t.Cleanup(func() { _ = k8s.Delete(context.Background(), obj) })
		n++
	}
	g.Expect(n).To(Equal(4), "config/default ships the worker policies (writes, report) and their bindings")
}

// expectDenied expects a request refused by an admission policy, with its message.
func expectDenied(g Gomega, err error, says string) {
	g.ExpectWithOffset(2, apierrors.IsForbidden(err) || apierrors.IsInvalid(err)).To(BeTrue(), "want a denial, got %v", err)
	g.ExpectWithOffset(2, err.Error()).To(ContainSubstring(says))
}
