package controllers

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=networking.k8s.io,resources=ingresses,verbs=get;list;watch;create;patch;delete

// RouteName is the name of a tenant's Ingress.
const RouteName = WorkerName

// RouteKind says how Meta's webhooks reach the tenant workers.
type RouteKind string

const (
	// RouteIngress (the default): one Ingress per Active tenant.
	RouteIngress RouteKind = "ingress"
	// RouteHTTPRoute: one Gateway API HTTPRoute per Active tenant, attached to
	// the Gateway named by RouteConfig.Gateway.
	RouteHTTPRoute RouteKind = "httproute"
	// RouteNone: the operator creates no route; the platform routes
	// /t/<tenant>/ to the Service ingest-worker of the tenant's namespace
	// itself (a front door of its own). status.webhookURL is still published.
	RouteNone RouteKind = "none"
)

// RouteConfig is the operator-wide configuration of the routes from Meta to
// the tenant workers, from the manager's flags.
type RouteConfig struct {
	// Kind selects the route; empty means RouteIngress.
	Kind RouteKind
	// WebhookBaseURL is the public https URL under which the routes are
	// reachable (scheme and host, optionally a path prefix). Empty: derived
	// from IngressHost as https://<host>; without either, channels publish no
	// webhookURL.
	WebhookBaseURL string
	// IngressClass is spec.ingressClassName; empty means the cluster's
	// default IngressClass.
	IngressClass string
	// IngressHost is the host of the Ingress rule; empty matches every host.
	IngressHost string
	// IngressTLSSecret names the TLS Secret in each tenant's namespace (an
	// Ingress cannot refer to another namespace); empty means no tls section
	// (the controller's default certificate, or TLS terminated in front).
	IngressTLSSecret string
	// IngressAnnotations are copied onto every tenant Ingress (for example a
	// body size limit: WhatsApp deliveries can reach 3 MB).
	IngressAnnotations map[string]string
	// Gateway is the parent of every tenant HTTPRoute, as "namespace/name"
	// (RouteHTTPRoute only). Its listener must allow routes from the tenant
	// namespaces, e.g. by the label platform.omniflowcrm.com/tenant.
	Gateway string
	// GatewaySection is the listener (sectionName) of the Gateway to attach
	// to; empty attaches to every listener that allows the route.
	GatewaySection string
	// GatewayHostname is the hostname of every tenant HTTPRoute; empty
	// matches the listener's hostnames.
	GatewayHostname string
}

// Validate checks the configuration from the manager's flags.
func (c RouteConfig) Validate() error {
	switch c.kind() {
	case RouteIngress, RouteNone:
	case RouteHTTPRoute:
		if _, _, err := c.gatewayRef(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("--route: unknown route %q (want %q, %q or %q)", c.Kind, RouteIngress, RouteHTTPRoute, RouteNone)
	}
	if c.WebhookBaseURL != "" {
		u, err := url.Parse(c.WebhookBaseURL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("--webhook-base-url: want an absolute http(s) URL without query, got %q", c.WebhookBaseURL)
		}
	}
	return nil
}

func (c RouteConfig) kind() RouteKind {
	if c.Kind == "" {
		return RouteIngress
	}
	return c.Kind
}

// baseURL is the URL that webhook paths are appended to, without a trailing
// slash, or "" when it is not known.
func (c RouteConfig) baseURL() string {
	base := c.WebhookBaseURL
	host := c.IngressHost
	if c.kind() == RouteHTTPRoute {
		host = c.GatewayHostname
	}
	if base == "" && host != "" {
		base = "https://" + host
	}
	return strings.TrimRight(base, "/")
}

// TenantRoutePrefix is the path prefix of a tenant's webhooks at the
// public endpoint: /t/<tenant>/.
func TenantRoutePrefix(tenant string) string {
	return "/t/" + tenant + "/"
}

// WebhookPath is the public path of a channel's webhook:
// /t/<tenant>/webhooks/meta/<channel>. The tenant's route sends every path
// under /t/<tenant>/ to that tenant's worker, which serves
// /webhooks/meta/<channel> below the prefix.
func WebhookPath(tenant, channel string) string {
	return TenantRoutePrefix(tenant) + "webhooks/meta/" + channel
}

// WebhookURL is the callback URL of a channel, or "" when the manager knows
// no public base URL.
func (c RouteConfig) WebhookURL(tenant, channel string) string {
	base := c.baseURL()
	if base == "" {
		return ""
	}
	return base + WebhookPath(tenant, channel)
}

// desiredIngress routes /t/<tenant>/ to the tenant's worker Service.
func desiredIngress(t *platformv1.Tenant, cfg RouteConfig) *networkingv1ac.IngressApplyConfiguration {
	return prefixIngress(RouteName, t.NamespaceName(), TenantRoutePrefix(t.Name), WorkerName, cfg).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t))
}

