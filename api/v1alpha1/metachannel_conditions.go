package v1alpha1

// Reasons of a MetaChannel's Ready condition. ReasonConflict and
// ReasonSecretMissing are shared with the other kinds (conditions.go).
const (
	// ReasonChannelAccepted: the channel is in an Active tenant's namespace,
	// its Secrets are present and it holds its platform id (status.heldID);
	// the tenant's worker may serve it.
	ReasonChannelAccepted = "Accepted"
	// ReasonNotInTenantNamespace: the channel's namespace is not a tenant's
	// namespace (it lacks the tenant label, or the labelled Tenant uses
	// another namespace). The channel is not served.
	ReasonNotInTenantNamespace = "NotInTenantNamespace"
	// ReasonTenantNotFound: the namespace is labelled for a Tenant that does
	// not exist. The channel is not served.
	ReasonTenantNotFound = "TenantNotFound"
	// ReasonTenantDeactivated: the channel's Tenant is deactivated, being
	// deleted or erased. The channel is not served and holds no id.
	ReasonTenantDeactivated = "TenantDeactivated"
	// ReasonSecretKeyMissing: a referenced Secret exists but lacks the key.
	ReasonSecretKeyMissing = "SecretKeyMissing"
	// ReasonSecretValueEmpty: a referenced Secret key holds an empty value.
	ReasonSecretValueEmpty = "SecretValueEmpty"
)

// Route reasons of a Tenant's RouteReady condition.
const (
	// ReasonRouteConfigured: the tenant's Ingress is applied.
	ReasonRouteConfigured = "IngressConfigured"
	// ReasonHTTPRouteAccepted: the tenant's HTTPRoute is accepted by its Gateway.
	ReasonHTTPRouteAccepted = "HTTPRouteAccepted"
	// ReasonHTTPRoutePending: the tenant's HTTPRoute is applied and its Gateway has not
	// reported on it yet (no Gateway controller, or not yet).
	ReasonHTTPRoutePending = "HTTPRoutePending"
	// ReasonHTTPRouteNotAccepted: the Gateway refused the tenant's HTTPRoute (for example
	// its listener does not allow routes from the tenant's namespace); the message is
	// the Gateway's.
	ReasonHTTPRouteNotAccepted = "HTTPRouteNotAccepted"
	// ReasonRouteDisabled: the manager runs with --route=none; Meta's
	// webhooks reach the workers some other way.
	ReasonRouteDisabled = "RouteDisabled"
)
