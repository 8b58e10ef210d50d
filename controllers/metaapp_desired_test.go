package controllers

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func testMetaApp() *platformv1.MetaApp {
	return &platformv1.MetaApp{
		ObjectMeta: metav1.ObjectMeta{Name: "shared", UID: "uid-1"},
		Spec: platformv1.MetaAppSpec{
			AppID:          "4242",
			AppSecretRef:   platformv1.SecretKeyRef{Name: "meta-app", Key: "secret"},
			VerifyTokenRef: platformv1.SecretKeyRef{Name: "meta-token", Key: "token"},
		},
	}
}

func TestFrontDoorDeployment(t *testing.T) {
	a := testMetaApp()
	dep := desiredFrontDoorDeployment(a, "omniflow-system", "img:1")
	if got := *dep.Spec.Replicas; got != 2 {
		t.Errorf("replicas = %d, want the default 2", got)
	}
	a.Spec.Replicas = ptr.To[int32](3)
	if got := *desiredFrontDoorDeployment(a, "omniflow-system", "img:1").Spec.Replicas; got != 3 {
		t.Errorf("replicas = %d, want spec.replicas 3", got)
	}
	if got := dep.Labels[LabelMetaAppID]; got != a.Spec.AppID || got == "" {
		t.Errorf("label %s = %q, want the app id %q", LabelMetaAppID, got, a.Spec.AppID)
	}
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	if *c.Image != "img:1" || !slices.Equal(c.Command, []string{"/frontdoor"}) {
		t.Errorf("image %s command %v", *c.Image, c.Command)
	}
	for _, want := range []string{"--cluster", "--app=shared", "--app-secret-file=/var/run/omniflow/app/app-secret",
		"--verify-token-file=/var/run/omniflow/app/verify-token", "--forwarding-key-file=/var/run/omniflow/forwarding/key"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("args %v lack %s", c.Args, want)
		}
	}
	if *pod.ServiceAccountName != "omniflow-frontdoor-shared" {
		t.Errorf("service account %s", *pod.ServiceAccountName)
	}
	// The app's Secrets by name and key, projected to the files the args name.
	var projected []string
	for _, v := range pod.Volumes {
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				projected = append(projected, *src.Secret.Name+"/"+*src.Secret.Items[0].Key+"->"+*src.Secret.Items[0].Path)
			}
		}
		if v.Secret != nil && *v.Secret.SecretName != ForwardingKeySecret {
			t.Errorf("unexpected Secret volume %s", *v.Secret.SecretName)
		}
	}
	if want := []string{"meta-app/secret->app-secret", "meta-token/token->verify-token"}; !slices.Equal(projected, want) {
		t.Errorf("projected %v, want %v", projected, want)
	}
	if owner := dep.OwnerReferences[0]; *owner.Kind != "MetaApp" || *owner.UID != "uid-1" || !*owner.Controller {
		t.Errorf("owner %+v", owner)
	}
}

// The front door's ClusterRole reads MetaChannels and nothing else.
func TestFrontDoorClusterRoleIsLeastPrivilege(t *testing.T) {
	role := desiredFrontDoorClusterRole(testMetaApp())
	if len(role.Rules) != 1 {
		t.Fatalf("rules %+v", role.Rules)
	}
	r := role.Rules[0]
	if !slices.Equal(r.Resources, []string{"metachannels"}) || !slices.Equal(r.Verbs, []string{"get", "list", "watch"}) || len(r.ResourceNames) != 0 {
		t.Errorf("rule %+v", r)
	}
	b := desiredFrontDoorClusterRoleBinding(testMetaApp(), "ops")
	if *b.Subjects[0].Namespace != "ops" || *b.Subjects[0].Name != "omniflow-frontdoor-shared" || *b.RoleRef.Name != "omniflow-frontdoor-shared" {
		t.Errorf("binding %+v", b)
	}
}

