package controllers

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

var mchT0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func mchWAChannel(ns, name, phone string, created time.Time) platformv1.MetaChannel {
	return platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: metav1.NewTime(created)},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phone, BusinessAccountID: "1"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: "meta", Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: "meta", Key: "verifyToken"},
		},
	}
}

func TestChannelClaim(t *testing.T) {
	t.Parallel()
	wa := mchWAChannel("a", "wa", "100", mchT0)
	page := platformv1.MetaChannel{Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: "100"}}}
	ig := platformv1.MetaChannel{Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformInstagram, Instagram: &platformv1.InstagramChannel{AccountID: "100"}}}
	broken := platformv1.MetaChannel{Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformInstagram}}
	for _, tc := range []struct {
		ch   *platformv1.MetaChannel
		want string
	}{
		{&wa, "whatsapp-phone/100"},
		{&page, "messenger-page/100"},
		{&ig, "instagram-account/100"},
		{&broken, ""},
	} {
		if got := ChannelClaim(tc.ch); got != tc.want {
			t.Errorf("ChannelClaim(%s) = %q, want %q", tc.ch.Spec.Platform, got, tc.want)
		}
	}
}

// Which channel gets an id (claimHolder): the one that holds it keeps it,
// channels that cannot be served never block, and first claims go to the
// earliest channel, then by namespace and name.
func TestClaimHolder(t *testing.T) {
	t.Parallel()
	held := func(ch platformv1.MetaChannel) platformv1.MetaChannel {
		ch.Status.HeldID = ChannelClaim(&ch)
		return ch
	}
	servable := func(chs ...platformv1.MetaChannel) []claimant {
		var out []claimant
		for i := range chs {
			out = append(out, claimant{Channel: &chs[i], Servable: true})
		}
		return out
	}
	unservable := func(ch platformv1.MetaChannel) claimant { return claimant{Channel: &ch} }
	deleting := mchWAChannel("a", "gone", "100", mchT0.Add(-time.Hour))
	deleting.DeletionTimestamp = &metav1.Time{Time: mchT0}
	// Held an id and then changed it: holds nothing until judged again (and
	// is later than self, so only a hold could put it first).
	moved := held(mchWAChannel("b", "moved", "999", mchT0.Add(time.Hour)))
	moved.Spec.WhatsApp.PhoneNumberID = "100"
	tests := []struct {
		name   string
		self   platformv1.MetaChannel
		others []claimant
		want   string // namespace/name of the holder, "" when self gets the id
	}{
		{"alone", mchWAChannel("a", "wa", "100", mchT0), nil, ""},
		{"itself only", mchWAChannel("a", "wa", "100", mchT0), servable(mchWAChannel("a", "wa", "100", mchT0)), ""},
		{"another id", mchWAChannel("a", "wa", "100", mchT0), servable(mchWAChannel("b", "wa", "101", mchT0.Add(-time.Hour))), ""},

		// First claims: nobody holds the id yet.
		{"first claim: the earlier channel", mchWAChannel("a", "wa", "100", mchT0),
			servable(mchWAChannel("z", "wa", "100", mchT0.Add(-time.Second))), "z/wa"},
		{"first claim: a later channel does not block", mchWAChannel("z", "wa", "100", mchT0.Add(-time.Second)),
			servable(mchWAChannel("a", "wa", "100", mchT0)), ""},
		{"first claim in the same second: namespace first", mchWAChannel("b", "wa", "100", mchT0),
			servable(mchWAChannel("a", "zz", "100", mchT0)), "a/zz"},
		{"first claim in the same second: then name", mchWAChannel("a", "wb", "100", mchT0),
			servable(mchWAChannel("a", "wa", "100", mchT0)), "a/wa"},
		{"first claim: earliest of several", mchWAChannel("a", "wa", "100", mchT0),
			servable(mchWAChannel("b", "x", "100", mchT0.Add(-time.Minute)), mchWAChannel("c", "y", "100", mchT0.Add(-time.Hour))), "c/y"},

		// The holder keeps its id.
		{"a holder keeps its id against a newcomer of the same second that sorts first",
			held(mchWAChannel("z", "wa", "100", mchT0)), servable(mchWAChannel("a", "wa", "100", mchT0)), ""},
		{"a newcomer of the same second that sorts first does not take the holder's id",
			mchWAChannel("a", "wa", "100", mchT0), servable(held(mchWAChannel("z", "wa", "100", mchT0))), "z/wa"},
		{"a holder keeps its id against an older channel (one that could not be served when the id was taken)",
			held(mchWAChannel("b", "wa", "100", mchT0)), servable(mchWAChannel("a", "wa", "100", mchT0.Add(-time.Hour))), ""},
		{"an older channel does not take the holder's id",
			mchWAChannel("a", "wa", "100", mchT0.Add(-time.Hour)), servable(held(mchWAChannel("b", "wa", "100", mchT0))), "b/wa"},
		{"two recorded holders (never at once, but decided the same way): the earlier",
			held(mchWAChannel("a", "wa", "100", mchT0)), servable(held(mchWAChannel("b", "wa", "100", mchT0.Add(-time.Second)))), "b/wa"},
		{"a recorded hold of another id is no hold", mchWAChannel("a", "wa", "100", mchT0),
			[]claimant{{Channel: &moved, Servable: true}}, ""},

		// Channels that cannot be served hold nothing, whatever they say.
		{"a channel that cannot be served does not block, even earlier", mchWAChannel("a", "wa", "100", mchT0),
			[]claimant{unservable(mchWAChannel("attacker", "wa", "100", mchT0.Add(-time.Hour)))}, ""},
		{"a channel that cannot be served does not block, even holding", mchWAChannel("a", "wa", "100", mchT0),
			[]claimant{unservable(held(mchWAChannel("gone-tenant", "wa", "100", mchT0.Add(-time.Hour))))}, ""},
		{"a channel being deleted holds nothing", mchWAChannel("a", "wa", "100", mchT0), servable(held(deleting)), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := claimHolder(&tc.self, tc.others)
			name := ""
			if got != nil {
				name = got.Namespace + "/" + got.Name
			}
			if name != tc.want {
				t.Fatalf("claimHolder() = %q, want %q", name, tc.want)
			}
		})
	}
}

