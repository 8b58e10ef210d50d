package controllers_test

import (
	"context"
	"encoding/hex"
	"slices"
	"testing"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
)

func appSecretIn(g Gomega, name string) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: operatorNamespace},
		Data: map[string][]byte{"appSecret": []byte(mchAppSecret), "verifyToken": []byte(mchVerifyToken)}}
	g.Expect(k8s.Create(context.Background(), s)).To(Succeed())
}

func newMetaApp(name, secret string) *platformv1.MetaApp {
	return &platformv1.MetaApp{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: platformv1.MetaAppSpec{
			AppID:          "4242",
			AppSecretRef:   platformv1.SecretKeyRef{Name: secret, Key: "appSecret"},
			VerifyTokenRef: platformv1.SecretKeyRef{Name: secret, Key: "verifyToken"},
		},
	}
}

func appReady(g Gomega, name string) *metav1.Condition {
	var app platformv1.MetaApp
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: name}, &app)).To(Succeed())
	return meta.FindStatusCondition(app.Status.Conditions, platformv1.ConditionReady)
}

// markAvailable plays the Deployment controller, which envtest does not run.
func markAvailable(g Gomega, key types.NamespacedName) {
	var dep appsv1.Deployment
	g.Expect(k8s.Get(context.Background(), key, &dep)).To(Succeed())
	n := ptr.Deref(dep.Spec.Replicas, 1)
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: n, UpdatedReplicas: n, ReadyReplicas: n, AvailableReplicas: n}
	g.Expect(k8s.Status().Update(context.Background(), &dep)).To(Succeed())
}

// updateApp changes a MetaApp's spec, again on a conflict with the operator's status
// writes.
func updateApp(g Gomega, name string, change func(*platformv1.MetaApp)) {
	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var app platformv1.MetaApp
		if err := k8s.Get(context.Background(), types.NamespacedName{Name: name}, &app); err != nil {
			return err
		}
		change(&app)
		return k8s.Update(context.Background(), &app)
	})).To(Succeed())
}

func TestMetaAppProvisionsItsFrontDoor(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	appSecretIn(g, "app-prov")
	app := newMetaApp("prov", "app-prov")
	g.Expect(k8s.Create(ctx, app)).To(Succeed())
	name := controllers.FrontDoorName("prov")
	key := types.NamespacedName{Namespace: operatorNamespace, Name: name}

	var dep appsv1.Deployment
	g.Eventually(func() error { return k8s.Get(ctx, key, &dep) }, timeout, interval).Should(Succeed())
	g.Expect(dep.Spec.Replicas).To(Equal(ptr.To[int32](2)))
	c := dep.Spec.Template.Spec.Containers[0]
	g.Expect(c.Image).To(Equal(testWorkerImage), "the manager's image, which holds /frontdoor")
	g.Expect(c.Command).To(Equal([]string{"/frontdoor"}))
	g.Expect(c.Args).To(ContainElements("serve", "--cluster", "--app=prov"))
	g.Expect(dep.Spec.Template.Spec.ServiceAccountName).To(Equal(name))

	owned := []client.Object{&dep, &corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}, &networkingv1.Ingress{}}
	for _, o := range owned {
		g.Eventually(func() error { return k8s.Get(ctx, key, o) }, timeout, interval).Should(Succeed(), "%T", o)
	}
	for _, o := range []client.Object{&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}} {
		g.Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Name: name}, o) }, timeout, interval).Should(Succeed(), "%T", o)
		owned = append(owned, o)
	}
	// Deleting the MetaApp lets garbage collection remove all of them.
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "prov"}, app)).To(Succeed())
	for _, o := range owned {
		owner := metav1.GetControllerOf(o)
		g.Expect(owner).NotTo(BeNil(), "%T", o)
		g.Expect(owner.Kind).To(Equal("MetaApp"))
		g.Expect(owner.UID).To(Equal(app.UID))
		g.Expect(o.GetLabels()).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	}
	var pdb policyv1.PodDisruptionBudget
	g.Expect(k8s.Get(ctx, key, &pdb)).To(Succeed())
	g.Expect(pdb.Spec.MinAvailable.IntValue()).To(Equal(1))
	var ing networkingv1.Ingress
	g.Expect(k8s.Get(ctx, key, &ing)).To(Succeed())
	g.Expect(ing.Spec.Rules[0].HTTP.Paths[0].Path).To(Equal("/apps/prov/"))
	g.Expect(ing.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Name).To(Equal(name))

	var fk corev1.Secret
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: controllers.ForwardingKeySecret}, &fk)).To(Succeed())
	raw, err := hex.DecodeString(string(fk.Data[controllers.ForwardingKeyKey]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(raw).To(HaveLen(forward.MinKeyBytes))

	// Not Ready until its pods are available; then Ready.
	g.Eventually(func(g Gomega) {
		c := appReady(g, "prov")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(platformv1.ReasonFrontDoorUnavailable))
	}, timeout, interval).Should(Succeed())
	markAvailable(g, key)
	// A spec change re-evaluates the app too (the operator may be writing its
	// status meanwhile: the update is retried on a conflict).
	updateApp(g, "prov", func(a *platformv1.MetaApp) { a.Spec.AppID = "4243" })
	g.Eventually(func(g Gomega) {
		c := appReady(g, "prov")
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
	}, timeout, interval).Should(Succeed())
}

