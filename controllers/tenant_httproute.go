package controllers

import (
	"context"
	"fmt"
	"strings"

	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	ctrl "sigs.k8s.io/controller-runtime"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;patch;delete

// gatewayRef splits RouteConfig.Gateway ("namespace/name").
func (c RouteConfig) gatewayRef() (namespace, name string, err error) {
	namespace, name, ok := strings.Cut(c.Gateway, "/")
	if !ok || len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
		return "", "", fmt.Errorf("--gateway: want the parent Gateway as namespace/name, got %q", c.Gateway)
	}
	if c.GatewaySection != "" && len(validation.IsDNS1123Subdomain(c.GatewaySection)) > 0 {
		return "", "", fmt.Errorf("--gateway-section: %q is not a listener name", c.GatewaySection)
	}
	if c.GatewayHostname != "" && len(validation.IsDNS1123Subdomain(strings.TrimPrefix(c.GatewayHostname, "*."))) > 0 {
		return "", "", fmt.Errorf("--gateway-hostname: %q is not a hostname", c.GatewayHostname)
	}
	return namespace, name, nil
}

// desiredHTTPRoute attaches /t/<tenant>/ to the Gateway and sends it to the
// tenant's worker Service. cfg has been validated.
func desiredHTTPRoute(t *platformv1.Tenant, cfg RouteConfig) *gatewayv1ac.HTTPRouteApplyConfiguration {
	return prefixHTTPRoute(RouteName, t.NamespaceName(), TenantRoutePrefix(t.Name), WorkerName, cfg).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t))
}

// prefixHTTPRoute is an HTTPRoute on the manager's Gateway (listener and hostname
// too) that sends a path prefix to a Service's webhook port. cfg has been validated.
func prefixHTTPRoute(name, ns, prefix, service string, cfg RouteConfig) *gatewayv1ac.HTTPRouteApplyConfiguration {
	gwNamespace, gwName, _ := cfg.gatewayRef()
	parent := gatewayv1ac.ParentReference().
		WithGroup(gatewayv1.GroupName).
		WithKind("Gateway").
		WithNamespace(gatewayv1.Namespace(gwNamespace)).
		WithName(gatewayv1.ObjectName(gwName))
	if cfg.GatewaySection != "" {
		parent = parent.WithSectionName(gatewayv1.SectionName(cfg.GatewaySection))
	}
	spec := gatewayv1ac.HTTPRouteSpec().
		WithParentRefs(parent).
		WithRules(gatewayv1ac.HTTPRouteRule().
			WithMatches(gatewayv1ac.HTTPRouteMatch().WithPath(gatewayv1ac.HTTPPathMatch().
				WithType(gatewayv1.PathMatchPathPrefix).
				WithValue(prefix))).
			WithBackendRefs(gatewayv1ac.HTTPBackendRef().
				WithGroup("").
				WithKind("Service").
				WithName(gatewayv1.ObjectName(service)).
				WithPort(ServicePort)))
	if cfg.GatewayHostname != "" {
		spec = spec.WithHostnames(gatewayv1.Hostname(cfg.GatewayHostname))
	}
	return gatewayv1ac.HTTPRoute(name, ns).WithSpec(spec)
}

// reconcileHTTPRoute ensures the tenant's HTTPRoute and reads RouteReady from
// what the Gateway says of it: only an accepted route carries Meta's
// webhooks, so an applied route is not yet a ready one.
func (r *TenantReconciler) reconcileHTTPRoute(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: RouteName}
	route := &gatewayv1.HTTPRoute{}
	created, err := applyIfChanged(ctx, r.Client, key, route, desiredHTTPRoute(t, r.Route), gatewayv1ac.ExtractHTTPRoute)
	if err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, false, platformv1.ReasonApplyFailed,
			fmt.Sprintf("HTTPRoute %s: %v", RouteName, err))
		return nil, fmt.Errorf("ensure httproute: %w", err)
	}
	if created {
		logCreated(ctx, "HTTPRoute", route)
	}
	ok, reason, msg := httpRouteAccepted(route, t.Name, r.Route)
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionRouteReady, ok, reason, msg)
	return nil, nil
}

// httpRouteAccepted reads the Gateway's verdict on the route from its status
// (a route just created has none yet).
func httpRouteAccepted(route *gatewayv1.HTTPRoute, tenant string, cfg RouteConfig) (bool, string, string) {
	gwNamespace, gwName, _ := cfg.gatewayRef()
	gateway := gwNamespace + "/" + gwName
	for _, p := range route.Status.Parents {
		ns := route.Namespace
		if p.ParentRef.Namespace != nil {
			ns = string(*p.ParentRef.Namespace)
		}
		if ns != gwNamespace || string(p.ParentRef.Name) != gwName {
			continue
		}
		c := apimeta.FindStatusCondition(p.Conditions, string(gatewayv1.RouteConditionAccepted))
		switch {
		case c == nil || c.ObservedGeneration < route.Generation:
			continue
		case c.Status != metav1.ConditionTrue:
			return false, platformv1.ReasonHTTPRouteNotAccepted,
				fmt.Sprintf("Gateway %s does not accept HTTPRoute %s (%s): %s", gateway, RouteName, c.Reason, c.Message)
		}
		msg := fmt.Sprintf("HTTPRoute %s routes %s to Service %s through Gateway %s", RouteName, TenantRoutePrefix(tenant), WorkerName, gateway)
		if base := cfg.baseURL(); base != "" {
			msg += " at " + base
		}
		return true, platformv1.ReasonHTTPRouteAccepted, msg
	}
	return false, platformv1.ReasonHTTPRoutePending,
		fmt.Sprintf("HTTPRoute %s is applied; waiting for Gateway %s to accept it", RouteName, gateway)
}

func (r *TenantReconciler) removeHTTPRoute(ctx context.Context, ref tenantRef, regarding runtime.Object) (gone bool, err error) {
	return r.removeOwned(ctx, ref, regarding, "HTTPRoute", &gatewayv1.HTTPRoute{})
}