func TestSecretProblems(t *testing.T) {
	t.Parallel()
	const value = "s3cr3t-value"
	secret := func(data map[string]string) *corev1.Secret {
		s := &corev1.Secret{Data: map[string][]byte{}}
		for k, v := range data {
			s.Data[k] = []byte(v)
		}
		return s
	}
	ch := mchWAChannel("tenant-a", "wa", "100", mchT0)
	withAccess := ch.DeepCopy()
	withAccess.Spec.AccessTokenRef = &platformv1.SecretKeyRef{Name: "graph", Key: "token"}
	tests := []struct {
		name       string
		ch         *platformv1.MetaChannel
		secrets    map[string]*corev1.Secret
		wantReason string
		wantMsg    []string
	}{
		{"all present", &ch, map[string]*corev1.Secret{"meta": secret(map[string]string{"appSecret": value, "verifyToken": value})}, "", nil},
		{"secret missing", &ch, map[string]*corev1.Secret{"meta": nil}, platformv1.ReasonSecretMissing,
			[]string{"appSecretRef: Secret tenant-a/meta not found", "verifyTokenRef: Secret tenant-a/meta not found"}},
		{"key missing", &ch, map[string]*corev1.Secret{"meta": secret(map[string]string{"appSecret": value})}, platformv1.ReasonSecretKeyMissing,
			[]string{`verifyTokenRef: Secret tenant-a/meta has no key "verifyToken"`}},
		{"value empty", &ch, map[string]*corev1.Secret{"meta": secret(map[string]string{"appSecret": "", "verifyToken": value})}, platformv1.ReasonSecretValueEmpty,
			[]string{`appSecretRef: key "appSecret" of Secret tenant-a/meta is empty`}},
		{"value blank", &ch, map[string]*corev1.Secret{"meta": secret(map[string]string{"appSecret": value, "verifyToken": "\t \n"})}, platformv1.ReasonSecretValueEmpty,
			[]string{`verifyTokenRef: key "verifyToken"`}},
		{"optional access token, once named, is checked", withAccess,
			map[string]*corev1.Secret{"meta": secret(map[string]string{"appSecret": value, "verifyToken": value}), "graph": nil},
			platformv1.ReasonSecretMissing, []string{"accessTokenRef: Secret tenant-a/graph not found"}},
		{"first problem gives the reason", withAccess,
			map[string]*corev1.Secret{"meta": secret(map[string]string{"verifyToken": value}), "graph": nil},
			platformv1.ReasonSecretKeyMissing, []string{"appSecretRef", "accessTokenRef"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reason, msg := secretProblems(tc.ch, tc.secrets)
			if reason != tc.wantReason {
				t.Fatalf("reason = %q, want %q (message %q)", reason, tc.wantReason, msg)
			}
			for _, w := range tc.wantMsg {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not contain %q", msg, w)
				}
			}
			if strings.Contains(msg, value) {
				t.Errorf("message %q carries a Secret value", msg)
			}
		})
	}
}

