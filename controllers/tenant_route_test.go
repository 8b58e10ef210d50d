package controllers

import (
	"context"
	"strings"
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

func TestWebhookURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  RouteConfig
		want string
	}{
		{"base URL", RouteConfig{WebhookBaseURL: "https://hooks.example.com"}, "https://hooks.example.com/t/acme/webhooks/meta/wa"},
		{"trailing slash", RouteConfig{WebhookBaseURL: "https://hooks.example.com/"}, "https://hooks.example.com/t/acme/webhooks/meta/wa"},
		{"path prefix", RouteConfig{WebhookBaseURL: "https://example.com/omniflow/"}, "https://example.com/omniflow/t/acme/webhooks/meta/wa"},
		{"base URL wins over host", RouteConfig{WebhookBaseURL: "https://a.example.com", IngressHost: "b.example.com"}, "https://a.example.com/t/acme/webhooks/meta/wa"},
		{"derived from the Ingress host", RouteConfig{IngressHost: "b.example.com"}, "https://b.example.com/t/acme/webhooks/meta/wa"},
		{"derived from the Gateway hostname", RouteConfig{Kind: RouteHTTPRoute, Gateway: "infra/gw", GatewayHostname: "c.example.com", IngressHost: "b.example.com"},
			"https://c.example.com/t/acme/webhooks/meta/wa"},
		{"unknown", RouteConfig{}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.cfg.WebhookURL("acme", "wa"); got != tc.want {
				t.Fatalf("WebhookURL() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRouteConfigValidate(t *testing.T) {
	t.Parallel()
	for _, cfg := range []RouteConfig{{}, {Kind: RouteNone}, {WebhookBaseURL: "https://hooks.example.com/x"}, {WebhookBaseURL: "http://localhost:8080"},
		{Kind: RouteHTTPRoute, Gateway: "infra/public"},
		{Kind: RouteHTTPRoute, Gateway: "infra/public", GatewaySection: "https", GatewayHostname: "*.hooks.example.com"}} {
		if err := cfg.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", cfg, err)
		}
	}
	for _, cfg := range []RouteConfig{{Kind: "gateway"}, {WebhookBaseURL: "hooks.example.com"}, {WebhookBaseURL: "ftp://x"}, {WebhookBaseURL: "https://x/?a=b"},
		{Kind: RouteHTTPRoute}, {Kind: RouteHTTPRoute, Gateway: "public"}, {Kind: RouteHTTPRoute, Gateway: "infra/Public"},
		{Kind: RouteHTTPRoute, Gateway: "infra/public", GatewaySection: "HTTPS"},
		{Kind: RouteHTTPRoute, Gateway: "infra/public", GatewayHostname: "https://hooks.example.com"}} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
	}
}

func TestDesiredIngress(t *testing.T) {
	t.Parallel()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-1"}}
	full := RouteConfig{IngressClass: "nginx", IngressHost: "hooks.example.com", IngressTLSSecret: "hooks-tls",
		IngressAnnotations: map[string]string{"a": "b"}}

	ing := desiredIngress(tn, full)
	if *ing.Name != RouteName || *ing.Namespace != "tenant-acme" || ing.Labels[platformv1.LabelTenant] != "acme" ||
		ing.Annotations["a"] != "b" || len(ing.OwnerReferences) != 1 || *ing.OwnerReferences[0].UID != "uid-1" {
		t.Fatalf("metadata: %+v", ing.ObjectMetaApplyConfiguration)
	}
	spec := ing.Spec
	if *spec.IngressClassName != "nginx" || len(spec.Rules) != 1 || *spec.Rules[0].Host != "hooks.example.com" {
		t.Fatalf("spec: %+v", spec)
	}
	p := spec.Rules[0].HTTP.Paths[0]
	if *p.Path != "/t/acme/" || *p.PathType != networkingv1.PathTypePrefix ||
		*p.Backend.Service.Name != WorkerName || *p.Backend.Service.Port.Number != ServicePort {
		t.Fatalf("path: %+v", p)
	}
	if len(spec.TLS) != 1 || *spec.TLS[0].SecretName != "hooks-tls" || len(spec.TLS[0].Hosts) != 1 || spec.TLS[0].Hosts[0] != "hooks.example.com" {
		t.Fatalf("tls: %+v", spec.TLS)
	}

	bare := desiredIngress(tn, RouteConfig{})
	if bare.Spec.IngressClassName != nil || bare.Spec.Rules[0].Host != nil || bare.Spec.TLS != nil || bare.Annotations != nil {
		t.Fatalf("without flags the Ingress has no class, host, TLS or annotations: %+v", bare.Spec)
	}
	// The configured annotations are copied, never shared.
	full.IngressAnnotations["a"] = "changed"
	if ing.Annotations["a"] != "b" {
		t.Fatal("desiredIngress shares the configuration's annotation map")
	}
}

func TestRemoveRoute(t *testing.T) {
	t.Parallel()
	sch := runtime.NewScheme()
	if err := AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-1"}}
	owned := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{
		Name: RouteName, Namespace: "tenant-acme", UID: "ing-1",
		Labels: tenantLabels(tn),
		OwnerReferences: []metav1.OwnerReference{{APIVersion: platformv1.GroupVersion.String(), Kind: "Tenant", Name: "acme",
			UID: "uid-1", Controller: ptr.To(true)}},
	}}
	foreign := owned.DeepCopy()
	foreign.Labels, foreign.OwnerReferences = nil, nil
	key := types.NamespacedName{Namespace: "tenant-acme", Name: RouteName}
	ctx := context.Background()

	for _, tc := range []struct {
		name       string
		objs       []*networkingv1.Ingress
		wantRemain bool
	}{
		{"absent", nil, false},
		{"ours is deleted", []*networkingv1.Ingress{owned.DeepCopy()}, false},
		{"not ours is left alone", []*networkingv1.Ingress{foreign.DeepCopy()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := fake.NewClientBuilder().WithScheme(sch)
			for _, o := range tc.objs {
				b = b.WithObjects(o)
			}
			c := b.Build()
			r := &TenantReconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10)}
			gone, err := r.removeRoute(ctx, refOf(tn), tn)
			if err != nil || !gone {
				t.Fatalf("removeRoute() = %v, %v; want gone", gone, err)
			}
			var ing networkingv1.Ingress
			err = c.Get(ctx, key, &ing)
			if remains := !apierrors.IsNotFound(err); remains != tc.wantRemain {
				t.Fatalf("Ingress remains = %v (err %v), want %v", remains, err, tc.wantRemain)
			}
			if tc.wantRemain && !equality.Semantic.DeepEqual(ing.Labels, foreign.Labels) {
				t.Fatalf("foreign Ingress was changed: %+v", ing.ObjectMeta)
			}
		})
	}
}

