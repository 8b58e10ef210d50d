package controllers_test

import (
	"context"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// mchSecrets gives a channel namespace the Secret mchWhatsApp and
// mchInstagram reference, with the tenant label when tenant is set.
func mchSecrets(g Gomega, ns, tenant string) {
	mchSecret(g, ns, "mch-app", tenant, map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken})
}

// mchExpectHolds waits until the channel is Ready and holds claim, and
// checks that it keeps both for a while.
func mchExpectHolds(g Gomega, ns, name, claim string) {
	mchExpectReady(g, ns, name, metav1.ConditionTrue, platformv1.ReasonChannelAccepted)
	g.Eventually(func(g Gomega) {
		g.Expect(mchGet(g, ns, name).Status.HeldID).To(Equal(claim))
	}, timeout, interval).Should(Succeed())
}

// mchExpectKeeps checks that channels stay Ready holding their claims.
func mchExpectKeeps(g Gomega, ns string, claims map[string]string) {
	g.Consistently(func(g Gomega) {
		for name, claim := range claims {
			ch := mchGet(g, ns, name)
			c := meta.FindStatusCondition(ch.Status.Conditions, platformv1.ConditionReady)
			g.Expect(c).NotTo(BeNil())
			g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "%s: %s %s", name, c.Reason, c.Message)
			g.Expect(ch.Status.HeldID).To(Equal(claim))
		}
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
}

// mchAfterCreationSecond waits until the clock is past the second in which
// obj was created, so that the next object is strictly later.
func mchAfterCreationSecond(g Gomega, obj client.Object) {
	g.Eventually(func() bool {
		return time.Now().After(obj.GetCreationTimestamp().Add(1100 * time.Millisecond))
	}, timeout, interval).Should(BeTrue())
}

func mchSetTenantState(g Gomega, name string, state platformv1.TenantState) {
	var tn platformv1.Tenant
	g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: name}, &tn)).To(Succeed())
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = state
	g.Expect(k8s.Patch(context.Background(), &tn, patch)).To(Succeed())
}

// A channel that serves an id keeps it: against a newcomer created in the
// same second whose namespace sorts first (the tie rule of first claims),
// and against an older channel that could not be served when the id was
// taken. When the holder's tenant is deactivated it lets go, and the
// earliest of the channels that may be served gets the id.
func TestServedChannelKeepsItsIDAgainstNewcomersAndOlderClaimants(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	nsHolder := mchTenant(t, g, "mch-hold-z")
	nsNew := mchTenant(t, g, "mch-hold-a") // sorts before the holder's namespace
	mchSecrets(g, nsHolder, "mch-hold-z")
	mchSecrets(g, nsNew, "mch-hold-a")

	// An older claimant that cannot be served yet: its namespace is labelled
	// for a Tenant that does not exist (yet).
	nsEarly := "mch-hold-early"
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsEarly,
		Labels: map[string]string{platformv1.LabelTenant: "mch-hold-early"}}})).To(Succeed())
	mchSecrets(g, nsEarly, "mch-hold-early")
	early := mchWhatsApp(nsEarly, "wa", "5550601", "mch-app")
	g.Expect(k8s.Create(ctx, early)).To(Succeed())
	mchExpectReady(g, nsEarly, "wa", metav1.ConditionFalse, platformv1.ReasonTenantNotFound)
	mchAfterCreationSecond(g, early)

	// The holder is accepted, although an older channel claims its id.
	holder := mchWhatsApp(nsHolder, "wa", "5550601", "mch-app")
	g.Expect(k8s.Create(ctx, holder)).To(Succeed())
	mchExpectHolds(g, nsHolder, "wa", "whatsapp-phone/5550601")

	// A newcomer right after, most likely in the same second; its namespace
	// sorts first, which decided first claims before the holder rule.
	newcomer := mchWhatsApp(nsNew, "wa", "5550601", "mch-app")
	g.Expect(k8s.Create(ctx, newcomer)).To(Succeed())
	t.Logf("holder created %s, newcomer %s (same second: %v)", holder.CreationTimestamp, newcomer.CreationTimestamp,
		holder.CreationTimestamp.Equal(&newcomer.CreationTimestamp))
	mchExpectReady(g, nsNew, "wa", metav1.ConditionFalse, platformv1.ReasonConflict, "another channel already serves")
	mchExpectKeeps(g, nsHolder, map[string]string{"wa": "whatsapp-phone/5550601"})

	// The older channel's Tenant arrives: it may be served now, and still
	// does not take the id.
	g.Expect(k8s.Create(ctx, &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "mch-hold-early"},
		Spec: platformv1.TenantSpec{DisplayName: "early", Namespace: nsEarly}})).To(Succeed())
	got := mchExpectReady(g, nsEarly, "wa", metav1.ConditionFalse, platformv1.ReasonConflict, "another channel already serves")
	mchExpectNothingOf(g, got, "mch-hold-z")
	mchExpectKeeps(g, nsHolder, map[string]string{"wa": "whatsapp-phone/5550601"})

	// The holder's tenant is deactivated: the holder lets go, and of the two
	// that may be served the earlier channel gets the id.
	mchSetTenantState(g, "mch-hold-z", platformv1.TenantDeactivated)
	got = mchExpectReady(g, nsHolder, "wa", metav1.ConditionFalse, platformv1.ReasonTenantDeactivated)
	g.Expect(got.Status.HeldID).To(BeEmpty())
	mchExpectHolds(g, nsEarly, "wa", "whatsapp-phone/5550601")
	mchExpectReady(g, nsNew, "wa", metav1.ConditionFalse, platformv1.ReasonConflict)

	// Reactivated, the old holder is a newcomer to its own former id.
	mchSetTenantState(g, "mch-hold-z", platformv1.TenantActive)
	mchExpectReady(g, nsHolder, "wa", metav1.ConditionFalse, platformv1.ReasonConflict)
	mchExpectKeeps(g, nsEarly, map[string]string{"wa": "whatsapp-phone/5550601"})
}

// A channel whose Secret goes missing keeps its id: a rotation gone wrong
// must not hand the id to another tenant.
func TestChannelWithAMissingSecretKeepsItsID(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	nsHolder := mchTenant(t, g, "mch-rot-b")
	nsOther := mchTenant(t, g, "mch-rot-a")
	mchSecrets(g, nsOther, "mch-rot-a")
	secret := mchSecret(g, nsHolder, "mch-app", "mch-rot-b", map[string]string{"appSecret": mchAppSecret, "verifyToken": mchVerifyToken})
	holder := mchWhatsApp(nsHolder, "wa", "5550701", "mch-app")
	g.Expect(k8s.Create(ctx, holder)).To(Succeed())
	mchExpectHolds(g, nsHolder, "wa", "whatsapp-phone/5550701")
	g.Expect(k8s.Create(ctx, mchWhatsApp(nsOther, "wa", "5550701", "mch-app"))).To(Succeed())
	mchExpectReady(g, nsOther, "wa", metav1.ConditionFalse, platformv1.ReasonConflict)

	g.Expect(k8s.Delete(ctx, secret)).To(Succeed())
	got := mchExpectReady(g, nsHolder, "wa", metav1.ConditionFalse, platformv1.ReasonSecretMissing)
	g.Expect(got.Status.HeldID).To(Equal("whatsapp-phone/5550701"))
	g.Consistently(func(g Gomega) {
		c := meta.FindStatusCondition(mchGet(g, nsOther, "wa").Status.Conditions, platformv1.ConditionReady)
		g.Expect(c.Reason).To(Equal(platformv1.ReasonConflict))
	}, 2*time.Second, 200*time.Millisecond).Should(Succeed())
}