func TestTenantVerdict(t *testing.T) {
	t.Parallel()
	ch := mchWAChannel("tenant-acme", "wa", "100", mchT0)
	active := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	deactivated := active.DeepCopy()
	deactivated.Spec.State = platformv1.TenantDeactivated
	deleting := active.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: mchT0}
	elsewhere := active.DeepCopy()
	elsewhere.Spec.Namespace = "acme-data"
	erased := active.DeepCopy()
	erased.Status.ErasedAt = &metav1.Time{Time: mchT0}
	tests := []struct {
		name       string
		ct         channelTenant
		wantOK     bool
		wantReason string
		wantTenant string
	}{
		{"no label", channelTenant{}, false, platformv1.ReasonNotInTenantNamespace, ""},
		{"tenant missing", channelTenant{NamespaceTenant: "acme"}, false, platformv1.ReasonTenantNotFound, ""},
		{"tenant uses another namespace", channelTenant{NamespaceTenant: "acme", Tenant: elsewhere}, false, platformv1.ReasonNotInTenantNamespace, ""},
		{"deactivated", channelTenant{NamespaceTenant: "acme", Tenant: deactivated}, false, platformv1.ReasonTenantDeactivated, "acme"},
		{"being deleted", channelTenant{NamespaceTenant: "acme", Tenant: deleting}, false, platformv1.ReasonTenantDeactivated, "acme"},
		{"erased", channelTenant{NamespaceTenant: "acme", Tenant: erased}, false, platformv1.ReasonTenantDeactivated, "acme"},
		{"active", channelTenant{NamespaceTenant: "acme", Tenant: active}, true, "", "acme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v, ok := tenantVerdict(&ch, tc.ct)
			if ok != tc.wantOK || v.Reason != tc.wantReason || v.Tenant != tc.wantTenant {
				t.Fatalf("tenantVerdict() = %+v, %v; want reason %q tenant %q ok %v", v, ok, tc.wantReason, tc.wantTenant, tc.wantOK)
			}
			if !ok && (v.Ready || v.WebhookURL != "" || v.HeldID != "" || !strings.Contains(v.Message, "not served")) {
				t.Fatalf("a refused channel must be not Ready, without URL or id, and say it is not served: %+v", v)
			}
			if strings.Contains(v.Message, "acme-data") {
				t.Fatalf("message %q names the namespace of a Tenant this namespace is not", v.Message)
			}
		})
	}
}

