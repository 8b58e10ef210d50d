package controllers

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"

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

// claimant is another channel with the same claim, with whether it may be
// served at all (its namespace is the live namespace of an Active Tenant:
// tenantVerdict). Only a channel that may be served holds an id, so a
// channel in any other namespace, or of a Tenant that is missing or not
// Active, never blocks one.
type claimant struct {
	Channel  *platformv1.MetaChannel
	Servable bool
}

// holdsClaim says whether the operator recorded that ch holds the id its
// spec claims now (status.heldID). A channel whose id changed holds nothing
// until it is judged again.
func holdsClaim(ch *platformv1.MetaChannel) bool {
	claim := ChannelClaim(ch)
	return claim != "" && ch.Status.HeldID == claim
}

// claimsBefore is the order in which channels with the same claim get it:
//  1. a channel that holds it (status.heldID) comes first: a served channel
//     never loses its id to another, older or newer;
//  2. then the earlier creationTimestamp;
//  3. then, for first claims made within the same second (creationTimestamp
//     has a resolution of one second), the namespace, then the name, in
//     byte order, so that every reconcile of either channel agrees.
//
// With one holder at a time (the operator reconciles channels one after
// another and reads the other claimants' status uncached), rule 1 decides
// every contest over an id already in service; rules 2 and 3 only decide
// between channels of which none has been served yet.
func claimsBefore(a, b *platformv1.MetaChannel) bool {
	if ha, hb := holdsClaim(a), holdsClaim(b); ha != hb {
		return ha
	}
	ta, tb := a.CreationTimestamp.Time, b.CreationTimestamp.Time
	if !ta.Equal(tb) {
		return ta.Before(tb)
	}
	if a.Namespace != b.Namespace {
		return a.Namespace < b.Namespace
	}
	return a.Name < b.Name
}

// claimHolder returns the channel that holds ch's claim instead of ch, or
// nil when ch gets it. ch itself may be served (tenantVerdict passed); of
// the others only those that may be served and are not being deleted
// count.
func claimHolder(ch *platformv1.MetaChannel, others []claimant) *platformv1.MetaChannel {
	claim := ChannelClaim(ch)
	if claim == "" {
		return nil
	}
	var holder *platformv1.MetaChannel
	for _, o := range others {
		c := o.Channel
		if !o.Servable || c.DeletionTimestamp != nil || ChannelClaim(c) != claim ||
			(c.Namespace == ch.Namespace && c.Name == ch.Name) {
			continue
		}
		if claimsBefore(c, ch) && (holder == nil || claimsBefore(c, holder)) {
			holder = c
		}
	}
	return holder
}

// channelSecretRef is one Secret key a channel needs, with the field that
// names it.
type channelSecretRef struct {
	Field string
	Ref   platformv1.SecretKeyRef
}

// channelSecretRefs lists the Secret keys a channel needs: the app secret
// and the verify token (unless the channel names a MetaApp, whose Secrets
// they are) and, when set, the access token.
func channelSecretRefs(ch *platformv1.MetaChannel) []channelSecretRef {
	var refs []channelSecretRef
	for _, r := range []struct {
		field string
		ref   *platformv1.SecretKeyRef
	}{{"appSecretRef", ch.Spec.AppSecretRef}, {"verifyTokenRef", ch.Spec.VerifyTokenRef}, {"accessTokenRef", ch.Spec.AccessTokenRef}} {
		if r.ref != nil {
			refs = append(refs, channelSecretRef{r.field, *r.ref})
		}
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
	// HeldID is the claim the channel holds (status.heldID), "" for none.
	HeldID string
	// HeldBy is the channel that holds this channel's claim instead, if
	// any. It goes to the operator's log only: status and Events are read
	// by the tenant, and must not name another tenant's channel.
	HeldBy *platformv1.MetaChannel
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
		// Not the other namespace's name: this namespace's users are not
		// that Tenant's.
		return channelVerdict{Reason: platformv1.ReasonNotInTenantNamespace,
			Message: fmt.Sprintf("namespace %s is labelled for Tenant %s, which uses another namespace; the channel is not served", ns, ct.Tenant.Name)}, false
	case ct.Tenant.DeletionTimestamp != nil || ct.Tenant.Spec.State == platformv1.TenantDeactivated || ct.Tenant.Status.ErasedAt != nil:
		return channelVerdict{Tenant: ct.Tenant.Name, Reason: platformv1.ReasonTenantDeactivated,
			Message: fmt.Sprintf("Tenant %s is deactivated; the channel is not served", ct.Tenant.Name)}, false
	}
	return channelVerdict{Tenant: ct.Tenant.Name}, true
}

// acceptChannel completes the verdict of a channel in an Active tenant's
// namespace from the holder of its claim (claimHolder) and its Secrets.
// A conflict says that the id is served elsewhere and nothing more: the
// holder may be another tenant's, and its tenant, namespace and name are
// none of this one's business (the operator's log names it for the
// platform team).
func acceptChannel(ch *platformv1.MetaChannel, v channelVerdict, route RouteConfig,
	holder *platformv1.MetaChannel, secrets map[string]*corev1.Secret,
) channelVerdict {
	v.WebhookURL = route.WebhookURL(v.Tenant, ch.Name)
	if holder != nil {
		v.Reason = platformv1.ReasonConflict
		v.Message = fmt.Sprintf("another channel already serves the %s of this channel; this channel is not served until that one releases it",
			claimName(ch.Spec.Platform))
		v.HeldBy = holder
		return v
	}
	// The claim is checked before the Secrets: a channel whose Secret is
	// missing for a moment (a rotation) keeps its id.
	v.HeldID = ChannelClaim(ch)
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

// appVerdict adjusts the verdict of a channel that names a MetaApp (app nil:
// not found): its webhook URL is the app's, and it is served only while the
// app is Ready, whose Secrets are the channel's app secret and verify
// token. Like a missing Secret, a missing or unready app keeps the claim.
func appVerdict(v channelVerdict, app *platformv1.MetaApp) channelVerdict {
	v.WebhookURL = ""
	if app != nil {
		v.WebhookURL = app.Status.WebhookURL
	}
	if !v.Ready {
		return v
	}
	switch {
	case app == nil:
		v.Ready, v.Reason, v.Message = false, platformv1.ReasonMetaAppNotFound, "the MetaApp named in appRef does not exist"
	case !meta.IsStatusConditionTrue(app.Status.Conditions, platformv1.ConditionReady):
		v.Ready, v.Reason, v.Message = false, platformv1.ReasonMetaAppNotReady, fmt.Sprintf("MetaApp %s is not Ready", app.Name)
	default:
		v.Message = fmt.Sprintf("accepted for the worker of Tenant %s through MetaApp %s", v.Tenant, app.Name)
	}
	return v
}
