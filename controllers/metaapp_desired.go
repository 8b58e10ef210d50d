package controllers

import (
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

const (
	componentFrontDoor = "frontdoor"
	// ForwardingKeySecret is the operator's forwarding key, in the
	// operator's namespace: 32 random bytes in hex under ForwardingKeyKey,
	// created once and never rewritten. Every MetaApp's front door mounts it;
	// each tenant's worker holds only the key derived from it for its tenant
	// (internal/forward.TenantKey), in ForwardKeySecret.
	ForwardingKeySecret = "omniflow-forwarding-key"
	// ForwardingKeyKey is the data key of ForwardingKeySecret and of
	// ForwardKeySecret.
	ForwardingKeyKey = "key"
	// ForwardKeySecret is a tenant's derived forwarding key, in the tenant's
	// namespace, written only while the tenant has a channel with appRef.
	ForwardKeySecret = "omniflow-forward-key"
	// forwardKeyMountPath is where the worker finds its forwarding key.
	forwardKeyMountPath  = "/var/run/omniflow/forward"
	frontDoorSecretsPath = "/var/run/omniflow/app" //nolint:gosec // G101: a mount path, not a credential
	frontDoorKeyPath     = "/var/run/omniflow/forwarding"
)

// FrontDoorName names every object of a MetaApp's front door: the
// Deployment, Service, ServiceAccount, PodDisruptionBudget and Ingress in
// the operator's namespace, the ClusterRole and ClusterRoleBinding.
func FrontDoorName(app string) string { return "omniflow-frontdoor-" + app }

// MetaAppWebhookPath is the public path of a MetaApp's callback URL.
func MetaAppWebhookPath(app string) string { return MetaAppRoutePrefix(app) + "webhooks/meta" }

// MetaAppRoutePrefix is the path prefix the Ingress sends to the app's front door.
func MetaAppRoutePrefix(app string) string { return "/apps/" + app + "/" }

// MetaAppWebhookURL is the callback URL to paste in Meta's dashboard, or ""
// when the manager knows no public base URL.
func (c RouteConfig) MetaAppWebhookURL(app string) string {
	base := c.baseURL()
	if base == "" {
		return ""
	}
	return base + MetaAppWebhookPath(app)
}

func frontDoorSelector(a *platformv1.MetaApp) map[string]string {
	return map[string]string{labelComponent: componentFrontDoor, labelInstance: a.Name}
}

func frontDoorLabels(a *platformv1.MetaApp) map[string]string {
	l := frontDoorPodLabels(a)
	// Which Meta app this front door answers for, to find it by the id that
	// Meta's dashboard shows (an id of digits: a valid label value).
	l[LabelMetaAppID] = a.Spec.AppID
	return l
}

// frontDoorPodLabels are the labels of a front door's pods.
func frontDoorPodLabels(a *platformv1.MetaApp) map[string]string {
	l := frontDoorSelector(a)
	l[platformv1.LabelManagedBy] = platformv1.ManagedByValue
	l[labelName] = "omniflow-frontdoor"
	return l
}

// LabelMetaAppID on a front door's objects is its MetaApp's spec.appID.
const LabelMetaAppID = "platform.omniflowcrm.com/meta-app-id"

func metaAppOwnerRef(a *platformv1.MetaApp) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(platformv1.GroupVersion.String()).
		WithKind("MetaApp").
		WithName(a.Name).
		WithUID(a.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// FrontDoorArgs are the front door's arguments in its Deployment.
func FrontDoorArgs(a *platformv1.MetaApp) []string {
	return []string{
		"serve",
		"--listen=:8080",
		"--cluster",
		"--app=" + a.Name,
		"--app-secret-file=" + frontDoorSecretsPath + "/app-secret",
		"--verify-token-file=" + frontDoorSecretsPath + "/verify-token",
		"--forwarding-key-file=" + frontDoorKeyPath + "/" + ForwardingKeyKey,
	}
}

// desiredFrontDoorDeployment runs `frontdoor serve --cluster` with the
// manager's image. The app's Secrets and the forwarding key are mounted as
// files by the kubelet: the ServiceAccount itself reads no Secret.
func desiredFrontDoorDeployment(a *platformv1.MetaApp, ns, image string) *appsv1ac.DeploymentApplyConfiguration {
	container := corev1ac.Container().
		WithName(componentFrontDoor).
		WithImage(image).
		WithCommand("/frontdoor").
		WithArgs(FrontDoorArgs(a)...).
		WithPorts(corev1ac.ContainerPort().WithName(WebhookPortName).WithContainerPort(WebhookPort).WithProtocol(corev1.ProtocolTCP)).
		WithResources(corev1ac.ResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")})).
		WithReadinessProbe(httpProbe("/readyz")).
		WithLivenessProbe(httpProbe("/healthz")).
		WithVolumeMounts(
			corev1ac.VolumeMount().WithName("app").WithMountPath(frontDoorSecretsPath).WithReadOnly(true),
			corev1ac.VolumeMount().WithName("forwarding").WithMountPath(frontDoorKeyPath).WithReadOnly(true)).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))
	appVolume := corev1ac.Volume().WithName("app").WithProjected(corev1ac.ProjectedVolumeSource().WithSources(
		corev1ac.VolumeProjection().WithSecret(corev1ac.SecretProjection().WithName(a.Spec.AppSecretRef.Name).
			WithItems(corev1ac.KeyToPath().WithKey(a.Spec.AppSecretRef.Key).WithPath("app-secret"))),
		corev1ac.VolumeProjection().WithSecret(corev1ac.SecretProjection().WithName(a.Spec.VerifyTokenRef.Name).
			WithItems(corev1ac.KeyToPath().WithKey(a.Spec.VerifyTokenRef.Key).WithPath("verify-token")))))
	keyVolume := corev1ac.Volume().WithName("forwarding").WithSecret(corev1ac.SecretVolumeSource().
		WithSecretName(ForwardingKeySecret).
		WithItems(corev1ac.KeyToPath().WithKey(ForwardingKeyKey).WithPath(ForwardingKeyKey)))
	pod := corev1ac.PodSpec().
		WithServiceAccountName(FrontDoorName(a.Name)).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(workerUID).
			WithRunAsGroup(workerUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container).
		WithVolumes(appVolume, keyVolume)
	return appsv1ac.Deployment(FrontDoorName(a.Name), ns).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(a.FrontDoorReplicas()).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(frontDoorSelector(a))).
			// The pods leave the app id out: correcting it must not roll them.
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(frontDoorPodLabels(a)).
				WithSpec(pod)))
}

