package httproute_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

func tenant(g Gomega, name string) *platformv1.Tenant {
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.TenantSpec{DisplayName: "Test " + name}}
	g.Expect(k8s.Create(context.Background(), tn)).To(Succeed())
	return tn
}

func routeReady(g Gomega, name string) *metav1.Condition {
	var tn platformv1.Tenant
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: name}, &tn)).To(Succeed())
	c := apimeta.FindStatusCondition(tn.Status.Conditions, platformv1.ConditionRouteReady)
	g.Expect(c).NotTo(BeNil())
	return c
}

// gatewaySays writes the Gateway controller's verdict on the route, as a Gateway
// implementation would.
func gatewaySays(g Gomega, r *gatewayv1.HTTPRoute, accepted bool, reason, message string) {
	status := metav1.ConditionFalse
	if accepted {
		status = metav1.ConditionTrue
	}
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: r.Namespace, Name: r.Name}, r)).To(Succeed())
	r.Status.Parents = []gatewayv1.RouteParentStatus{{
		ParentRef:      r.Spec.ParentRefs[0],
		ControllerName: "example.com/gateway-controller",
		Conditions: []metav1.Condition{{
			Type: string(gatewayv1.RouteConditionAccepted), Status: status, Reason: reason, Message: message,
			ObservedGeneration: r.Generation, LastTransitionTime: metav1.Now(),
		}},
	}}
	g.Expect(k8s.Status().Update(context.Background(), r)).To(Succeed())
}

// An Active tenant gets an HTTPRoute on the configured Gateway listener for its path,
// to its worker; RouteReady follows what the Gateway says of it.
func TestTenantHTTPRouteFollowsTheGatewayVerdict(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenant(g, "gw-route")
	ns := "tenant-gw-route"

	var r gatewayv1.HTTPRoute
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.RouteName}, &r)
	}, timeout, interval).Should(Succeed())
	g.Expect(r.Labels).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	owner := metav1.GetControllerOf(&r)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(tn.UID))
	g.Expect(r.Spec.ParentRefs).To(HaveLen(1))
	parent := r.Spec.ParentRefs[0]
	g.Expect(parent.Group).To(HaveValue(Equal(gatewayv1.Group(gatewayv1.GroupName))))
	g.Expect(parent.Kind).To(HaveValue(Equal(gatewayv1.Kind("Gateway"))))
	g.Expect(parent.Namespace).To(HaveValue(Equal(gatewayv1.Namespace("infra"))))
	g.Expect(parent.Name).To(Equal(gatewayv1.ObjectName("public")))
	g.Expect(parent.SectionName).To(HaveValue(Equal(gatewayv1.SectionName("https"))))
	g.Expect(r.Spec.Hostnames).To(ConsistOf(gatewayv1.Hostname("hooks.example.com")))
	g.Expect(r.Spec.Rules).To(HaveLen(1))
	rule := r.Spec.Rules[0]
	g.Expect(rule.Matches).To(HaveLen(1))
	g.Expect(rule.Matches[0].Path.Type).To(HaveValue(Equal(gatewayv1.PathMatchPathPrefix)))
	g.Expect(rule.Matches[0].Path.Value).To(HaveValue(Equal("/t/gw-route/")))
	g.Expect(rule.BackendRefs).To(HaveLen(1))
	backend := rule.BackendRefs[0].BackendObjectReference
	g.Expect(backend.Kind).To(HaveValue(Equal(gatewayv1.Kind("Service"))))
	g.Expect(backend.Name).To(Equal(gatewayv1.ObjectName(controllers.WorkerName)))
	g.Expect(backend.Port).To(HaveValue(Equal(gatewayv1.PortNumber(controllers.ServicePort))))
	// No Ingress in this mode.
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.RouteName}, &networkingv1.Ingress{}))).To(BeTrue())

	// Applied is not ready: the Gateway has not said anything yet.
	g.Eventually(func(g Gomega) {
		c := routeReady(g, tn.Name)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonHTTPRoutePending))
		g.Expect(c.Message).To(ContainSubstring("Gateway infra/public"))
	}, timeout, interval).Should(Succeed())

	// The Gateway refuses it (its listener does not allow the namespace): the SRE reads why.
	gatewaySays(g, &r, false, "NotAllowedByListeners", "no listener allows routes from namespace tenant-gw-route")
	g.Eventually(func(g Gomega) {
		c := routeReady(g, tn.Name)
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonHTTPRouteNotAccepted))
		g.Expect(c.Message).To(ContainSubstring("NotAllowedByListeners"))
		g.Expect(c.Message).To(ContainSubstring("no listener allows routes"))
	}, timeout, interval).Should(Succeed())

	// Accepted: the route carries Meta's webhooks.
	gatewaySays(g, &r, true, "Accepted", "")
	g.Eventually(func(g Gomega) {
		c := routeReady(g, tn.Name)
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonHTTPRouteAccepted))
		g.Expect(c.Message).To(ContainSubstring("https://hooks.example.com"))
	}, timeout, interval).Should(Succeed())
}