// The front door's identity reads MetaChannels cluster-wide and nothing
// else: no Secret, not even its own app's (they are mounted as files).
func TestFrontDoorIdentityReadsOnlyMetaChannels(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	appSecretIn(g, "app-rbac")
	g.Expect(k8s.Create(ctx, newMetaApp("rbac", "app-rbac"))).To(Succeed())
	nsT := mchTenant(t, g, "fd-rbac")
	mchSecret(g, nsT, "tenant-secret", "", map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken})

	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + operatorNamespace + ":" + controllers.FrontDoorName("rbac"),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + operatorNamespace, "system:authenticated"},
	}
	fd, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	g.Eventually(func() error {
		return fd.List(ctx, &platformv1.MetaChannelList{})
	}, timeout, interval).Should(Succeed(), "the front door lists MetaChannels cluster-wide")

	forbidden := func(err error) {
		g.ExpectWithOffset(1, apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	}
	forbidden(fd.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: "app-rbac"}, &corev1.Secret{}))
	forbidden(fd.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: controllers.ForwardingKeySecret}, &corev1.Secret{}))
	forbidden(fd.Get(ctx, types.NamespacedName{Namespace: nsT, Name: "tenant-secret"}, &corev1.Secret{}))
	forbidden(fd.List(ctx, &corev1.SecretList{}))
	forbidden(fd.List(ctx, &platformv1.TenantList{}))
	forbidden(fd.Create(ctx, &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: nsT},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: "1"},
			AppRef: &platformv1.MetaAppRef{Name: "rbac"}}}))
}

// A tenant with a channel behind a MetaApp gets its derived forwarding key
// in its namespace and its worker reads it; without one, the key goes.
func TestTenantWorkerGetsItsForwardingKey(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	appSecretIn(g, "app-fwd")
	g.Expect(k8s.Create(ctx, newMetaApp("fwd", "app-fwd"))).To(Succeed())
	ns := mchTenant(t, g, "fd-key")
	ch := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "page", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: "880011"},
			AppRef: &platformv1.MetaAppRef{Name: "fwd"}}}
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())

	secretKey := types.NamespacedName{Namespace: ns, Name: controllers.ForwardKeySecret}
	var s corev1.Secret
	g.Eventually(func() error { return k8s.Get(ctx, secretKey, &s) }, timeout, interval).Should(Succeed())
	var master corev1.Secret
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: operatorNamespace, Name: controllers.ForwardingKeySecret}, &master)).To(Succeed())
	mk, err := hex.DecodeString(string(master.Data[controllers.ForwardingKeyKey]))
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(string(s.Data[controllers.ForwardingKeyKey])).To(Equal(hex.EncodeToString(forward.TenantKey(mk, "fd-key"))))
	g.Expect(string(s.Data[controllers.ForwardingKeyKey])).NotTo(Equal(string(master.Data[controllers.ForwardingKeyKey])), "never the forwarding key itself")
	g.Expect(s.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, "fd-key"))
	g.Expect(metav1.GetControllerOf(&s)).NotTo(BeNil())
	g.Expect(metav1.GetControllerOf(&s).Kind).To(Equal("Tenant"))

	depKey := types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}
	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, depKey, &dep)).To(Succeed())
		g.Expect(dep.Spec.Template.Spec.Containers[0].Args).To(ContainElement("--forward-key-file=/var/run/omniflow/forward/key"))
		g.Expect(slices.ContainsFunc(dep.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
			return v.Secret != nil && v.Secret.SecretName == controllers.ForwardKeySecret
		})).To(BeTrue())
	}, timeout, interval).Should(Succeed())

	// The last channel behind an app goes: so do the key and the flag.
	g.Expect(k8s.Delete(ctx, ch)).To(Succeed())
	g.Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, secretKey, &corev1.Secret{})) }, timeout, interval).Should(BeTrue())
	g.Eventually(func(g Gomega) {
		var dep appsv1.Deployment
		g.Expect(k8s.Get(ctx, depKey, &dep)).To(Succeed())
		g.Expect(dep.Spec.Template.Spec.Containers[0].Args).NotTo(ContainElement(HavePrefix("--forward-key-file")))
	}, timeout, interval).Should(Succeed())
}

