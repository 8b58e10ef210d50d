package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// ChannelClaimIndex is the field index of MetaChannels by the platform id
// they claim (see ChannelClaim).
const ChannelClaimIndex = "spec.platformClaim"

// ChannelClaim is the platform id a channel claims, qualified by its kind:
// "whatsapp-phone/<phoneNumberID>", "messenger-page/<pageID>" or
// "instagram-account/<accountID>"; "" when the spec names none. Two
// channels with the same claim would receive each other's deliveries.
// The WhatsApp Business Account id is no claim: one account holds several
// phone numbers, each its own channel.
func ChannelClaim(ch *platformv1.MetaChannel) string {
	s := ch.Spec
	switch {
	case s.Platform == platformv1.PlatformWhatsApp && s.WhatsApp != nil && s.WhatsApp.PhoneNumberID != "":
		return "whatsapp-phone/" + s.WhatsApp.PhoneNumberID
	case s.Platform == platformv1.PlatformMessenger && s.Messenger != nil && s.Messenger.PageID != "":
		return "messenger-page/" + s.Messenger.PageID
	case s.Platform == platformv1.PlatformInstagram && s.Instagram != nil && s.Instagram.AccountID != "":
		return "instagram-account/" + s.Instagram.AccountID
	}
	return ""
}

// claimName is the human name of a claim's id, for condition messages.
func claimName(p platformv1.Platform) string {
	switch p {
	case platformv1.PlatformWhatsApp:
		return "WhatsApp phoneNumberID"
	case platformv1.PlatformMessenger:
		return "Facebook pageID"
	case platformv1.PlatformInstagram:
		return "Instagram accountID"
	}
	return "platform id"
}