func TestAcceptChannel(t *testing.T) {
	t.Parallel()
	ch := mchWAChannel("tenant-acme", "wa", "106540352242922", mchT0)
	route := RouteConfig{WebhookBaseURL: "https://hooks.example.com/"}
	ok := map[string]*corev1.Secret{"meta": {Data: map[string][]byte{"appSecret": []byte("x"), "verifyToken": []byte("y")}}}
	holder := mchWAChannel("tenant-other", "sales", "106540352242922", mchT0.Add(-time.Hour))

	v := acceptChannel(&ch, channelVerdict{Tenant: "acme"}, route, nil, ok)
	if !v.Ready || v.Reason != platformv1.ReasonChannelAccepted || v.WebhookURL != "https://hooks.example.com/t/acme/webhooks/meta/wa" {
		t.Fatalf("accepted channel: %+v", v)
	}
	if v.HeldID != "whatsapp-phone/106540352242922" {
		t.Fatalf("an accepted channel holds its id: %+v", v)
	}
	v = acceptChannel(&ch, channelVerdict{Tenant: "acme"}, route, &holder, nil)
	if v.Ready || v.Reason != platformv1.ReasonConflict || v.HeldID != "" || v.HeldBy != &holder ||
		!strings.Contains(v.Message, "another channel already serves the WhatsApp phoneNumberID") {
		t.Fatalf("conflicting channel: %+v", v)
	}
	// The message names neither the id nor anything of the holder's tenant.
	for _, leak := range []string{"106540352242922", "tenant-other", "sales"} {
		if strings.Contains(v.Message, leak) {
			t.Fatalf("conflict message %q names %q", v.Message, leak)
		}
	}
	// A Secret problem does not give up the id: a rotation must not let
	// another channel take it.
	v = acceptChannel(&ch, channelVerdict{Tenant: "acme"}, route, nil, map[string]*corev1.Secret{"meta": nil})
	if v.Ready || v.Reason != platformv1.ReasonSecretMissing || v.HeldID != "whatsapp-phone/106540352242922" {
		t.Fatalf("channel with a missing Secret: %+v", v)
	}
	v = acceptChannel(&ch, channelVerdict{Tenant: "acme"}, RouteConfig{}, nil, ok)
	if !v.Ready || v.WebhookURL != "" || !strings.Contains(v.Message, "--webhook-base-url") {
		t.Fatalf("without a base URL: %+v", v)
	}
}

// The reconciler with a fake client: re-checks periodically, writes status
// only on change, and records one Event per transition, without values.
func TestMetaChannelReconcileWritesOnChangeOnly(t *testing.T) {
	t.Parallel()
	sch := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := platformv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-acme", Labels: map[string]string{platformv1.LabelTenant: "acme"}}}
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}}
	ch := mchWAChannel("tenant-acme", "wa", "100", mchT0)
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "tenant-acme", Name: "meta"},
		Data: map[string][]byte{"appSecret": []byte("app-value-1"), "verifyToken": []byte("verify-value-1")}}
	c := fake.NewClientBuilder().WithScheme(sch).
		WithObjects(ns, tn, &ch, secret).
		WithStatusSubresource(&platformv1.MetaChannel{}).
		WithIndex(&platformv1.MetaChannel{}, ChannelClaimIndex, func(o client.Object) []string {
			return []string{ChannelClaim(o.(*platformv1.MetaChannel))}
		}).Build()
	rec := events.NewFakeRecorder(10)
	r := &MetaChannelReconciler{Client: c, APIReader: c, Recorder: rec, Route: RouteConfig{IngressHost: "hooks.example.com"}}
	req := ctrl.Request{NamespacedName: types.NamespacedName{Namespace: "tenant-acme", Name: "wa"}}
	ctx := context.Background()

	for i := range 2 {
		res, err := r.Reconcile(ctx, req)
		if err != nil || res.RequeueAfter != DefaultChannelRecheck {
			t.Fatalf("pass %d: Reconcile() = %+v, %v; want a re-check after %s", i, res, err, DefaultChannelRecheck)
		}
	}
	var got platformv1.MetaChannel
	if err := c.Get(ctx, req.NamespacedName, &got); err != nil {
		t.Fatal(err)
	}
	ready := meta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionReady)
	if ready == nil || ready.Status != metav1.ConditionTrue || got.Status.WebhookURL != "https://hooks.example.com/t/acme/webhooks/meta/wa" || got.Status.Tenant != "acme" {
		t.Fatalf("status = %+v", got.Status)
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events after two passes over an unchanged channel, want 1", n)
	}
	if e := <-rec.Events; !strings.Contains(e, "Normal "+platformv1.ReasonChannelAccepted) {
		t.Fatalf("event %q", e)
	}

	// The Secret loses a value: one Warning, naming the key, not the value.
	secret.Data["verifyToken"] = nil
	if err := c.Update(ctx, secret); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := r.Reconcile(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(rec.Events); n != 1 {
		t.Fatalf("%d events after the Secret changed, want 1", n)
	}
	e := <-rec.Events
	if !strings.Contains(e, "Warning "+platformv1.ReasonSecretValueEmpty) || !strings.Contains(e, `"verifyToken"`) ||
		strings.Contains(e, "app-value-1") || strings.Contains(e, "verify-value-1") {
		t.Fatalf("event %q", e)
	}
}

