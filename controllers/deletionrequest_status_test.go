package controllers

import (
	"context"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The operator's read can be older than the worker's last write (its cache
// lags). Its status patch then carries an optimistic lock and conflicts, rather
// than putting back a conditions list without the worker's report; nothing is
// counted until a fresh read records the outcome.
func TestOperatorWriteFromAStaleReadConflictsAndLosesNothing(t *testing.T) {
	sch := runtime.NewScheme()
	if err := AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	received := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: map[string]string{platformv1.LabelTenant: "acme"}}}
	running := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "ticket", Namespace: ns.Name},
		Spec:       platformv1.DeletionRequestSpec{Platform: platformv1.PlatformWhatsApp, SubjectSecretRef: platformv1.SecretKeyRef{Name: "s", Key: "id"}},
		Status: platformv1.DeletionRequestStatus{
			Phase: platformv1.DeletionRunning, ReceivedAt: &received, Deadline: ptrTime(received.Add(platformv1.DeletionDeadline)),
		},
	}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(tn, ns, running).
		WithStatusSubresource(&platformv1.DeletionRequest{}).Build()
	ctx := context.Background()
	var stale platformv1.DeletionRequest
	if err := c.Get(ctx, client.ObjectKeyFromObject(running), &stale); err != nil {
		t.Fatal(err)
	}
	// The worker completes the request.
	done := stale.DeepCopy()
	patch := client.MergeFromWithOptions(done.DeepCopy(), client.MergeFromWithOptimisticLock{})
	done.Status.Phase = platformv1.DeletionCompleted
	meta.SetStatusCondition(&done.Status.Conditions, metav1.Condition{Type: platformv1.ConditionSubjectErased, Status: metav1.ConditionTrue, Reason: platformv1.ReasonCompleted, Message: "erased"})
	if err := c.Status().Patch(ctx, done, patch); err != nil {
		t.Fatal(err)
	}
	// The operator still reads the request as Running.
	lagging := interceptor.NewClient(c, interceptor.Funcs{Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if dr, ok := obj.(*platformv1.DeletionRequest); ok {
			stale.DeepCopyInto(dr)
			return nil
		}
		return cl.Get(ctx, key, obj, opts...)
	}})
	completed := completions(t)
	r := &DeletionRequestReconciler{Client: lagging, APIReader: c, Recorder: events.NewFakeRecorder(10),
		Clock: clocktesting.NewFakeClock(received.Add(time.Hour))}
	_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(running)})
	if !apierrors.IsConflict(err) {
		t.Fatalf("Reconcile() from a stale read = %v, want a conflict", err)
	}
	var got platformv1.DeletionRequest
	if err := c.Get(ctx, client.ObjectKeyFromObject(running), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Phase != platformv1.DeletionCompleted || !meta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionSubjectErased) {
		t.Fatalf("the worker's report was overwritten: %+v", got.Status)
	}
	if n := completions(t); n != completed {
		t.Fatalf("counted %v completions from a write that failed", n-completed)
	}

	// A fresh read records and counts it, once.
	r.Client = c
	for range 2 {
		if _, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKeyFromObject(running)}); err != nil {
			t.Fatal(err)
		}
	}
	if n := completions(t); n != completed+1 {
		t.Fatalf("completions counted %v times, want once", n-completed)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(running), &got); err != nil {
		t.Fatal(err)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady); c == nil || c.Reason != platformv1.ReasonCompleted || c.Message != "erased" {
		t.Fatalf("Ready = %+v, want Completed with the worker's message", c)
	}
}

