package v1alpha1

// Ready reasons of a MetaApp, and of a MetaChannel that names one.
const (
	// ReasonFrontDoorAvailable: the app's Secrets are usable and its front
	// door has its replicas available.
	ReasonFrontDoorAvailable = "FrontDoorAvailable"
	// ReasonFrontDoorUnavailable: the front door's pods are not (yet) all
	// available.
	ReasonFrontDoorUnavailable = "FrontDoorUnavailable"
	// ReasonMetaAppNotFound: a channel's appRef names no MetaApp.
	ReasonMetaAppNotFound = "MetaAppNotFound"
	// ReasonMetaAppNotReady: a channel's MetaApp exists but is not Ready.
	ReasonMetaAppNotReady = "MetaAppNotReady"
)

// metaAppStalledReasons need a human: a Secret to create or fill.
var metaAppStalledReasons = map[string]bool{
	ReasonSecretMissing:    true,
	ReasonSecretKeyMissing: true,
	ReasonSecretValueEmpty: true,
}