// desiredFrontDoorPDB keeps at least one front door pod through voluntary
// disruptions (drains): the app's callback URL is every tenant's.
func desiredFrontDoorPDB(a *platformv1.MetaApp, ns string) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	return policyv1ac.PodDisruptionBudget(FrontDoorName(a.Name), ns).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMinAvailable(intstr.FromInt32(1)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(frontDoorSelector(a))))
}

func desiredFrontDoorService(a *platformv1.MetaApp, ns string) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(FrontDoorName(a.Name), ns).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(frontDoorSelector(a)).
			WithPorts(corev1ac.ServicePort().
				WithName(WebhookPortName).
				WithPort(ServicePort).
				WithProtocol(corev1.ProtocolTCP).
				WithTargetPort(intstr.FromString(WebhookPortName))))
}

func desiredFrontDoorServiceAccount(a *platformv1.MetaApp, ns string) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(FrontDoorName(a.Name), ns).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithAutomountServiceAccountToken(true)
}

// desiredFrontDoorClusterRole is all the front door may do with the API:
// read MetaChannels (their ids and status) cluster-wide. No Secret: its own
// are mounted as files, a tenant's are never its business.
func desiredFrontDoorClusterRole(a *platformv1.MetaApp) *rbacv1ac.ClusterRoleApplyConfiguration {
	return rbacv1ac.ClusterRole(FrontDoorName(a.Name)).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithRules(rbacv1ac.PolicyRule().
			WithAPIGroups(platformv1.GroupVersion.Group).
			WithResources("metachannels").
			WithVerbs("get", "list", "watch"))
}

func desiredFrontDoorClusterRoleBinding(a *platformv1.MetaApp, ns string) *rbacv1ac.ClusterRoleBindingApplyConfiguration {
	return rbacv1ac.ClusterRoleBinding(FrontDoorName(a.Name)).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a)).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(FrontDoorName(a.Name))).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(FrontDoorName(a.Name)).WithNamespace(ns))
}

// desiredFrontDoorIngress routes /apps/<app>/ to the app's front door,
// with the same class, host, TLS and annotations as the tenant routes.
// desiredFrontDoorHTTPRoute attaches /apps/<app>/ to the manager's Gateway
// (--route=httproute), to the front door's Service.
func desiredFrontDoorHTTPRoute(a *platformv1.MetaApp, ns string, cfg RouteConfig) *gatewayv1ac.HTTPRouteApplyConfiguration {
	return prefixHTTPRoute(FrontDoorName(a.Name), ns, MetaAppRoutePrefix(a.Name), FrontDoorName(a.Name), cfg).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a))
}

func desiredFrontDoorIngress(a *platformv1.MetaApp, ns string, cfg RouteConfig) *networkingv1ac.IngressApplyConfiguration {
	return prefixIngress(FrontDoorName(a.Name), ns, MetaAppRoutePrefix(a.Name), FrontDoorName(a.Name), cfg).
		WithLabels(frontDoorLabels(a)).
		WithOwnerReferences(metaAppOwnerRef(a))
}