func TestReconcileRoute(t *testing.T) {
	t.Parallel()
	sch := runtime.NewScheme()
	if err := AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	if err := platformv1.AddToScheme(sch); err != nil {
		t.Fatal(err)
	}
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "acme", UID: "uid-1", Generation: 3}}
	key := types.NamespacedName{Namespace: "tenant-acme", Name: RouteName}
	ctx := context.Background()

	c := fake.NewClientBuilder().WithScheme(sch).Build()
	r := &TenantReconciler{Client: c, APIReader: c, Recorder: events.NewFakeRecorder(10),
		Route: RouteConfig{IngressHost: "hooks.example.com"}}
	if res, err := r.reconcileRoute(ctx, tn); res != nil || err != nil {
		t.Fatalf("reconcileRoute() = %v, %v", res, err)
	}
	var ing networkingv1.Ingress
	if err := c.Get(ctx, key, &ing); err != nil {
		t.Fatalf("Ingress not created: %v", err)
	}
	cond := meta.FindStatusCondition(tn.Status.Conditions, platformv1.ConditionRouteReady)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != platformv1.ReasonRouteConfigured ||
		cond.ObservedGeneration != 3 || !strings.Contains(cond.Message, "https://hooks.example.com") {
		t.Fatalf("RouteReady = %+v", cond)
	}

	// --route=none: the Ingress left from before goes, RouteReady says why.
	r.Route = RouteConfig{Kind: RouteNone}
	if res, err := r.reconcileRoute(ctx, tn); res != nil || err != nil {
		t.Fatalf("reconcileRoute() = %v, %v", res, err)
	}
	if err := c.Get(ctx, key, &ing); !apierrors.IsNotFound(err) {
		t.Fatalf("Ingress still there with --route=none: %v", err)
	}
	cond = meta.FindStatusCondition(tn.Status.Conditions, platformv1.ConditionRouteReady)
	if cond == nil || cond.Status != metav1.ConditionTrue || cond.Reason != platformv1.ReasonRouteDisabled {
		t.Fatalf("RouteReady = %+v", cond)
	}
}