// prefixIngress is an Ingress that sends a path prefix to a Service's
// webhook port, with the manager's class, host, TLS and annotations.
func prefixIngress(name, ns, prefix, service string, cfg RouteConfig) *networkingv1ac.IngressApplyConfiguration {
	rule := networkingv1ac.IngressRule().WithHTTP(networkingv1ac.HTTPIngressRuleValue().WithPaths(
		networkingv1ac.HTTPIngressPath().
			WithPath(prefix).
			WithPathType(networkingv1.PathTypePrefix).
			WithBackend(networkingv1ac.IngressBackend().WithService(
				networkingv1ac.IngressServiceBackend().
					WithName(service).
					WithPort(networkingv1ac.ServiceBackendPort().WithNumber(ServicePort))))))
	if cfg.IngressHost != "" {
		rule = rule.WithHost(cfg.IngressHost)
	}
	spec := networkingv1ac.IngressSpec().WithRules(rule)
	// Without a class, the API server's DefaultIngressClass admission sets
	// the cluster's default; that field is not ours and stays as it is
	// (TestTenantIngressKeepsTheDefaultClass).
	if cfg.IngressClass != "" {
		spec = spec.WithIngressClassName(cfg.IngressClass)
	}
	if cfg.IngressTLSSecret != "" {
		tls := networkingv1ac.IngressTLS().WithSecretName(cfg.IngressTLSSecret)
		if cfg.IngressHost != "" {
			tls = tls.WithHosts(cfg.IngressHost)
		}
		spec = spec.WithTLS(tls)
	}
	ing := networkingv1ac.Ingress(name, ns).WithSpec(spec)
	if len(cfg.IngressAnnotations) > 0 {
		ing = ing.WithAnnotations(maps.Clone(cfg.IngressAnnotations))
	}
	return ing
}

// reconcileRoute ensures the tenant's route (only ever called for an Active
// tenant) and sets RouteReady. A route of another kind, left from an earlier
// configuration, is removed: with --route=none both kinds, with httproute the
// Ingress. (With ingress, HTTPRoutes are not looked for: a cluster without the
// Gateway API would pay a discovery call per pass; deactivation removes both.)
func (r *TenantReconciler) reconcileRoute(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	switch r.Route.kind() {
	case RouteNone:
		if _, err := r.removeRoute(ctx, refOf(t), t); err != nil {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, false, platformv1.ReasonApplyFailed, err.Error())
			return nil, err
		}
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, true, platformv1.ReasonRouteDisabled,
			"the manager runs with --route=none: route "+TenantRoutePrefix(t.Name)+" to Service "+WorkerName+" yourself")
		return nil, nil
	case RouteHTTPRoute:
		if _, err := r.removeIngress(ctx, refOf(t), t); err != nil {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, false, platformv1.ReasonApplyFailed, err.Error())
			return nil, err
		}
		return r.reconcileHTTPRoute(ctx, t)
	}
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: RouteName}
	ing := &networkingv1.Ingress{}
	created, err := applyIfChanged(ctx, r.Client, key, ing, desiredIngress(t, r.Route), networkingv1ac.ExtractIngress)
	if err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, false, platformv1.ReasonApplyFailed,
			fmt.Sprintf("Ingress %s: %v", RouteName, err))
		return nil, fmt.Errorf("ensure ingress: %w", err)
	}
	if created {
		logCreated(ctx, "Ingress", ing)
	}
	msg := fmt.Sprintf("Ingress %s routes %s to Service %s", RouteName, TenantRoutePrefix(t.Name), WorkerName)
	if base := r.Route.baseURL(); base != "" {
		msg += " at " + base
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, true, platformv1.ReasonRouteConfigured, msg)
	return nil, nil
}

// removeRoute deletes the tenant's routes of both kinds, if they are ours,
// and reports whether they are gone, read around the cache. Deactivation
// calls it first: Meta's deliveries stop reaching the worker once it reports
// gone.
func (r *TenantReconciler) removeRoute(ctx context.Context, ref tenantRef, regarding runtime.Object) (gone bool, err error) {
	ingressGone, err := r.removeIngress(ctx, ref, regarding)
	if err != nil {
		return false, err
	}
	httpRouteGone, err := r.removeHTTPRoute(ctx, ref, regarding)
	if err != nil {
		return false, err
	}
	return ingressGone && httpRouteGone, nil
}

func (r *TenantReconciler) removeIngress(ctx context.Context, ref tenantRef, regarding runtime.Object) (gone bool, err error) {
	return r.removeOwned(ctx, ref, regarding, "Ingress", &networkingv1.Ingress{})
}

// removeOwned deletes the tenant's object named RouteName of obj's kind, if
// the tenant owns it, and reports whether it is gone (uncached reads). A kind
// the API server does not serve counts as gone.
func (r *TenantReconciler) removeOwned(ctx context.Context, ref tenantRef, regarding runtime.Object, kind string, obj client.Object) (gone bool, err error) {
	key := types.NamespacedName{Namespace: ref.Namespace, Name: RouteName}
	if err := r.APIReader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) || apimeta.IsNoMatchError(err) {
			return true, nil
		}
		return false, fmt.Errorf("get %s %s: %w", kind, key, err)
	}
	if !tenantOwns(obj, ref) {
		// Never delete what we did not create; it does not route to the worker
		// on our behalf either.
		return true, nil
	}
	if obj.GetDeletionTimestamp() == nil {
		uid := obj.GetUID()
		err := r.Delete(ctx, obj, client.Preconditions{UID: &uid})
		if err != nil && !apierrors.IsNotFound(err) {
			return false, fmt.Errorf("delete %s %s: %w", kind, key, err)
		}
		r.Recorder.Eventf(regarding, obj, corev1.EventTypeNormal, "Deleted", "StopIngest", "deleted %s %s", kind, key)
	}
	err = r.APIReader.Get(ctx, key, obj)
	switch {
	case apierrors.IsNotFound(err):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("verify %s %s is gone: %w", kind, key, err)
	}
	return false, nil
}
