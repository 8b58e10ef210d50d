package controllers_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	gtypes "github.com/onsi/gomega/types"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// Secret values used by these tests: none may ever appear in a status,
// an Event or a condition message.
const (
	mchAppSecret   = "mch-test-app-secret-5f1c"
	mchVerifyToken = "mch-test-verify-token-9a7e"
)

// mchTenant creates an Active tenant and waits for its namespace.
func mchTenant(t *testing.T, g Gomega, name string) string {
	t.Helper()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: platformv1.TenantSpec{DisplayName: "Test " + name}}
	g.Expect(k8s.Create(context.Background(), tn)).To(Succeed())
	ns := "tenant-" + name
	g.Eventually(func() error {
		return k8s.Get(context.Background(), types.NamespacedName{Name: ns}, &corev1.Namespace{})
	}, timeout, interval).Should(Succeed())
	return ns
}

// mchSecret creates a Secret with the tenant label, which the operator
// watches (metadata only); data maps keys to values.
func mchSecret(g Gomega, ns, name, tenant string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: map[string][]byte{}}
	if tenant != "" {
		s.Labels = map[string]string{platformv1.LabelTenant: tenant}
	}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	g.Expect(k8s.Create(context.Background(), s)).To(Succeed())
	return s
}

func mchWhatsApp(ns, name, phoneID, secret string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phoneID, BusinessAccountID: "777000"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: secret, Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: secret, Key: "verifyToken"},
		},
	}
}

func mchInstagram(ns, name, accountID, secret string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformInstagram,
			Instagram:      &platformv1.InstagramChannel{AccountID: accountID},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: secret, Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: secret, Key: "verifyToken"},
		},
	}
}

func mchGet(g Gomega, ns, name string) *platformv1.MetaChannel {
	var ch platformv1.MetaChannel
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, &ch)).To(Succeed())
	return &ch
}

// mchExpectReady waits for the channel's Ready condition, checks it is
// stamped with the generation, and returns the channel.
func mchExpectReady(g Gomega, ns, name string, status metav1.ConditionStatus, reason string, msgParts ...string) *platformv1.MetaChannel {
	var ch *platformv1.MetaChannel
	g.Eventually(func(g Gomega) {
		ch = mchGet(g, ns, name)
		c := meta.FindStatusCondition(ch.Status.Conditions, platformv1.ConditionReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), "message: %s", c.Message)
		g.Expect(c.Reason).To(Equal(reason), "message: %s", c.Message)
		for _, p := range msgParts {
			g.Expect(c.Message).To(ContainSubstring(p))
		}
		g.Expect(c.ObservedGeneration).To(Equal(ch.Generation))
		g.Expect(ch.Status.ObservedGeneration).To(Equal(ch.Generation))
	}, timeout, interval).Should(Succeed())
	mchExpectNoSecretValues(g, ch)
	return ch
}

func mchExpectNoSecretValues(g Gomega, ch *platformv1.MetaChannel) {
	for _, c := range ch.Status.Conditions {
		g.Expect(c.Message).NotTo(Or(ContainSubstring(mchAppSecret), ContainSubstring(mchVerifyToken)))
	}
}

// mchEvents lists the Events regarding a channel, as "type reason: note".
func mchEvents(g Gomega, ns, name string) []string {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
	var out []string
	for _, e := range evs.Items {
		if e.Regarding.Kind == "MetaChannel" && e.Regarding.Name == name {
			out = append(out, e.Type+" "+e.Reason+": "+e.Note)
		}
	}
	return out
}

func mchWantURL(tenant, channel string) string {
	if suiteRoute.WebhookBaseURL == "" {
		return ""
	}
	return suiteRoute.WebhookBaseURL + "/t/" + tenant + "/webhooks/meta/" + channel
}

