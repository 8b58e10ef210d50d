package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Platform is one of Meta's messaging platforms.
// +kubebuilder:validation:Enum=WhatsApp;Messenger;Instagram
type Platform string

const (
	PlatformWhatsApp  Platform = "WhatsApp"
	PlatformMessenger Platform = "Messenger"
	PlatformInstagram Platform = "Instagram"
)

// MetaChannelSpec describes one WhatsApp phone number, Facebook Page or
// Instagram account of a tenant.
// +kubebuilder:validation:XValidation:rule="self.platform != 'WhatsApp' || has(self.whatsApp)",message="whatsApp is required for platform WhatsApp"
// +kubebuilder:validation:XValidation:rule="self.platform != 'Messenger' || has(self.messenger)",message="messenger is required for platform Messenger"
// +kubebuilder:validation:XValidation:rule="self.platform != 'Instagram' || has(self.instagram)",message="instagram is required for platform Instagram"
// +kubebuilder:validation:XValidation:rule="self.platform == 'WhatsApp' || !has(self.whatsApp)",message="whatsApp may only be set for platform WhatsApp"
// +kubebuilder:validation:XValidation:rule="self.platform == 'Messenger' || !has(self.messenger)",message="messenger may only be set for platform Messenger"
// +kubebuilder:validation:XValidation:rule="self.platform == 'Instagram' || !has(self.instagram)",message="instagram may only be set for platform Instagram"
// +kubebuilder:validation:XValidation:rule="has(self.appRef) != (has(self.appSecretRef) || has(self.verifyTokenRef))",message="set either appRef or appSecretRef and verifyTokenRef, not both"
// +kubebuilder:validation:XValidation:rule="!has(self.verifyTokenRef) || has(self.appSecretRef)",message="appSecretRef is required with verifyTokenRef",fieldPath=".appSecretRef",reason=FieldValueRequired
// +kubebuilder:validation:XValidation:rule="!has(self.appSecretRef) || has(self.verifyTokenRef)",message="verifyTokenRef is required with appSecretRef",fieldPath=".verifyTokenRef",reason=FieldValueRequired
type MetaChannelSpec struct {
	// platform is the Meta platform of this channel: WhatsApp, Messenger or
	// Instagram. Immutable.
	// +required
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="platform is immutable"
	Platform Platform `json:"platform"`

	// whatsApp holds the WhatsApp Cloud API ids; required for platform
	// WhatsApp and forbidden otherwise.
	// +optional
	WhatsApp *WhatsAppChannel `json:"whatsApp,omitempty"`

	// messenger holds the Facebook Page id; required for platform Messenger
	// and forbidden otherwise.
	// +optional
	Messenger *MessengerChannel `json:"messenger,omitempty"`

	// instagram holds the Instagram professional account id; required for
	// platform Instagram and forbidden otherwise.
	// +optional
	Instagram *InstagramChannel `json:"instagram,omitempty"`

	// appRef names the cluster-scoped MetaApp whose front door receives this
	// channel's deliveries (the app's one callback URL) and forwards them to
	// the tenant's worker. Set either appRef, or appSecretRef and
	// verifyTokenRef (the channel's own app, reached at its own URL), not
	// both. A channel with appRef is served once the MetaApp exists and is
	// Ready.
	// +optional
	AppRef *MetaAppRef `json:"appRef,omitempty"`

	// appSecretRef names the key of a Secret in this namespace that holds the
	// Meta app secret. Deliveries are accepted only with a valid
	// X-Hub-Signature-256 made with it. Required unless appRef is set, and
	// forbidden with it.
	// +optional
	AppSecretRef *SecretKeyRef `json:"appSecretRef,omitempty"`

	// verifyTokenRef names the key of a Secret in this namespace that holds
	// the verify token entered in Meta's dashboard for the subscription
	// handshake. Required unless appRef is set, and forbidden with it.
	// +optional
	VerifyTokenRef *SecretKeyRef `json:"verifyTokenRef,omitempty"`

	// accessTokenRef names the key of a Secret in this namespace that holds a
	// Graph API access token (a system user token with whatsapp_business_messaging).
	// The tenant's worker uses it for WhatsApp media only: it looks a media id up
	// (GET <graphAPIBaseURL>/<version>/<media id>) and downloads the file from the
	// URL Meta answers, both with the token as bearer, and stores the bytes in the
	// tenant's store. Without it, a WhatsApp channel's media stays metadata only
	// (the file record, never the bytes; condition MediaFetching says
	// MetadataOnly). Messenger and Instagram attachments are downloaded from the
	// URL in the delivery and need no token. The worker watches the Secret: a
	// changed token is used within seconds, and a token Meta refused (401/403)
	// pauses the channel's fetching until the Secret changes (condition
	// MediaFetching, reason TokenRefused).
	// +optional
	AccessTokenRef *SecretKeyRef `json:"accessTokenRef,omitempty"`

	// graphAPIBaseURL is the Graph API base URL the worker sends WhatsApp media
	// lookups and downloads' lookups to (the download itself goes to the URL
	// Meta answers). Defaults to Meta's, https://graph.facebook.com; tests point
	// it at a local server. Messenger and Instagram attachments are fetched
	// from the URLs in the deliveries, so it does not apply to them.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (self.startsWith('https://') || self.startsWith('http://'))",message="graphAPIBaseURL must be an http(s) URL"
	GraphAPIBaseURL string `json:"graphAPIBaseURL,omitempty"`
}