// The manager's cache holds only the Secrets that carry the tenant label
// (and the MetaChannel controller watches only their metadata): never every
// Secret of the cluster.
func TestCacheHoldsOnlyLabelledSecrets(t *testing.T) {
	t.Parallel()
	for obj, by := range CacheOptions(RouteConfig{}).ByObject {
		if _, ok := obj.(*corev1.Secret); !ok {
			continue
		}
		if by.Label == nil || by.Label.Empty() {
			t.Fatal("Secrets are cached without a label selector")
		}
		if by.Label.Matches(labels.Set{"team": "x"}) || !by.Label.Matches(labels.Set{platformv1.LabelTenant: "acme"}) {
			t.Fatalf("Secret selector %q", by.Label)
		}
		return
	}
	t.Fatal("CacheOptions has no restriction for Secrets: a Secret watch would cache every Secret of the cluster")
}

// Whatever the channels with one id look like (created in the same second
// or not, holding or not, servable or not, being deleted or not), every
// reconcile agrees: exactly one servable channel that is not being deleted
// gets the id, or none when there is no such channel.
func FuzzClaimHolderAcceptsExactlyOne(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5})
	f.Add([]byte{7, 7, 7, 7})
	f.Add([]byte{16 | 8 | 4, 16, 16 | 8 | 1, 16 | 3})  // two recorded holders
	f.Add([]byte{8 | 3, 16 | 4, 16 | 8 | 32, 16 | 64}) // a holder that cannot be served, one being deleted
	f.Add([]byte{16, 16 | 4, 16 | 1, 16 | 5})          // first claims within and across seconds
	f.Fuzz(func(t *testing.T, spec []byte) {
		if len(spec) > 12 {
			spec = spec[:12]
		}
		var all []claimant
		for i, b := range spec {
			// bits: 0-1 creation second, 2 namespace, 3 holds, 4 servable, 5 deleting, 6 other id
			ch := mchWAChannel(fmt.Sprintf("ns-%d", b>>2&1), fmt.Sprintf("ch-%02d", i), "100", mchT0.Add(time.Duration(b&3)*time.Second))
			if b&64 != 0 {
				ch.Spec.WhatsApp.PhoneNumberID = "200"
			}
			if b&8 != 0 {
				ch.Status.HeldID = ChannelClaim(&ch)
			}
			if b&32 != 0 {
				ch.DeletionTimestamp = &metav1.Time{Time: mchT0}
			}
			all = append(all, claimant{Channel: &ch, Servable: b&16 != 0})
		}
		accepted, eligible := 0, 0
		for _, self := range all {
			if !self.Servable || self.Channel.DeletionTimestamp != nil || ChannelClaim(self.Channel) != "whatsapp-phone/100" {
				continue // never judged for this id: refused before the claim, or claims another
			}
			eligible++
			holder := claimHolder(self.Channel, all)
			if holder == nil {
				accepted++
				continue
			}
			var h *claimant
			for i := range all {
				if all[i].Channel == holder {
					h = &all[i]
				}
			}
			if h == nil || !h.Servable || holder.DeletionTimestamp != nil || ChannelClaim(holder) != ChannelClaim(self.Channel) {
				t.Fatalf("%s/%s is held by %s/%s, which cannot hold it", self.Channel.Namespace, self.Channel.Name, holder.Namespace, holder.Name)
			}
		}
		if eligible > 0 && accepted != 1 {
			t.Fatalf("%d of %d eligible channels accepted for one id (spec %v)", accepted, eligible, spec)
		}
	})
}