func TestMetaChannelLifecycle(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "mch-life")

	ch := mchWhatsApp(ns, "wa", "5550001", "mch-app")
	g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	got := mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonSecretMissing,
		"appSecretRef", "Secret "+ns+"/mch-app not found", "verifyTokenRef")
	g.Expect(got.Status.Tenant).To(Equal("mch-life"))
	g.Expect(got.Status.WebhookURL).To(Equal(mchWantURL("mch-life", "wa")), "the URL is published while the tenant is Active")

	// The Secret appears without the verify token key.
	secret := mchSecret(g, ns, "mch-app", "mch-life", map[string]string{"appSecret": mchAppSecret})
	mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonSecretKeyMissing,
		`verifyTokenRef: Secret `+ns+`/mch-app has no key "verifyToken"`)

	// The key appears, empty (whitespace only).
	patch := client.MergeFrom(secret.DeepCopy())
	secret.Data["verifyToken"] = []byte(" \n")
	g.Expect(k8s.Patch(ctx, secret, patch)).To(Succeed())
	mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonSecretValueEmpty,
		`verifyTokenRef: key "verifyToken" of Secret `+ns+`/mch-app is empty`)

	// A value: the channel is accepted.
	patch = client.MergeFrom(secret.DeepCopy())
	secret.Data["verifyToken"] = []byte(mchVerifyToken)
	g.Expect(k8s.Patch(ctx, secret, patch)).To(Succeed())
	got = mchExpectReady(g, ns, "wa", metav1.ConditionTrue, platformv1.ReasonChannelAccepted, "mch-life")
	g.Expect(got.Status.WebhookURL).To(Equal(mchWantURL("mch-life", "wa")))

	// Every transition made one Event, none with a Secret value.
	g.Eventually(func(g Gomega) {
		evs := strings.Join(mchEvents(g, ns, "wa"), "\n")
		for _, want := range []string{
			"Warning " + platformv1.ReasonSecretMissing + ":",
			"Warning " + platformv1.ReasonSecretKeyMissing + ":",
			"Warning " + platformv1.ReasonSecretValueEmpty + ":",
			"Normal " + platformv1.ReasonChannelAccepted + ":",
		} {
			g.Expect(evs).To(ContainSubstring(want))
		}
		g.Expect(evs).NotTo(Or(ContainSubstring(mchAppSecret), ContainSubstring(mchVerifyToken)))
	}, timeout, interval).Should(Succeed())

	// A spec change that breaks a reference is seen at once.
	got = mchGet(g, ns, "wa")
	chPatch := client.MergeFrom(got.DeepCopy())
	got.Spec.AccessTokenRef = &platformv1.SecretKeyRef{Name: "mch-app", Key: "accessToken"}
	g.Expect(k8s.Patch(ctx, got, chPatch)).To(Succeed())
	mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonSecretKeyMissing, `accessTokenRef: Secret `+ns+`/mch-app has no key "accessToken"`)
	got = mchGet(g, ns, "wa")
	chPatch = client.MergeFrom(got.DeepCopy())
	got.Spec.AccessTokenRef = nil
	g.Expect(k8s.Patch(ctx, got, chPatch)).To(Succeed())
	mchExpectReady(g, ns, "wa", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)

	// The Secret goes: the channel is refused again.
	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonSecretMissing, "Secret "+ns+"/mch-app not found")

	// The tenant is deactivated: not served, no URL.
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "mch-life"}, &tn)).To(Succeed())
	tPatch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = platformv1.TenantDeactivated
	g.Expect(k8s.Patch(ctx, &tn, tPatch)).To(Succeed())
	got = mchExpectReady(g, ns, "wa", metav1.ConditionFalse, platformv1.ReasonTenantDeactivated, "Tenant mch-life is deactivated")
	g.Expect(got.Status.WebhookURL).To(BeEmpty())
	g.Expect(got.Status.Tenant).To(Equal("mch-life"))
}