// A channel behind an app is served once the app is Ready, and publishes
// the app's URL, not a per-channel one.
func TestChannelBehindAMetaAppFollowsTheApp(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "fd-follow")
	ch := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "page", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: "880022"},
			AppRef: &platformv1.MetaAppRef{Name: "follow"}}}
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	mchExpectReady(g, ns, "page", metav1.ConditionFalse, platformv1.ReasonMetaAppNotFound)

	appSecretIn(g, "app-follow")
	g.Expect(k8s.Create(ctx, newMetaApp("follow", "app-follow"))).To(Succeed())
	mchExpectReady(g, ns, "page", metav1.ConditionFalse, platformv1.ReasonMetaAppNotReady)
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.FrontDoorName("follow")}
	g.Eventually(func() error { return k8s.Get(ctx, key, &appsv1.Deployment{}) }, timeout, interval).Should(Succeed())
	markAvailable(g, key)
	updateApp(g, "follow", func(a *platformv1.MetaApp) { // an update: the app is judged again
		a.Spec.Replicas = ptr.To[int32](2)
		a.Spec.AppID = "4244"
	})
	var app platformv1.MetaApp
	got := mchExpectReady(g, ns, "page", metav1.ConditionTrue, platformv1.ReasonChannelAccepted, "through MetaApp follow")
	g.Expect(got.Status.HeldID).To(Equal("messenger-page/880022"))
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "follow"}, &app)).To(Succeed())
		g.Expect(app.Status.Channels).To(Equal(int32(1)))
	}, timeout, interval).Should(Succeed())
}

// A MetaApp's Ingress deleted by hand comes back; its path edited by hand is
// put back (the Ingress is watched, not only applied).
func TestMetaAppIngressIsPutRight(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	appSecretIn(g, "app-ingfix")
	g.Expect(k8s.Create(ctx, newMetaApp("ingfix", "app-ingfix"))).To(Succeed())
	key := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.FrontDoorName("ingfix")}

	var ing networkingv1.Ingress
	g.Eventually(func() error { return k8s.Get(ctx, key, &ing) }, timeout, interval).Should(Succeed())
	first := ing.UID
	g.Expect(k8s.Delete(ctx, &ing)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, &ing)).To(Succeed())
		g.Expect(ing.UID).NotTo(Equal(first), "a new Ingress, not the deleted one")
		g.Expect(ing.Spec.Rules[0].HTTP.Paths[0].Path).To(Equal("/apps/ingfix/"))
	}, timeout, interval).Should(Succeed())

	g.Expect(retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := k8s.Get(ctx, key, &ing); err != nil {
			return err
		}
		ing.Spec.Rules[0].HTTP.Paths[0].Path = "/elsewhere/"
		return k8s.Update(ctx, &ing)
	})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, &ing)).To(Succeed())
		g.Expect(ing.Spec.Rules).To(HaveLen(1))
		g.Expect(ing.Spec.Rules[0].HTTP.Paths).To(HaveLen(1))
		g.Expect(ing.Spec.Rules[0].HTTP.Paths[0].Path).To(Equal("/apps/ingfix/"))
	}, timeout, interval).Should(Succeed())
}