func completions(t *testing.T) float64 {
	t.Helper()
	var m dto.Metric
	if err := deletionRequestsTotal.WithLabelValues("completed").Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// A request is refused as outside a tenant's namespace only when the API server
// says so: a cache that has not seen the namespace or its Tenant yet (the
// operator just started, or one manifest created them with the request) makes
// the request wait, not fail for good.
func TestRequestWhoseTenantTheCacheHasNotSeenIsNotRefused(t *testing.T) {
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: map[string]string{platformv1.LabelTenant: "fresh"}}}
	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "not-a-tenant"}}
	newRequest := func(ns string) *platformv1.DeletionRequest {
		return &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: "ticket", Namespace: ns},
			Spec:       platformv1.DeletionRequestSpec{Platform: platformv1.PlatformWhatsApp, SubjectSecretRef: platformv1.SecretKeyRef{Name: "s", Key: "id"}},
		}
	}
	// The cache has the requests, and neither the namespaces nor the Tenant.
	c, r := reconcilerWithLaggingCache(t, interceptor.Funcs{Get: func(ctx context.Context, cl client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		switch obj.(type) {
		case *corev1.Namespace:
			return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
		case *platformv1.Tenant:
			return apierrors.NewNotFound(platformv1.GroupVersion.WithResource("tenants").GroupResource(), key.Name)
		}
		return cl.Get(ctx, key, obj, opts...)
	}}, tn, ns, plain, newRequest(ns.Name), newRequest(plain.Name))
	res, got := reconcileRequest(t, c, r, client.ObjectKey{Namespace: ns.Name, Name: "ticket"})
	if got.Status.Phase == platformv1.DeletionRefused {
		t.Fatalf("a request in tenant %s's namespace was refused on the cache's word: %+v", tn.Name, got.Status.Conditions)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > cacheCatchUp {
		t.Errorf("RequeueAfter %v: want a look again within %v", res.RequeueAfter, cacheCatchUp)
	}

	_, got = reconcileRequest(t, c, r, client.ObjectKey{Namespace: plain.Name, Name: "ticket"})
	if ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady); got.Status.Phase != platformv1.DeletionRefused ||
		ready == nil || ready.Reason != platformv1.ReasonNotATenantNamespace {
		t.Errorf("a request outside any tenant's namespace: phase %q, conditions %+v; want refused, NotATenantNamespace", got.Status.Phase, got.Status.Conditions)
	}
}

// A request is refused as naming an unknown channel only when the API server
// says so: a cache that has not seen the channel yet (one manifest created it
// with the request) makes the request wait, not fail for good. A channel the
// API server does not know, or knows for another platform, is refused.
func TestRequestWhoseChannelTheCacheHasNotSeenIsNotRefused(t *testing.T) {
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "fresh"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: map[string]string{platformv1.LabelTenant: "fresh"}}}
	wa := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "new-wa", Namespace: ns.Name},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformWhatsApp}}
	page := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "new-page", Namespace: ns.Name},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger}}
	request := func(name, channel string) *platformv1.DeletionRequest {
		return &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name},
			Spec: platformv1.DeletionRequestSpec{Platform: platformv1.PlatformWhatsApp, Channel: channel,
				SubjectSecretRef: platformv1.SecretKeyRef{Name: "s", Key: "id"}},
		}
	}
	// The cache has the tenant and the requests, and none of the channels.
	c, r := reconcilerWithLaggingCache(t, channelsNotInCache, tn, ns, wa, page, request("known", wa.Name), request("unknown", "no-such-channel"), request("other-platform", page.Name))
	reconcile := func(name string) (ctrl.Result, platformv1.DeletionRequest) {
		t.Helper()
		return reconcileRequest(t, c, r, client.ObjectKey{Namespace: ns.Name, Name: name})
	}

	res, got := reconcile("known")
	if got.Status.Phase == platformv1.DeletionRefused {
		t.Fatalf("a request naming channel %s was refused on the cache's word: %+v", wa.Name, got.Status.Conditions)
	}
	if res.RequeueAfter <= 0 || res.RequeueAfter > cacheCatchUp {
		t.Errorf("RequeueAfter %v: want a look again within %v", res.RequeueAfter, cacheCatchUp)
	}

	for _, name := range []string{"unknown", "other-platform"} {
		_, got := reconcile(name)
		if ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady); got.Status.Phase != platformv1.DeletionRefused ||
			ready == nil || ready.Reason != platformv1.ReasonUnknownChannel {
			t.Errorf("request %s: phase %q, conditions %+v; want refused, UnknownChannel", name, got.Status.Phase, got.Status.Conditions)
		}
	}
}