func TestMetaChannelOutsideATenantNamespaceIsNotServed(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	mchTenant(t, g, "mch-owner")

	plain := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mch-plain"}}
	g.Expect(k8s.Create(ctx, plain)).To(Succeed())
	mchSecret(g, "mch-plain", "mch-app", "", map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken})
	g.Expect(k8s.Create(ctx, mchWhatsApp("mch-plain", "wa", "5550101", "mch-app"))).To(Succeed())
	got := mchExpectReady(g, "mch-plain", "wa", metav1.ConditionFalse, platformv1.ReasonNotInTenantNamespace,
		"namespace mch-plain is not a tenant's namespace")
	g.Expect(got.Status.Tenant).To(BeEmpty())
	g.Expect(got.Status.WebhookURL).To(BeEmpty())

	// Labelled for a Tenant that does not exist.
	patch := client.MergeFrom(plain.DeepCopy())
	plain.Labels = map[string]string{platformv1.LabelTenant: "mch-ghost"}
	g.Expect(k8s.Patch(ctx, plain, patch)).To(Succeed())
	mchExpectReady(g, "mch-plain", "wa", metav1.ConditionFalse, platformv1.ReasonTenantNotFound, "Tenant mch-ghost, which does not exist")

	// Labelled for a Tenant that lives in another namespace: a label is
	// not enough to be served as that tenant.
	patch = client.MergeFrom(plain.DeepCopy())
	plain.Labels[platformv1.LabelTenant] = "mch-owner"
	g.Expect(k8s.Patch(ctx, plain, patch)).To(Succeed())
	got = mchExpectReady(g, "mch-plain", "wa", metav1.ConditionFalse, platformv1.ReasonNotInTenantNamespace,
		"labelled for Tenant mch-owner, which uses another namespace")
	g.Expect(got.Status.Conditions[0].Message).NotTo(ContainSubstring("tenant-mch-owner"))

	// The Tenant that owns the namespace arrives: the channel is served.
	patch = client.MergeFrom(plain.DeepCopy())
	plain.Labels[platformv1.LabelTenant] = "mch-adopt"
	g.Expect(k8s.Patch(ctx, plain, patch)).To(Succeed())
	mchExpectReady(g, "mch-plain", "wa", metav1.ConditionFalse, platformv1.ReasonTenantNotFound)
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "mch-adopt"},
		Spec: platformv1.TenantSpec{DisplayName: "adopts mch-plain", Namespace: "mch-plain"}}
	g.Expect(k8s.Create(ctx, tn)).To(Succeed())
	got = mchExpectReady(g, "mch-plain", "wa", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	g.Expect(got.Status.Tenant).To(Equal("mch-adopt"))
	g.Expect(got.Status.WebhookURL).To(Equal(mchWantURL("mch-adopt", "wa")))
}

