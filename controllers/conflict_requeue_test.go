package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// A reconcile that writes status from a copy that another writer has
// changed since (what a cache that lags behind hands out) meets a real
// optimistic-lock conflict on the API server. Built as the controllers are
// (QuietConflicts), that is a requeue after ConflictRequeue and no error;
// an error of any other kind still reaches controller-runtime.
func TestConflictIsAQuietRequeueAndOtherErrorsSurface(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "mch-stale")
	mchSecrets(g, ns, "mch-stale")
	g.Expect(k8s.Create(ctx, mchWhatsApp(ns, "wa", "5550801", "mch-app"))).To(Succeed())
	mchExpectReady(g, ns, "wa", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	req := ctrl.Request{NamespacedName: client.ObjectKey{Namespace: ns, Name: "wa"}}

	// The copy the reconciler will read: without the status it is about to
	// write. Then another writer changes the channel.
	stale := mchGet(g, ns, "wa")
	stale.Status = platformv1.MetaChannelStatus{}
	live := mchGet(g, ns, "wa")
	patch := client.MergeFrom(live.DeepCopy())
	live.Labels = map[string]string{"example.test/touched": "yes"}
	g.Expect(k8s.Patch(ctx, live, patch)).To(Succeed())

	direct, err := client.NewWithWatch(restCfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	lagging := interceptor.NewClient(direct, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			if ch, ok := obj.(*platformv1.MetaChannel); ok && key == req.NamespacedName {
				stale.DeepCopyInto(ch)
				return nil
			}
			return c.Get(ctx, key, obj, opts...)
		},
		// The claim index lives in the manager's cache; the API server
		// has no such field selector. Every channel, then: the verdict
		// looks at those with the same claim only.
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			if _, ok := list.(*platformv1.MetaChannelList); ok {
				return c.List(ctx, list)
			}
			return c.List(ctx, list, opts...)
		},
	})
	r := &controllers.MetaChannelReconciler{Client: lagging, APIReader: direct, Recorder: events.NewFakeRecorder(10), Route: suiteRoute}

	_, err = r.Reconcile(ctx, req)
	g.Expect(apierrors.IsConflict(err)).To(BeTrue(), "the API server refuses the write from a stale copy: got %v", err)

	res, err := controllers.QuietConflicts(r).Reconcile(ctx, req)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(res).To(Equal(ctrl.Result{RequeueAfter: controllers.ConflictRequeue}))

	// Another error, from the same API server: a reconciler without rights.
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "mch-nobody", Groups: []string{"system:authenticated"}}
	nobody, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	forbidden := &controllers.MetaChannelReconciler{Client: nobody, APIReader: nobody, Recorder: events.NewFakeRecorder(10)}
	_, err = controllers.QuietConflicts(forbidden).Reconcile(ctx, req)
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "a non-conflict error surfaces: got %v", err)
}