func TestFrontDoorRouteAndURL(t *testing.T) {
	cfg := RouteConfig{IngressHost: "hooks.example.com", IngressClass: "nginx"}
	ing := desiredFrontDoorIngress(testMetaApp(), "ops", cfg)
	path := ing.Spec.Rules[0].HTTP.Paths[0]
	if *path.Path != "/apps/shared/" || *path.Backend.Service.Name != "omniflow-frontdoor-shared" || *ing.Spec.Rules[0].Host != "hooks.example.com" {
		t.Errorf("ingress %+v", ing.Spec)
	}
	if got := cfg.MetaAppWebhookURL("shared"); got != "https://hooks.example.com/apps/shared/webhooks/meta" {
		t.Errorf("webhook URL %s", got)
	}
	if got := (RouteConfig{}).MetaAppWebhookURL("shared"); got != "" {
		t.Errorf("no base URL: %s", got)
	}
	pdb := desiredFrontDoorPDB(testMetaApp(), "ops")
	if pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v", pdb.Spec.MinAvailable)
	}
}

func TestAppVerdict(t *testing.T) {
	ready := testMetaApp()
	ready.Status.WebhookURL = "https://h/apps/shared/webhooks/meta"
	ready.Status.Conditions = []metav1.Condition{{Type: platformv1.ConditionReady, Status: metav1.ConditionTrue}}
	unready := testMetaApp()
	accepted := channelVerdict{Ready: true, Tenant: "acme", Reason: platformv1.ReasonChannelAccepted, HeldID: "messenger-page/1", WebhookURL: "https://h/t/acme/webhooks/meta/p"}
	conflict := channelVerdict{Tenant: "acme", Reason: platformv1.ReasonConflict}
	for _, tc := range []struct {
		name       string
		v          channelVerdict
		app        *platformv1.MetaApp
		wantReady  bool
		wantReason string
		wantURL    string
	}{
		{"app ready", accepted, ready, true, platformv1.ReasonChannelAccepted, ready.Status.WebhookURL},
		{"app missing", accepted, nil, false, platformv1.ReasonMetaAppNotFound, ""},
		{"app not ready", accepted, unready, false, platformv1.ReasonMetaAppNotReady, ""},
		{"conflict wins", conflict, ready, false, platformv1.ReasonConflict, ready.Status.WebhookURL},
	} {
		got := appVerdict(tc.v, tc.app)
		if got.Ready != tc.wantReady || got.Reason != tc.wantReason || got.WebhookURL != tc.wantURL {
			t.Errorf("%s: %+v", tc.name, got)
		}
		if tc.v.HeldID != "" && got.HeldID != tc.v.HeldID {
			t.Errorf("%s: the claim is kept while the app is not ready, got %q", tc.name, got.HeldID)
		}
	}
}

func TestWorkerForwardKey(t *testing.T) {
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "t-1"}}
	without := desiredDeployment(tn, WorkerConfig{Image: "img"}, false).Spec.Template.Spec
	if slices.ContainsFunc(without.Containers[0].Args, func(a string) bool { return strings.HasPrefix(a, "--forward-key-file") }) {
		t.Error("a worker without channels behind an app got a forward key")
	}
	with := desiredDeployment(tn, WorkerConfig{Image: "img"}, true).Spec.Template.Spec
	if !slices.Contains(with.Containers[0].Args, "--forward-key-file=/var/run/omniflow/forward/key") {
		t.Errorf("args %v", with.Containers[0].Args)
	}
	if !slices.ContainsFunc(with.Volumes, func(v corev1ac.VolumeApplyConfiguration) bool {
		return v.Secret != nil && *v.Secret.SecretName == ForwardKeySecret
	}) {
		t.Error("no forward key volume")
	}
	s := desiredForwardKeySecret(tn, []byte{0xab, 0xcd})
	if string(s.Data[ForwardingKeyKey]) != "abcd" || s.Labels[platformv1.LabelTenant] != "acme" || *s.OwnerReferences[0].Kind != "Tenant" {
		t.Errorf("secret %+v", s)
	}
	if usesMetaApp([]platformv1.MetaChannel{{}}) || !usesMetaApp([]platformv1.MetaChannel{{}, {Spec: platformv1.MetaChannelSpec{AppRef: &platformv1.MetaAppRef{Name: "x"}}}}) {
		t.Error("usesMetaApp")
	}
}

// The worker's NetworkPolicy admits its webhook port from every pod of
// every namespace, so the front door in the operator's namespace reaches
// /internal/forward; the forwarding credential is what protects it.
func TestWorkerNetworkPolicyAdmitsTheFrontDoor(t *testing.T) {
	np := desiredNetworkPolicy(&platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme"}})
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].From) != 0 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != WebhookPort {
		t.Errorf("ingress rules %+v", np.Spec.Ingress)
	}
}