func TestMetaChannelConflictAcrossTenants(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// The first claimant's namespace sorts after the second's, so that only
	// the creation time can make it win.
	nsFirst := mchTenant(t, g, "mch-conf-z")
	nsLater := mchTenant(t, g, "mch-conf-a")
	for _, ns := range []string{nsFirst, nsLater} {
		mchSecret(g, ns, "mch-app", strings.TrimPrefix(ns, "tenant-"), map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken})
	}

	first := mchWhatsApp(nsFirst, "wa", "5550202", "mch-app")
	g.Expect(k8s.Create(ctx, first)).To(Succeed())
	firstIG := mchInstagram(nsFirst, "ig", "17840000202", "mch-app")
	g.Expect(k8s.Create(ctx, firstIG)).To(Succeed())
	mchExpectReady(g, nsFirst, "wa", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	mchExpectReady(g, nsFirst, "ig", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	// creationTimestamp has a resolution of one second: make the later
	// channels later (not a sleep for logic under test, which does not wait).
	g.Eventually(func() bool { return time.Now().After(firstIG.CreationTimestamp.Add(1100 * time.Millisecond)) },
		timeout, interval).Should(BeTrue())

	// The same phone number id in another tenant: refused, saying that the id
	// is served elsewhere and nothing about where.
	g.Expect(k8s.Create(ctx, mchWhatsApp(nsLater, "wa-copy", "5550202", "mch-app"))).To(Succeed())
	got := mchExpectReady(g, nsLater, "wa-copy", metav1.ConditionFalse, platformv1.ReasonConflict,
		"another channel already serves the WhatsApp phoneNumberID of this channel")
	g.Expect(got.Status.HeldID).To(BeEmpty())
	mchExpectNothingOf(g, got, "mch-conf-z", "5550202")
	// The same Instagram account id, too; a WhatsApp channel whose
	// phoneNumberID equals that account id is no conflict (other platform).
	g.Expect(k8s.Create(ctx, mchInstagram(nsLater, "ig-copy", "17840000202", "mch-app"))).To(Succeed())
	g.Expect(k8s.Create(ctx, mchWhatsApp(nsLater, "wa-other", "17840000202", "mch-app"))).To(Succeed())
	got = mchExpectReady(g, nsLater, "ig-copy", metav1.ConditionFalse, platformv1.ReasonConflict, "another channel already serves the Instagram accountID")
	mchExpectNothingOf(g, got, "mch-conf-z")
	mchExpectReady(g, nsLater, "wa-other", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	g.Expect(mchGet(g, nsFirst, "wa").Status.HeldID).To(Equal("whatsapp-phone/5550202"))
	g.Expect(mchGet(g, nsFirst, "ig").Status.HeldID).To(Equal("instagram-account/17840000202"))

	// The first claimants stay served: a later channel never takes over.
	g.Consistently(func(g Gomega) {
		for _, name := range []string{"wa", "ig"} {
			c := meta.FindStatusCondition(mchGet(g, nsFirst, name).Status.Conditions, platformv1.ConditionReady)
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		}
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())

	g.Eventually(func(g Gomega) {
		g.Expect(strings.Join(mchEvents(g, nsLater, "wa-copy"), "\n")).To(ContainSubstring("Warning " + platformv1.ReasonConflict + ":"))
	}, timeout, interval).Should(Succeed())
	mchExpectEventsNameNothingOf(g, nsLater, "mch-conf-z")

	// The holder goes: the later channel gets the claim.
	g.Expect(k8s.Delete(ctx, first)).To(Succeed())
	mchExpectReady(g, nsLater, "wa-copy", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	// The holder changes its id: it releases the old one.
	ig := mchGet(g, nsFirst, "ig")
	patch := client.MergeFrom(ig.DeepCopy())
	ig.Spec.Instagram.AccountID = "17840000999"
	g.Expect(k8s.Patch(ctx, ig, patch)).To(Succeed())
	mchExpectReady(g, nsLater, "ig-copy", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	mchExpectReady(g, nsFirst, "ig", metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
}

// mchExpectNothingOf checks that a channel's status names none of words
// (another tenant's name, namespace, channel or id).
func mchExpectNothingOf(g Gomega, ch *platformv1.MetaChannel, words ...string) {
	g.ExpectWithOffset(1, ch.Status.HeldID).NotTo(Or(mchContainsAny(words)...))
	g.ExpectWithOffset(1, ch.Status.WebhookURL).NotTo(Or(mchContainsAny(words)...))
	for _, c := range ch.Status.Conditions {
		g.ExpectWithOffset(1, c.Message).NotTo(Or(mchContainsAny(words)...))
	}
}

// mchExpectEventsNameNothingOf checks every Event of a namespace (as its
// users read them: note, reason, related object) for words.
func mchExpectEventsNameNothingOf(g Gomega, ns string, words ...string) {
	var evs eventsv1.EventList
	g.ExpectWithOffset(1, k8s.List(context.Background(), &evs, client.InNamespace(ns))).To(Succeed())
	for _, e := range evs.Items {
		g.ExpectWithOffset(1, e.Note+" "+e.Reason).NotTo(Or(mchContainsAny(words)...))
		if e.Related != nil {
			g.ExpectWithOffset(1, e.Related.Namespace+"/"+e.Related.Name).NotTo(Or(mchContainsAny(words)...),
				"an Event in %s relates to another namespace's object", ns)
		}
	}
}

func mchContainsAny(words []string) []gtypes.GomegaMatcher {
	var ms []gtypes.GomegaMatcher
	for _, w := range words {
		ms = append(ms, ContainSubstring(w))
	}
	return ms
}

func mchSecretNames(g Gomega, ns string) []string {
	var role rbacv1.Role
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &role)).To(Succeed())
	var names []string
	for _, r := range role.Rules {
		if len(r.Resources) == 1 && r.Resources[0] == "secrets" {
			if slices.Equal(r.Verbs, []string{"create"}) {
				continue // creating reads nothing (Meta's deletion callback stores identifiers)
			}
			g.Expect(r.ResourceNames).NotTo(BeEmpty(), "a Secret rule without resourceNames grants every Secret")
			g.Expect(r.Verbs).NotTo(ContainElement("*"))
			names = append(names, r.ResourceNames...)
		}
	}
	// The tenant's subject key is always readable; the rest are the channels'.
	g.Expect(names).To(ContainElement(platformv1.SubjectKeySecretName))
	return slices.DeleteFunc(names, func(n string) bool { return n == platformv1.SubjectKeySecretName })
}

func TestWorkerRoleTracksChannelSecrets(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "mch-role")

	one := mchWhatsApp(ns, "one", "5550303", "s-app")
	one.Spec.VerifyTokenRef.Name = "s-verify"
	one.Spec.AccessTokenRef = &platformv1.SecretKeyRef{Name: "s-access", Key: "token"}
	two := mchInstagram(ns, "two", "17840000303", "s-verify")
	two.Spec.AppSecretRef.Name = "s-ig"
	g.Expect(k8s.Create(ctx, one)).To(Succeed())
	g.Expect(k8s.Create(ctx, two)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(mchSecretNames(g, ns)).To(Equal([]string{"s-access", "s-app", "s-ig", "s-verify"}))
	}, timeout, interval).Should(Succeed())

	// A reference removed from one channel; still named by the other.
	patch := client.MergeFrom(one.DeepCopy())
	one.Spec.AccessTokenRef = nil
	one.Spec.VerifyTokenRef.Name = "s-app"
	g.Expect(k8s.Patch(ctx, one, patch)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(mchSecretNames(g, ns)).To(Equal([]string{"s-app", "s-ig", "s-verify"}))
	}, timeout, interval).Should(Succeed())

	g.Expect(k8s.Delete(ctx, two)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(mchSecretNames(g, ns)).To(Equal([]string{"s-app"}))
	}, timeout, interval).Should(Succeed())
}

