// Package v1alpha1 contains the Omniflow platform API: Tenant, MetaChannel and
// DeletionRequest.
// +kubebuilder:object:generate=true
// +groupName=platform.omniflowcrm.com
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the API group and version of the Omniflow API.
	GroupVersion = schema.GroupVersion{Group: "platform.omniflowcrm.com", Version: "v1alpha1"}

	// SchemeBuilder registers the Omniflow types with a runtime.Scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the Omniflow types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
