package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// DefaultMetaAppReplicas is the front door's replica count when
// spec.replicas is not set: two, so that a drained node or a rollout never
// leaves the app's only callback URL without a pod.
const DefaultMetaAppReplicas int32 = 2

// MetaAppSpec describes one Meta app (typically the platform's own, as a
// tech provider) whose single callback URL serves the channels of many
// tenants.
type MetaAppSpec struct {
	// appID is the Meta app id, as shown in Meta's app dashboard. It is
	// informational: printed by kubectl get, and the label
	// platform.omniflowcrm.com/meta-app-id of the front door's objects;
	// deliveries are authenticated with the app secret.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=32
	// +kubebuilder:validation:Pattern=`^[0-9]+$`
	AppID string `json:"appID"`

	// appSecretRef names the key of a Secret in the operator's namespace
	// that holds the app secret. The front door accepts a delivery only with
	// a valid X-Hub-Signature-256 made with it.
	// +required
	AppSecretRef SecretKeyRef `json:"appSecretRef"`

	// verifyTokenRef names the key of a Secret in the operator's namespace
	// that holds the verify token entered in Meta's dashboard for the
	// subscription handshake.
	// +required
	VerifyTokenRef SecretKeyRef `json:"verifyTokenRef"`

	// replicas is the number of front door pods. At least 2 (a
	// PodDisruptionBudget keeps one up during drains); defaults to 2.
	// +optional
	// +kubebuilder:default=2
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=20
	Replicas *int32 `json:"replicas,omitempty"`
}

// MetaAppStatus is what the operator observed about a MetaApp.
type MetaAppStatus struct {
	// observedGeneration is the generation of the spec that this status
	// describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the app's Secrets exist and are not
	// empty and its front door Deployment has its replicas available.
	// Reconciling is True while the operator is getting there (pods
	// starting); Stalled is True when a human must act (a Secret missing or
	// empty).
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// webhookURL is the callback URL to enter in Meta's app dashboard
	// (Webhooks, for every product the app subscribes). Empty while the
	// operator knows no public base URL (--webhook-base-url or
	// --ingress-host).
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	WebhookURL string `json:"webhookURL,omitempty"`

	// channels is how many MetaChannels name this app in appRef.
	// +optional
	Channels int32 `json:"channels,omitempty"`
}

// MetaApp is one Meta app whose single webhook callback URL (its front
// door, which the operator runs) receives the deliveries of every
// MetaChannel that names it in appRef, and forwards each tenant's parts to
// that tenant's worker.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=mapp,categories=omniflow
// +kubebuilder:printcolumn:name="App-ID",type=string,JSONPath=`.spec.appID`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`
// +kubebuilder:printcolumn:name="Channels",type=integer,JSONPath=`.status.channels`
// +kubebuilder:printcolumn:name="Webhook-URL",type=string,JSONPath=`.status.webhookURL`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// +kubebuilder:validation:XValidation:rule="size(self.metadata.name) <= 40",message="metadata.name must be at most 40 characters (it prefixes the front door's objects)"
type MetaApp struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the desired state of the app.
	// +required
	Spec MetaAppSpec `json:"spec"`

	// status is the observed state of the app.
	// +optional
	Status MetaAppStatus `json:"status,omitempty"`
}

// MetaAppList is a list of MetaApps.
// +kubebuilder:object:root=true
type MetaAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MetaApp `json:"items"`
}

func init() {
	SchemeBuilder.Register(&MetaApp{}, &MetaAppList{})
}

// FrontDoorReplicas is spec.replicas, or DefaultMetaAppReplicas.
func (a *MetaApp) FrontDoorReplicas() int32 {
	if a.Spec.Replicas != nil {
		return *a.Spec.Replicas
	}
	return DefaultMetaAppReplicas
}