// Deactivation stops ingest at once: the HTTPRoute goes before anything else, and an
// Ingress left from an earlier --route=ingress goes with it.
func TestDeactivationRemovesTheHTTPRoute(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	tn := tenant(g, "gw-stop")
	ns := "tenant-gw-stop"
	key := types.NamespacedName{Namespace: ns, Name: controllers.RouteName}
	g.Eventually(func() error { return k8s.Get(ctx, key, &gatewayv1.HTTPRoute{}) }, timeout, interval).Should(Succeed())

	// A merge patch of the spec alone: an Update would race the operator's status writes.
	g.Expect(k8s.Patch(ctx, tn, client.RawPatch(types.MergePatchType,
		[]byte(`{"spec":{"state":"`+string(platformv1.TenantDeactivated)+`"}}`)))).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx, key, &gatewayv1.HTTPRoute{}))
	}, timeout, interval).Should(BeTrue(), "the HTTPRoute must go at once")
	g.Eventually(func(g Gomega) {
		var got platformv1.Tenant
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: tn.Name}, &got)).To(Succeed())
		g.Expect(got.Status.Erasure).To(ContainElement(And(HaveField("Name", "StopIngest"), HaveField("CompletedAt", Not(BeNil())))))
	}, timeout, interval).Should(Succeed())
}

// Under --route=httproute a MetaApp's front door gets an HTTPRoute for /apps/<app>/ on
// the same Gateway listener and hostname as the tenants', to its Service, owned by the
// app; no Ingress. Its webhook URL is under the Gateway's hostname.
func TestMetaAppGetsAnHTTPRoute(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gw-app", Namespace: operatorNamespace},
		StringData: map[string]string{"appSecret": "s", "verifyToken": "v"}})).To(Succeed())
	app := &platformv1.MetaApp{ObjectMeta: metav1.ObjectMeta{Name: "gw"}, Spec: platformv1.MetaAppSpec{AppID: "4242",
		AppSecretRef: platformv1.SecretKeyRef{Name: "gw-app", Key: "appSecret"}, VerifyTokenRef: platformv1.SecretKeyRef{Name: "gw-app", Key: "verifyToken"}}}
	g.Expect(k8s.Create(ctx, app)).To(Succeed())
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.FrontDoorName("gw")}

	var r gatewayv1.HTTPRoute
	g.Eventually(func() error { return k8s.Get(ctx, key, &r) }, timeout, interval).Should(Succeed())
	owner := metav1.GetControllerOf(&r)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.Kind).To(Equal("MetaApp"))
	g.Expect(owner.UID).To(Equal(app.UID))
	g.Expect(r.Labels).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	g.Expect(r.Spec.ParentRefs).To(HaveLen(1))
	g.Expect(r.Spec.ParentRefs[0].Name).To(Equal(gatewayv1.ObjectName("public")))
	g.Expect(r.Spec.ParentRefs[0].SectionName).To(HaveValue(Equal(gatewayv1.SectionName("https"))))
	g.Expect(r.Spec.Hostnames).To(ConsistOf(gatewayv1.Hostname("hooks.example.com")))
	g.Expect(r.Spec.Rules).To(HaveLen(1))
	g.Expect(r.Spec.Rules[0].Matches[0].Path.Value).To(HaveValue(Equal("/apps/gw/")))
	g.Expect(r.Spec.Rules[0].BackendRefs).To(HaveLen(1))
	g.Expect(r.Spec.Rules[0].BackendRefs[0].Name).To(Equal(gatewayv1.ObjectName(controllers.FrontDoorName("gw"))))
	g.Expect(r.Spec.Rules[0].BackendRefs[0].Port).To(HaveValue(Equal(gatewayv1.PortNumber(controllers.ServicePort))))
	g.Expect(apierrors.IsNotFound(k8s.Get(ctx, key, &networkingv1.Ingress{}))).To(BeTrue(), "no Ingress beside the HTTPRoute")
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "gw"}, app)).To(Succeed())
		g.Expect(app.Status.WebhookURL).To(Equal("https://hooks.example.com/apps/gw/webhooks/meta"))
	}, timeout, interval).Should(Succeed())
}

// A MetaApp's HTTPRoute deleted by hand comes back; its path edited by hand is
// put back (the HTTPRoute is watched under --route=httproute, not only applied).
func TestMetaAppHTTPRouteIsPutRight(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "gwfix-app", Namespace: operatorNamespace},
		StringData: map[string]string{"appSecret": "s", "verifyToken": "v"}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &platformv1.MetaApp{ObjectMeta: metav1.ObjectMeta{Name: "gwfix"}, Spec: platformv1.MetaAppSpec{AppID: "4242",
		AppSecretRef: platformv1.SecretKeyRef{Name: "gwfix-app", Key: "appSecret"}, VerifyTokenRef: platformv1.SecretKeyRef{Name: "gwfix-app", Key: "verifyToken"}}})).To(Succeed())
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.FrontDoorName("gwfix")}

	var r gatewayv1.HTTPRoute
	g.Eventually(func() error { return k8s.Get(ctx, key, &r) }, timeout, interval).Should(Succeed())
	first := r.UID
	g.Expect(k8s.Delete(ctx, &r)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, &r)).To(Succeed())
		g.Expect(r.UID).NotTo(Equal(first), "a new HTTPRoute, not the deleted one")
		g.Expect(r.Spec.Rules[0].Matches[0].Path.Value).To(HaveValue(Equal("/apps/gwfix/")))
	}, timeout, interval).Should(Succeed())

	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, &r); err != nil {
			return err
		}
		r.Spec.Rules[0].Matches[0].Path.Value = ptr.To("/elsewhere/")
		return k8s.Update(ctx, &r)
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, &r)).To(Succeed())
		g.Expect(r.Spec.Rules).To(HaveLen(1))
		g.Expect(r.Spec.Rules[0].Matches).To(HaveLen(1))
		g.Expect(r.Spec.Rules[0].Matches[0].Path.Value).To(HaveValue(Equal("/apps/gwfix/")))
	}, timeout, interval).Should(Succeed())
}