// workerClient acts as a tenant worker's ServiceAccount.
func workerClient(g Gomega, ns string) client.WithWatch {
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + controllers.WorkerName}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	return c
}

func TestWorkerIdentityIsLeastPrivilege(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	nsA := mchTenant(t, g, "mch-rbac-a")
	nsB := mchTenant(t, g, "mch-rbac-b")
	values := map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken}
	mchSecret(g, nsA, "mch-ref", "", values)
	mchSecret(g, nsA, "mch-unref", "", values)
	mchSecret(g, nsB, "mch-ref", "", values)
	chA := mchWhatsApp(nsA, "wa", "5550404", "mch-ref")
	g.Expect(k8s.Create(ctx, chA)).To(Succeed())
	g.Expect(k8s.Create(ctx, mchWhatsApp(nsB, "wa", "5550405", "mch-ref"))).To(Succeed())
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "mch-dr", Namespace: nsA},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: "mch-subject", Key: "id"},
		},
	}
	g.Expect(k8s.Create(ctx, dr)).To(Succeed())

	worker := workerClient(g, nsA)
	key := func(ns, name string) types.NamespacedName { return types.NamespacedName{Namespace: ns, Name: name} }

	// RBAC follows the Role through an informer: wait for the grant.
	g.Eventually(func() error {
		return worker.Get(ctx, key(nsA, "mch-ref"), &corev1.Secret{})
	}, timeout, interval).Should(Succeed(), "the worker reads the Secret its channel references")

	forbidden := func(err error) {
		g.ExpectWithOffset(1, apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	}
	forbidden(worker.Get(ctx, key(nsA, "mch-unref"), &corev1.Secret{}))
	// The Secret it may read it may also list and watch, but only selected by its
	// name (how the worker watches its channels' Secrets); another name so selected is
	// refused.
	byName := client.MatchingFields{"metadata.name": "mch-ref"}
	var one corev1.SecretList
	g.Expect(worker.List(ctx, &one, client.InNamespace(nsA), byName)).To(Succeed())
	g.Expect(one.Items).To(HaveLen(1))
	wi, err := worker.Watch(ctx, &corev1.SecretList{}, client.InNamespace(nsA), byName)
	g.Expect(err).NotTo(HaveOccurred())
	wi.Stop()
	unref := client.MatchingFields{"metadata.name": "mch-unref"}
	forbidden(worker.List(ctx, &corev1.SecretList{}, client.InNamespace(nsA), unref))
	_, err = worker.Watch(ctx, &corev1.SecretList{}, client.InNamespace(nsA), unref)
	forbidden(err)
	forbidden(worker.Get(ctx, key(nsB, "mch-ref"), &corev1.Secret{}))
	forbidden(worker.List(ctx, &corev1.SecretList{}, client.InNamespace(nsA)))
	forbidden(worker.List(ctx, &platformv1.MetaChannelList{}, client.InNamespace(nsB)))
	forbidden(worker.List(ctx, &platformv1.DeletionRequestList{}, client.InNamespace(nsB)))

	// Its own channels: list and watch.
	var chans platformv1.MetaChannelList
	g.Expect(worker.List(ctx, &chans, client.InNamespace(nsA))).To(Succeed())
	g.Expect(chans.Items).To(ContainElement(HaveField("ObjectMeta.Name", "wa")))
	w, err := worker.Watch(ctx, &platformv1.MetaChannelList{}, client.InNamespace(nsA))
	g.Expect(err).NotTo(HaveOccurred())
	w.Stop()
	forbidden(worker.Patch(ctx, chA.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`))))
	// A channel's status is the operator's word: the worker cannot mark itself Ready.
	forbidden(worker.Status().Patch(ctx, chA.DeepCopy(), client.RawPatch(types.MergePatchType, []byte(`{"status":{"webhookURL":"https://attacker.example/"}}`))))

	// Its own DeletionRequests: read, and write their status only.
	g.Expect(worker.Get(ctx, key(nsA, "mch-dr"), &platformv1.DeletionRequest{})).To(Succeed())
	var got platformv1.DeletionRequest
	g.Expect(worker.Get(ctx, key(nsA, "mch-dr"), &got)).To(Succeed())
	patch := client.MergeFrom(got.DeepCopy())
	got.Status.Phase = platformv1.DeletionRunning
	g.Expect(worker.Status().Patch(ctx, &got, patch)).To(Succeed())
	g.Expect(k8s.Get(ctx, key(nsA, "mch-dr"), &got)).To(Succeed())
	g.Expect(got.Status.Phase).To(Equal(platformv1.DeletionRunning))
	forbidden(worker.Delete(ctx, &got))

	// The channel goes: so does the worker's access to its Secret.
	g.Expect(k8s.Delete(ctx, chA)).To(Succeed())
	g.Eventually(func() bool {
		return apierrors.IsForbidden(worker.Get(ctx, key(nsA, "mch-ref"), &corev1.Secret{}))
	}, timeout, interval).Should(BeTrue())
}

func TestTenantIngressRoutesToItsWorker(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	ns := mchTenant(t, g, "mch-route")

	var ing networkingv1.Ingress
	g.Eventually(func() error {
		return k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.RouteName}, &ing)
	}, timeout, interval).Should(Succeed())
	var tn platformv1.Tenant
	g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "mch-route"}, &tn)).To(Succeed())
	g.Expect(ing.Labels).To(HaveKeyWithValue(platformv1.LabelTenant, "mch-route"))
	g.Expect(ing.Labels).To(HaveKeyWithValue(platformv1.LabelManagedBy, platformv1.ManagedByValue))
	owner := metav1.GetControllerOf(&ing)
	g.Expect(owner).NotTo(BeNil())
	g.Expect(owner.UID).To(Equal(tn.UID))

	g.Expect(ing.Spec.Rules).To(HaveLen(1))
	rule := ing.Spec.Rules[0]
	g.Expect(rule.Host).To(Equal(suiteRoute.IngressHost))
	g.Expect(rule.HTTP.Paths).To(HaveLen(1))
	p := rule.HTTP.Paths[0]
	g.Expect(p.Path).To(Equal("/t/mch-route/"))
	g.Expect(*p.PathType).To(Equal(networkingv1.PathTypePrefix))
	g.Expect(p.Backend.Service.Name).To(Equal(controllers.WorkerName))
	g.Expect(p.Backend.Service.Port.Number).To(Equal(int32(controllers.ServicePort)))
	if suiteRoute.IngressClass == "" {
		g.Expect(ing.Spec.IngressClassName).To(BeNil())
	} else {
		g.Expect(*ing.Spec.IngressClassName).To(Equal(suiteRoute.IngressClass))
	}
	if suiteRoute.IngressTLSSecret == "" {
		g.Expect(ing.Spec.TLS).To(BeEmpty())
	} else {
		g.Expect(ing.Spec.TLS).To(ConsistOf(networkingv1.IngressTLS{Hosts: []string{suiteRoute.IngressHost}, SecretName: suiteRoute.IngressTLSSecret}))
	}
	for k, v := range suiteRoute.IngressAnnotations {
		g.Expect(ing.Annotations).To(HaveKeyWithValue(k, v))
	}
	// The Service the Ingress names is the worker's, on that port.
	var svc corev1.Service
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: p.Backend.Service.Name}, &svc)).To(Succeed())
	g.Expect(svc.Spec.Ports).To(ContainElement(HaveField("Port", p.Backend.Service.Port.Number)))

	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, types.NamespacedName{Name: "mch-route"}, &tn)).To(Succeed())
		c := meta.FindStatusCondition(tn.Status.Conditions, platformv1.ConditionRouteReady)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(c.Reason).To(Equal(platformv1.ReasonRouteConfigured))
		g.Expect(c.Message).To(ContainSubstring("/t/mch-route/"))
	}, timeout, interval).Should(Succeed())

	// Deleted by hand: recreated while the tenant is Active.
	oldUID := ing.UID
	g.Expect(k8s.Delete(ctx, &ing)).To(Succeed())
	g.Eventually(func(g Gomega) {
		var fresh networkingv1.Ingress
		g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.RouteName}, &fresh)).To(Succeed())
		g.Expect(fresh.UID).NotTo(Equal(oldUID))
	}, timeout, interval).Should(Succeed())
}

// Without --ingress-class the API server gives a new Ingress the cluster's
// default class; the operator keeps it and does not write again.
func TestTenantIngressKeepsTheDefaultClass(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	class := &networkingv1.IngressClass{
		ObjectMeta: metav1.ObjectMeta{Name: "mch-default", Annotations: map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}},
		Spec:       networkingv1.IngressClassSpec{Controller: "example.test/ingress"},
	}
	g.Expect(k8s.Create(ctx, class)).To(Succeed())
	defer func() { g.Expect(k8s.Delete(ctx, class)).To(Succeed()) }()
	wantClass := "mch-default"
	if suiteRoute.IngressClass != "" {
		wantClass = suiteRoute.IngressClass // the flag wins over the default
	}

	ns := mchTenant(t, g, "mch-defclass")
	key := types.NamespacedName{Namespace: ns, Name: controllers.RouteName}
	var ing networkingv1.Ingress
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, key, &ing)).To(Succeed())
		g.Expect(ing.Spec.IngressClassName).NotTo(BeNil())
		g.Expect(*ing.Spec.IngressClassName).To(Equal(wantClass))
	}, timeout, interval).Should(Succeed())

	before := waitSettled(g)
	reconciles := reconcileCount(g)
	// Someone else's annotation, beside ours: the tenant is reconciled again.
	patch := client.MergeFrom(ing.DeepCopy())
	if ing.Annotations == nil {
		ing.Annotations = map[string]string{}
	}
	ing.Annotations["example.test/touched"] = "yes"
	g.Expect(k8s.Patch(ctx, &ing, patch)).To(Succeed())
	g.Eventually(func() float64 { return reconcileCount(g) }, timeout, interval).Should(BeNumerically(">", reconciles))
	after := waitSettled(g)
	_, paths := mgrWrites.snapshot()
	for _, p := range paths[before:after] {
		g.Expect(p).NotTo(ContainSubstring("/namespaces/"+ns+"/ingresses"), "the Ingress was written again")
	}
	g.Expect(k8s.Get(ctx, key, &ing)).To(Succeed())
	g.Expect(*ing.Spec.IngressClassName).To(Equal(wantClass))
}
