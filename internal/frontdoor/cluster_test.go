package frontdoor

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

func page(ns, name, id string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Generation: 1},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: id},
			AppSecretRef: &platformv1.SecretKeyRef{Name: "s", Key: "k"}, VerifyTokenRef: &platformv1.SecretKeyRef{Name: "s", Key: "v"}},
	}
}

// held marks mc as the operator does when it accepts it: Ready for its generation,
// holding its claim, in tenant's namespace.
func held(mc *platformv1.MetaChannel, tenant string) *platformv1.MetaChannel {
	mc.Status.Tenant = tenant
	mc.Status.HeldID = controllers.ChannelClaim(mc)
	apimeta.SetStatusCondition(&mc.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue,
		Reason: platformv1.ReasonChannelAccepted, ObservedGeneration: mc.Generation})
	return mc
}

func TestRoutable(t *testing.T) {
	now := metav1.Now()
	for name, tc := range map[string]struct {
		mc   *platformv1.MetaChannel
		want bool
	}{
		"accepted holder":  {held(page("a", "p", "1"), "a"), true},
		"never judged":     {page("a", "p", "1"), false},
		"conflict (no id)": {func() *platformv1.MetaChannel { m := held(page("a", "p", "1"), "a"); m.Status.HeldID = ""; return m }(), false},
		"holds another id": {func() *platformv1.MetaChannel {
			m := held(page("a", "p", "1"), "a")
			m.Status.HeldID = "messenger-page/2"
			return m
		}(), false},
		"spec changed": {func() *platformv1.MetaChannel { m := held(page("a", "p", "1"), "a"); m.Generation = 2; return m }(), false},
		"being deleted": {func() *platformv1.MetaChannel {
			m := held(page("a", "p", "1"), "a")
			m.DeletionTimestamp = &now
			return m
		}(), false},
		"no tenant": {held(page("a", "p", "1"), ""), false},
		"Ready=False": {func() *platformv1.MetaChannel {
			m := held(page("a", "p", "1"), "a")
			m.Status.Conditions[0].Status = metav1.ConditionFalse
			return m
		}(), false},
	} {
		if got := Routable(tc.mc); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}

// Two routable claimants of one id (a lagging cache): neither gets it.
func TestTenantsFromDropsADoubleClaim(t *testing.T) {
	items := []platformv1.MetaChannel{*held(page("ns-a", "p", "1"), "a"), *held(page("ns-b", "p", "1"), "b"), *held(page("ns-b", "q", "2"), "b")}
	got := TenantsFrom(items)
	if len(got) != 1 || got[0].Name != "b" || len(got[0].Channels) != 1 || got[0].Channels[0].Messenger.PageID != "2" || got[0].Worker != WorkerURL("ns-b") {
		t.Fatalf("routes %+v", got)
	}
	var tb Table
	if err := tb.Replace(got); err != nil {
		t.Fatal(err)
	}
}

// The worker URL is the Service the operator creates for a tenant.
func TestWorkerURL(t *testing.T) {
	if got := WorkerURL("tenant-acme"); got != "http://ingest-worker.tenant-acme.svc:8080" {
		t.Fatalf("WorkerURL = %s", got)
	}
}

// Against a real API server: the table follows the operator's verdicts on MetaChannels,
// within seconds and without a restart, and is not synced before the first list.
func TestClusterSourceFollowsTheClaimRule(t *testing.T) {
	g := NewWithT(t)
	env, err := testenv.Start(testenv.Scheme())
	g.Expect(err).NotTo(HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	k8s := env.Client
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	for _, ns := range []string{"tenant-acme", "tenant-globex"} {
		g.Expect(k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})).To(Succeed())
	}
	// create makes a channel; accept, when set, plays the operator accepting it.
	create := func(mc *platformv1.MetaChannel, tenant string, accept bool) *platformv1.MetaChannel {
		mc.Generation = 0
		g.Expect(k8s.Create(ctx, mc)).To(Succeed())
		if accept {
			mc.Generation = 1
			held(mc, tenant)
			g.Expect(k8s.Status().Update(ctx, mc)).To(Succeed())
		}
		return mc
	}
	acme := create(page("tenant-acme", "page", "104857600123456"), "acme", true)
	create(page("tenant-globex", "page", "104857600999999"), "globex", true)
	// globex also claims acme's Page: the operator refuses it (Conflict), it holds nothing.
	conflict := create(page("tenant-globex", "stolen", "104857600123456"), "globex", false)
	apimeta.SetStatusCondition(&conflict.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: platformv1.ReasonConflict, ObservedGeneration: 1})
	conflict.Status.Tenant = "globex"
	g.Expect(k8s.Status().Update(ctx, conflict)).To(Succeed())

	table := &Table{}
	g.Expect(table.Synced()).To(BeFalse())
	go func() { _ = (&ClusterSource{RestConfig: env.Config, Table: table, Log: logr.Discard()}).Run(ctx) }()
	route := func(id string) string {
		p := meta.Part{Platform: meta.Messenger, EntryID: id, AccountID: id}
		if tg, _ := table.Route(&p); len(tg) == 1 {
			return tg[0].Tenant + " " + tg[0].Worker
		}
		return ""
	}
	g.Eventually(table.Synced).WithTimeout(30 * time.Second).Should(BeTrue())
	g.Eventually(func() string { return route("104857600123456") }).WithTimeout(30 * time.Second).Should(Equal("acme http://ingest-worker.tenant-acme.svc:8080"))
	g.Expect(route("104857600999999")).To(Equal("globex http://ingest-worker.tenant-globex.svc:8080"))

	// acme's tenant is deactivated: the operator marks its channel not Ready and
	// releases the id; the route goes within seconds.
	apimeta.SetStatusCondition(&acme.Status.Conditions, metav1.Condition{Type: platformv1.ConditionReady, Status: metav1.ConditionFalse,
		Reason: platformv1.ReasonTenantDeactivated, ObservedGeneration: 1})
	acme.Status.HeldID = ""
	g.Expect(k8s.Status().Update(ctx, acme)).To(Succeed())
	g.Eventually(func() string { return route("104857600123456") }).WithTimeout(30 * time.Second).Should(BeEmpty())
	// The waiting channel is accepted by the operator: the id now goes to globex.
	held(conflict, "globex")
	g.Expect(k8s.Status().Update(ctx, conflict)).To(Succeed())
	g.Eventually(func() string { return route("104857600123456") }).WithTimeout(30 * time.Second).Should(Equal("globex http://ingest-worker.tenant-globex.svc:8080"))
	// A deleted channel is routed no more.
	g.Expect(k8s.Delete(ctx, conflict)).To(Succeed())
	g.Eventually(func() string { return route("104857600123456") }).WithTimeout(30 * time.Second).Should(BeEmpty())
}

// The operator's front door for a MetaApp routes only the channels behind that app.
func TestOfAppKeepsTheAppsChannels(t *testing.T) {
	a, b, own := page("ns-a", "a", "1"), page("ns-b", "b", "2"), page("ns-c", "c", "3")
	a.Spec.AppRef = &platformv1.MetaAppRef{Name: "shared"}
	b.Spec.AppRef = &platformv1.MetaAppRef{Name: "other"}
	items := []platformv1.MetaChannel{*a, *b, *own}
	got := OfApp(items, "shared")
	if len(got) != 1 || got[0].Name != "a" {
		t.Fatalf("OfApp(shared) = %v", got)
	}
	if len(OfApp(items, "")) != 3 {
		t.Fatal("no app: every channel")
	}
}