// WhatsAppChannel identifies one WhatsApp Business phone number.
type WhatsAppChannel struct {
	// phoneNumberID is the Cloud API phone number id (metadata.phone_number_id
	// in deliveries), not the phone number itself.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	PhoneNumberID string `json:"phoneNumberID"`

	// businessAccountID is the WhatsApp Business Account (WABA) id (entry.id
	// in deliveries).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	BusinessAccountID string `json:"businessAccountID"`
}

// MessengerChannel identifies one Facebook Page.
type MessengerChannel struct {
	// pageID is the Facebook Page id (entry.id in deliveries).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	PageID string `json:"pageID"`
}

// InstagramChannel identifies one Instagram professional account.
type InstagramChannel struct {
	// accountID is the Instagram professional account id (entry.id in
	// deliveries).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	AccountID string `json:"accountID"`
}

// SecretKeyRef names one key of a Secret in the object's own namespace.
type SecretKeyRef struct {
	// name is the Secret's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	Name string `json:"name"`

	// key is the key within the Secret's data.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[-._a-zA-Z0-9]+$`
	Key string `json:"key"`
}

// MetaAppRef names a MetaApp.
type MetaAppRef struct {
	// name is the MetaApp's name.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=40
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`
}

// MetaChannelStatus is what the operator observed about a channel.
type MetaChannelStatus struct {
	// observedGeneration is the generation of the spec that this status
	// describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the channel's Secrets exist and are
	// well-formed, it holds its platform id (no other channel serves it),
	// and its tenant is Active. Reason Conflict says that another channel
	// serves the id, and never which. Stalled is True whenever Ready is
	// False (every reason needs a human), Reconciling only before the first
	// verdict. MediaFetching says whether the worker stores the bytes of the
	// channel's shared files: True with reason Fetching (WhatsApp, with
	// accessTokenRef) or FetchedByURL (Messenger, Instagram: no token needed);
	// False with reason MetadataOnly (WhatsApp without accessTokenRef: file
	// records without bytes) or TokenRefused (Meta refused the token; fetching
	// is paused until its Secret changes). It is present only while Ready is
	// True and never makes the channel Stalled: ingest works either way.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// tenant is the Tenant whose namespace holds this channel.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Tenant string `json:"tenant,omitempty"`

	// webhookURL is the callback URL to enter in Meta's app dashboard.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	WebhookURL string `json:"webhookURL,omitempty"`

	// heldID is the platform id this channel holds, qualified by its kind
	// ("whatsapp-phone/<phoneNumberID>", "messenger-page/<pageID>" or
	// "instagram-account/<accountID>"). The operator records it when it
	// accepts the channel as the one that serves the id, keeps it while a
	// referenced Secret is missing or empty, and clears it when the channel
	// can no longer be served (its namespace is not the live namespace of an
	// Active Tenant) or claims another id. A channel that holds its id keeps it: any other
	// channel with the same id, in any namespace, is refused with reason
	// Conflict until this one releases it. Empty while the channel holds
	// nothing.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	HeldID string `json:"heldID,omitempty"`
}

// MetaChannel is one WhatsApp phone number, Facebook Page or Instagram
// account of a tenant, served by the tenant's ingest worker.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mch,categories=omniflow
// +kubebuilder:printcolumn:name="Platform",type=string,JSONPath=`.spec.platform`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Webhook-URL",type=string,JSONPath=`.status.webhookURL`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:printcolumn:name="Media",type=string,JSONPath=`.status.conditions[?(@.type=="MediaFetching")].reason`,priority=1
type MetaChannel struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the channel.
	// +required
	Spec MetaChannelSpec `json:"spec"`

	// status is the observed state of the channel.
	// +optional
	Status MetaChannelStatus `json:"status,omitempty"`
}

// MetaChannelList is a list of MetaChannels.
// +kubebuilder:object:root=true
type MetaChannelList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetaChannel `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MetaChannel{}, &MetaChannelList{})
}