// claimedEarlier reports whether a holds a claim before b: the earlier
// creationTimestamp wins, ties are broken by namespace, then name, so that
// every reconcile of either channel reaches the same verdict.
func claimedEarlier(a, b *platformv1.MetaChannel) bool {
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// conflictingClaim returns the channel that holds ch's claim before ch, or
// nil when ch holds it. Channels being deleted hold nothing.
func conflictingClaim(ch *platformv1.MetaChannel, claimants []platformv1.MetaChannel) *platformv1.MetaChannel {
	claim := ChannelClaim(ch)
	if claim == "" {
		return nil
	}
	var winner *platformv1.MetaChannel
	for i := range claimants {
		o := &claimants[i]
		if (o.Namespace == ch.Namespace && o.Name == ch.Name) || o.DeletionTimestamp != nil || ChannelClaim(o) != claim {
			continue
		}
		if claimedEarlier(o, ch) && (winner == nil || claimedEarlier(o, winner)) {
			winner = o
		}
	}
	return winner
}

// channelSecretRef is one Secret key a channel needs, with the field that
// names it.
type channelSecretRef struct {
	Field string
	Ref   platformv1.SecretKeyRef
}

// channelSecretRefs lists the Secret keys a channel needs: the app secret,
// the verify token and, when set, the access token.
func channelSecretRefs(ch *platformv1.MetaChannel) []channelSecretRef {
	refs := []channelSecretRef{
		{"appSecretRef", ch.Spec.AppSecretRef},
		{"verifyTokenRef", ch.Spec.VerifyTokenRef},
	}
	if ch.Spec.AccessTokenRef != nil {
		refs = append(refs, channelSecretRef{"accessTokenRef", *ch.Spec.AccessTokenRef})
	}
	return refs
}

// secretProblem checks one reference against the Secret it names (nil: not
// found). It returns a reason and a message naming the Secret and the key,
// never the value, or "" when the value is usable.
func secretProblem(ns string, ref channelSecretRef, s *corev1.Secret) (reason, msg string) {
	switch {
	case s == nil:
		return platformv1.ReasonSecretMissing,
			fmt.Sprintf("%s: Secret %s/%s not found", ref.Field, ns, ref.Ref.Name)
	case !hasKey(s, ref.Ref.Key):
		return platformv1.ReasonSecretKeyMissing,
			fmt.Sprintf("%s: Secret %s/%s has no key %q", ref.Field, ns, ref.Ref.Name, ref.Ref.Key)
	case strings.TrimSpace(string(secretValue(s, ref.Ref.Key))) == "":
		return platformv1.ReasonSecretValueEmpty,
			fmt.Sprintf("%s: key %q of Secret %s/%s is empty", ref.Field, ref.Ref.Key, ns, ref.Ref.Name)
	}
	return "", ""
}

func hasKey(s *corev1.Secret, key string) bool {
	if _, ok := s.Data[key]; ok {
		return true
	}
	_, ok := s.StringData[key] // only ever set on objects not read from the API server
	return ok
}

func secretValue(s *corev1.Secret, key string) []byte {
	if v, ok := s.Data[key]; ok {
		return v
	}
	return []byte(s.StringData[key])
}

// secretProblems checks every reference; the reason is the first problem's,
// the message lists them all.
func secretProblems(ch *platformv1.MetaChannel, secrets map[string]*corev1.Secret) (reason, msg string) {
	var msgs []string
	for _, ref := range channelSecretRefs(ch) {
		r, m := secretProblem(ch.Namespace, ref, secrets[ref.Ref.Name])
		if r == "" {
			continue
		}
		if reason == "" {
			reason = r
		}
		msgs = append(msgs, m)
	}
	return reason, strings.Join(msgs, "; ")
}

// channelTenant is what the reconciler found about a channel's tenant.
type channelTenant struct {
	// NamespaceTenant is the value of the namespace's tenant label; "" when
	// the namespace is not a tenant's (or does not exist).
	NamespaceTenant string
	// Tenant is the labelled Tenant, nil when it does not exist.
	Tenant *platformv1.Tenant
}

// channelVerdict is the outcome of a channel's checks.
type channelVerdict struct {
	Ready   bool
	Reason  string
	Message string
	// Tenant is the Tenant whose namespace holds the channel, "" if none.
	Tenant string
	// WebhookURL is published while the tenant is Active.
	WebhookURL string
	// ConflictWith is the earlier channel holding the claim, if any.
	ConflictWith *platformv1.MetaChannel
}

// tenantVerdict decides whether a channel's namespace belongs to an Active
// tenant. ok is false with the verdict to publish when it does not.
func tenantVerdict(ch *platformv1.MetaChannel, ct channelTenant) (v channelVerdict, ok bool) {
	ns := ch.Namespace
	switch {
	case ct.NamespaceTenant == "":
		return channelVerdict{Reason: platformv1.ReasonNotInTenantNamespace,
			Message: fmt.Sprintf("namespace %s is not a tenant's namespace (no label %s); the channel is not served", ns, platformv1.LabelTenant)}, false
	case ct.Tenant == nil:
		return channelVerdict{Reason: platformv1.ReasonTenantNotFound,
			Message: fmt.Sprintf("namespace %s is labelled for Tenant %s, which does not exist; the channel is not served", ns, ct.NamespaceTenant)}, false
	case ct.Tenant.NamespaceName() != ns:
		return channelVerdict{Reason: platformv1.ReasonNotInTenantNamespace,
			Message: fmt.Sprintf("namespace %s is labelled for Tenant %s, whose namespace is %s; the channel is not served", ns, ct.Tenant.Name, ct.Tenant.NamespaceName())}, false
	case ct.Tenant.DeletionTimestamp != nil || ct.Tenant.Spec.State == platformv1.TenantDeactivated:
		return channelVerdict{Tenant: ct.Tenant.Name, Reason: platformv1.ReasonTenantDeactivated,
			Message: fmt.Sprintf("Tenant %s is deactivated; the channel is not served", ct.Tenant.Name)}, false
	}
	return channelVerdict{Tenant: ct.Tenant.Name}, true
}

// acceptChannel completes the verdict of a channel in an Active tenant's
// namespace from its claim and its Secrets.
func acceptChannel(ch *platformv1.MetaChannel, v channelVerdict, route RouteConfig,
	earlier *platformv1.MetaChannel, secrets map[string]*corev1.Secret,
) channelVerdict {
	v.WebhookURL = route.WebhookURL(v.Tenant, ch.Name)
	if earlier != nil {
		v.Reason = platformv1.ReasonConflict
		v.Message = fmt.Sprintf("the %s of this channel is claimed by MetaChannel %s/%s, which came first; this channel is not served",
			claimName(ch.Spec.Platform), earlier.Namespace, earlier.Name)
		v.ConflictWith = earlier
		return v
	}
	if reason, msg := secretProblems(ch, secrets); reason != "" {
		v.Reason, v.Message = reason, msg
		return v
	}
	v.Ready = true
	v.Reason = platformv1.ReasonChannelAccepted
	v.Message = fmt.Sprintf("accepted for the worker of Tenant %s", v.Tenant)
	if v.WebhookURL == "" {
		v.Message += "; no webhook URL: the manager has neither --webhook-base-url nor --ingress-host"
	}
	return v
}