// channelsNotInCache plays a cache that has seen none of the MetaChannels yet.
var channelsNotInCache = interceptor.Funcs{List: func(ctx context.Context, cl client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*platformv1.MetaChannelList); ok {
		return nil
	}
	return cl.List(ctx, list, opts...)
}}

// reconcileRequest reconciles the request key names once and returns the result and
// the request as the API server then holds it.
func reconcileRequest(t *testing.T, c client.Client, r *DeletionRequestReconciler, key client.ObjectKey) (ctrl.Result, platformv1.DeletionRequest) {
	t.Helper()
	ctx := context.Background()
	res, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key})
	if err != nil {
		t.Fatal(err)
	}
	var dr platformv1.DeletionRequest
	if err := c.Get(ctx, key, &dr); err != nil {
		t.Fatal(err)
	}
	return res, dr
}

// reconcilerWithLaggingCache returns an API server holding objs and a reconciler that
// reads it directly as its APIReader and, as its cache, through cache's interceptors,
// which play a cache that has not caught up yet.
func reconcilerWithLaggingCache(t *testing.T, cache interceptor.Funcs, objs ...client.Object) (client.Client, *DeletionRequestReconciler) {
	t.Helper()
	sch := runtime.NewScheme()
	if err := AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	c := fake.NewClientBuilder().WithScheme(sch).WithObjects(objs...).WithStatusSubresource(&platformv1.DeletionRequest{}).Build()
	return c, &DeletionRequestReconciler{Client: interceptor.NewClient(c, cache), APIReader: c, Recorder: events.NewFakeRecorder(10),
		Clock: clocktesting.NewFakeClock(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))}
}

// A request is accepted only on the API server's list of channels: the
// credentials Secret of a channel the cache has not seen yet (even one of the
// subject type) is refused as in use, never granted to the worker and deleted
// when the request ends. A subject Secret that no channel uses is accepted.
func TestSubjectSecretOfAChannelTheCacheHasNotSeenIsRefused(t *testing.T) {
	t.Parallel()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "creds"}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: tn.NamespaceName(), Labels: map[string]string{platformv1.LabelTenant: "creds"}}}
	secret := func(name string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name}, Type: platformv1.SubjectSecretType,
			Data: map[string][]byte{"id": []byte("15555550142")}}
	}
	wa := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "new-wa", Namespace: ns.Name},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformWhatsApp, AccessTokenRef: &platformv1.SecretKeyRef{Name: "wa-token", Key: "id"}}}
	request := func(name, secret string) *platformv1.DeletionRequest {
		return &platformv1.DeletionRequest{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns.Name},
			Spec:       platformv1.DeletionRequestSpec{Platform: platformv1.PlatformWhatsApp, SubjectSecretRef: platformv1.SecretKeyRef{Name: secret, Key: "id"}},
		}
	}
	// The cache has the tenant and the requests, and not the channel.
	c, r := reconcilerWithLaggingCache(t, channelsNotInCache, tn, ns, wa, secret("wa-token"), secret("subject"), request("names-the-token", "wa-token"), request("names-its-own", "subject"))
	reconcile := func(name string) platformv1.DeletionRequest {
		t.Helper()
		_, dr := reconcileRequest(t, c, r, client.ObjectKey{Namespace: ns.Name, Name: name})
		return dr
	}

	got := reconcile("names-the-token")
	if ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady); got.Status.Phase != platformv1.DeletionRefused ||
		ready == nil || ready.Reason != platformv1.ReasonSubjectSecretInUse || !strings.Contains(ready.Message, "MetaChannel "+wa.Name) {
		t.Errorf("a request naming channel %s's access token Secret: phase %q, conditions %+v; want refused, SubjectSecretInUse, naming the channel",
			wa.Name, got.Status.Phase, got.Status.Conditions)
	}
	if got := reconcile("names-its-own"); got.Status.Phase != platformv1.DeletionPending {
		t.Errorf("a request naming a subject Secret of its own: phase %q, conditions %+v; want Pending", got.Status.Phase, got.Status.Conditions)
	}
}
