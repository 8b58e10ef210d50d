package controllers_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// The built-in edit ClusterRole gets its rules from the ClusterRoles that
// carry its aggregation label, ours among them (config/rbac), by
// kube-controller-manager's clusterrole-aggregation controller, which envtest
// does not run: the first editor test starts it, with the shipped editor
// role installed, and the suite stops it.
var (
	editRoleOnce sync.Once
	editRoleErr  error
	stopKCM      func()
)

func ensureEditRole(g Gomega) {
	editRoleOnce.Do(func() {
		var stop func()
		stop, editRoleErr = testenv.StartControllerManager(suiteEnv, os.Getenv("KUBEBUILDER_ASSETS"), "clusterrole-aggregation")
		if editRoleErr != nil {
			return
		}
		stopKCM = stop
		_, file, _, _ := runtime.Caller(0)
		var raw []byte
		raw, editRoleErr = os.ReadFile(filepath.Join(filepath.Dir(file), "..", "config", "rbac", "tenant_editor_role.yaml"))
		if editRoleErr != nil {
			return
		}
		var role rbacv1.ClusterRole
		if editRoleErr = yaml.Unmarshal(raw, &role); editRoleErr != nil {
			return
		}
		editRoleErr = client.IgnoreAlreadyExists(k8s.Create(context.Background(), &role))
	})
	g.Expect(editRoleErr).NotTo(HaveOccurred())
	g.Eventually(func(g Gomega) {
		var edit rbacv1.ClusterRole
		g.Expect(k8s.Get(context.Background(), types.NamespacedName{Name: "edit"}, &edit)).To(Succeed())
		g.Expect(edit.Rules).To(ContainElement(HaveField("Resources", ContainElement("metachannels"))))
	}, 3*timeout, interval).Should(Succeed(), "the edit ClusterRole aggregates the shipped editor role") // kube-controller-manager starts first
}

// editorClient acts as user, bound to the built-in edit ClusterRole in each
// of namespaces and nowhere else: a tenant's namespace editor.
func editorClient(g Gomega, user string, namespaces ...string) client.Client {
	ensureEditRole(g)
	ctx := context.Background()
	for _, ns := range namespaces {
		g.Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: user + "-edit"},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "edit"},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}},
		})).To(Succeed())
	}
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{"system:authenticated"}}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	for _, ns := range namespaces {
		// RBAC follows the binding through an informer: wait for the grant.
		g.Eventually(func() error {
			return c.List(ctx, &platformv1.MetaChannelList{}, client.InNamespace(ns))
		}, timeout, interval).Should(Succeed())
	}
	return c
}

