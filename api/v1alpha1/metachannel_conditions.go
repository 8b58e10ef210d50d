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

// ConditionMediaFetching says whether the tenant's worker stores the bytes of
// a served channel's shared files. It is informational for kstatus: neither
// value makes the channel Reconciling or Stalled, because messages are
// ingested either way; a refused token is raised by a Warning Event, the
// metric omniflow_metachannel_media_token_refused and its alert.
const ConditionMediaFetching = "MediaFetching"

// Reasons of a MetaChannel's MediaFetching condition.
const (
	// ReasonMediaFetching (True): a WhatsApp channel with accessTokenRef; the
	// worker looks media up and downloads it with the token.
	ReasonMediaFetching = "Fetching"
	// ReasonMediaFetchedByURL (True): a Messenger or Instagram channel; the
	// worker downloads attachments from the URLs in the deliveries, no token
	// needed (Instagram story mentions are never fetched).
	ReasonMediaFetchedByURL = "FetchedByURL"
	// ReasonMediaMetadataOnly (False): a WhatsApp channel without
	// accessTokenRef; its media is recorded (id, type, size) but never
	// downloaded.
	ReasonMediaMetadataOnly = "MetadataOnly"
	// ReasonMediaTokenRefused (False): Meta refused the channel's access
	// token (401/403) as the worker last reported; its fetching is paused,
	// files stay pending, until the token Secret changes and a fetch succeeds.
	ReasonMediaTokenRefused = "TokenRefused"
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