// A namespace editor claims another tenant's ids, with channels created
// before the real ones, from a namespace that is no tenant's, from one
// labelled for a Tenant that does not exist, and from a deactivated
// tenant's. None of them takes an id, puts the real channels into
// Conflict, or tells the editor anything about the other tenant; the
// editor cannot forge the status that says who holds an id.
func TestAttackEditorCannotTakeAnotherTenantsIDs(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	// The victim's names: none may reach the attacker.
	const victim = "atk-victim-corp"
	victimNS := "tenant-" + victim
	const (
		phoneID   = "5550901"
		pageID    = "5550902"
		accountID = "17840000903"
	)

	nsPlain := "atk-plain"
	nsGhost := "atk-ghost"
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsPlain}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsGhost,
		Labels: map[string]string{platformv1.LabelTenant: "atk-ghost-tenant"}}})).To(Succeed())
	nsDeact := mchTenant(t, g, "atk-deact")
	mchSetTenantState(g, "atk-deact", platformv1.TenantDeactivated)
	attackerNamespaces := []string{nsPlain, nsGhost, nsDeact}
	wantReason := map[string]string{
		nsPlain: platformv1.ReasonNotInTenantNamespace,
		nsGhost: platformv1.ReasonTenantNotFound,
		nsDeact: platformv1.ReasonTenantDeactivated,
	}
	editor := editorClient(g, "atk-editor", attackerNamespaces...)

	// The attacker's channels come first, so that only the rule "only served
	// channels hold ids" stands between them and the ids.
	var last *platformv1.MetaChannel
	for _, ns := range attackerNamespaces {
		g.Expect(editor.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "mch-app"},
			Data: map[string][]byte{"appSecret": []byte(mchAppSecret), "verifyToken": []byte(mchVerifyToken)}})).To(Succeed())
		for _, ch := range mchAllPlatforms(ns, phoneID, pageID, accountID) {
			// A status in the request is dropped: only the operator says who
			// holds an id.
			ch.Status.HeldID = "whatsapp-phone/" + phoneID
			g.Expect(editor.Create(ctx, ch)).To(Succeed())
			g.Expect(ch.Status.HeldID).To(BeEmpty())
			last = ch
		}
	}
	for _, ns := range attackerNamespaces {
		for _, name := range []string{"wa", "fb", "ig"} {
			mchExpectReady(g, ns, name, metav1.ConditionFalse, wantReason[ns])
		}
	}
	mchAfterCreationSecond(g, last)

	g.Expect(k8s.Create(ctx, &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: victim},
		Spec: platformv1.TenantSpec{DisplayName: "Victim"}})).To(Succeed())
	g.Eventually(func() error { return k8s.Get(ctx, types.NamespacedName{Name: victimNS}, &corev1.Namespace{}) }, timeout, interval).Should(Succeed())
	mchSecrets(g, victimNS, victim)
	for _, ch := range mchAllPlatforms(victimNS, phoneID, pageID, accountID) {
		g.Expect(k8s.Create(ctx, ch)).To(Succeed())
	}
	held := map[string]string{
		"wa": "whatsapp-phone/" + phoneID, "fb": "messenger-page/" + pageID, "ig": "instagram-account/" + accountID,
	}
	for name, claim := range held {
		mchExpectHolds(g, victimNS, name, claim)
	}
	mchExpectKeeps(g, victimNS, held)
	var evs eventsv1.EventList
	g.Expect(k8s.List(ctx, &evs, client.InNamespace(victimNS))).To(Succeed())
	for _, e := range evs.Items {
		g.Expect(e.Reason).NotTo(Equal(platformv1.ReasonConflict), "the victim's channel was put into Conflict: %s", e.Note)
	}

	// The editor cannot write the status that says who holds an id...
	for _, ns := range attackerNamespaces {
		var ch platformv1.MetaChannel
		g.Expect(editor.Get(ctx, types.NamespacedName{Namespace: ns, Name: "wa"}, &ch)).To(Succeed())
		patch := client.MergeFrom(ch.DeepCopy())
		ch.Status.HeldID = held["wa"]
		meta.SetStatusCondition(&ch.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady,
			Status: metav1.ConditionTrue, Reason: platformv1.ReasonChannelAccepted, Message: "forged"})
		err := editor.Status().Patch(ctx, &ch, patch)
		g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	}
	// ...nor read anything of the victim's.
	err := editor.List(ctx, &platformv1.MetaChannelList{}, client.InNamespace(victimNS))
	g.Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)

	// What the editor can read (its channels' status, its namespaces'
	// Events) names nothing of the victim.
	secrets := []string{victim, victimNS, "Victim"}
	for _, ns := range attackerNamespaces {
		var list platformv1.MetaChannelList
		g.Expect(editor.List(ctx, &list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(3))
		for i := range list.Items {
			g.Expect(list.Items[i].Status.HeldID).To(BeEmpty())
			mchExpectNothingOf(g, &list.Items[i], secrets...)
		}
		mchExpectEventsNameNothingOf(g, ns, secrets...)
	}

	// The platform team creates the Tenant the ghost namespace is labelled
	// for: its channels may be served now, and still take nothing, and say
	// only that the ids are served elsewhere.
	g.Expect(k8s.Create(ctx, &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "atk-ghost-tenant"},
		Spec: platformv1.TenantSpec{DisplayName: "ghost", Namespace: nsGhost}})).To(Succeed())
	for _, name := range []string{"wa", "fb", "ig"} {
		got := mchExpectReady(g, nsGhost, name, metav1.ConditionFalse, platformv1.ReasonConflict, "another channel already serves")
		mchExpectNothingOf(g, got, secrets...)
	}
	mchExpectKeeps(g, victimNS, held)
	g.Eventually(func(g Gomega) {
		g.Expect(strings.Join(mchEvents(g, nsGhost, "wa"), "\n")).To(ContainSubstring("Warning " + platformv1.ReasonConflict))
	}, timeout, interval).Should(Succeed())
	mchExpectEventsNameNothingOf(g, nsGhost, secrets...)
}

// mchAllPlatforms is one channel of each platform: wa, fb and ig.
func mchAllPlatforms(ns, phoneID, pageID, accountID string) []*platformv1.MetaChannel {
	fb := mchInstagram(ns, "fb", "", "mch-app")
	fb.Spec.Platform, fb.Spec.Instagram = platformv1.PlatformMessenger, nil
	fb.Spec.Messenger = &platformv1.MessengerChannel{PageID: pageID}
	return []*platformv1.MetaChannel{
		mchWhatsApp(ns, "wa", phoneID, "mch-app"),
		fb,
		mchInstagram(ns, "ig", accountID, "mch-app"),
	}
}
