package controllers

import (
	"encoding/hex"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/utils/ptr"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Names of the objects the operator creates in a tenant's namespace. Other
// components (the worker, the demo, the docs) rely on them.
const (
	WorkerName      = "ingest-worker"
	DataClaimName   = "data"
	WebhookPort     = 8080
	WebhookPortName = "webhook"
	ServicePort     = 80
	DataMountPath   = "/data"
	fieldOwner      = "omniflow-operator"
	defaultSize     = "5Gi"
	labelComponent  = "app.kubernetes.io/component"
	labelName       = "app.kubernetes.io/name"
	labelInstance   = "app.kubernetes.io/instance"
	componentWorker = "ingest-worker"
	workerUID       = 65532
	defaultReplicas = int32(1)
	envPodNamespace = "POD_NAMESPACE"
	envTenantName   = "OMNIFLOW_TENANT"
)

// WorkerConfig is the operator-wide configuration of tenant workers, from
// the manager's flags.
type WorkerConfig struct {
	// Image is the ingest worker image (cmd/ingest-worker).
	Image string
	// DefaultStorageClass is used when a Tenant names none; empty means the
	// cluster's default StorageClass.
	DefaultStorageClass string
	// DataKeyNamespace is where tenants' data keys live (the operator's own
	// namespace, set by SetupAll from Options.Namespace); empty: no data keys.
	DataKeyNamespace string
}

// tenantLabels are carried by every object of a tenant.
func tenantLabels(t *platformv1.Tenant) map[string]string {
	return map[string]string{
		platformv1.LabelTenant:    t.Name,
		platformv1.LabelManagedBy: platformv1.ManagedByValue,
	}
}

// workerSelector selects the worker's pods; it must never change for a
// Deployment, so it holds only stable labels.
func workerSelector(t *platformv1.Tenant) map[string]string {
	return map[string]string{
		platformv1.LabelTenant: t.Name,
		labelComponent:         componentWorker,
	}
}

func workerLabels(t *platformv1.Tenant) map[string]string {
	l := tenantLabels(t)
	l[labelComponent] = componentWorker
	l[labelName] = "omniflow-ingest-worker"
	l[labelInstance] = t.Name
	return l
}

func ownerRef(t *platformv1.Tenant) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(platformv1.GroupVersion.String()).
		WithKind("Tenant").
		WithName(t.Name).
		WithUID(t.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

// desiredNamespace carries the tenant's labels and the operator's marks
// (origin: OriginCreated or OriginAdopted). It has no owner reference on
// purpose: the namespace holds the data, and garbage collection must never
// erase it behind the erasure process (for instance when the CRD is deleted
// and every Tenant with it).
func desiredNamespace(t *platformv1.Tenant, origin string) *corev1ac.NamespaceApplyConfiguration {
	return corev1ac.Namespace(t.NamespaceName()).WithLabels(tenantLabels(t)).WithAnnotations(namespaceMarks(t, origin))
}

func desiredServiceAccount(t *platformv1.Tenant) *corev1ac.ServiceAccountApplyConfiguration {
	return corev1ac.ServiceAccount(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t))
}

// desiredRole gives the worker what it needs in its own namespace and
// nothing else: its channels and deletion requests, and only the Secrets
// those channels name (never a blanket Secret read).
func desiredRole(t *platformv1.Tenant, secretNames []string) *rbacv1ac.RoleApplyConfiguration {
	rules := []*rbacv1ac.PolicyRuleApplyConfiguration{
		rbacv1ac.PolicyRule().
			WithAPIGroups(platformv1.GroupVersion.Group).
			WithResources("metachannels", "deletionrequests").
			WithVerbs("get", "list", "watch"),
		// The worker reports on deletion requests only; MetaChannel status is the operator's.
		rbacv1ac.PolicyRule().
			WithAPIGroups(platformv1.GroupVersion.Group).
			WithResources("deletionrequests/status").
			WithVerbs("patch"),
		// Meta's data-deletion callback files requests through the worker.
		rbacv1ac.PolicyRule().
			WithAPIGroups(platformv1.GroupVersion.Group).
			WithResources("deletionrequests").
			WithVerbs("create"),
		// ...and the identifier of such a request must live in a Secret (never in the
		// CR), which only the worker, having verified Meta's signature, holds. RBAC
		// cannot limit create by name (the name is not known when it is authorized),
		// so this grants creating any Secret in the tenant's namespace; it grants no
		// reading: the worker reads a Secret only once the operator names it below, as
		// the subject of a pending request. Create-only, no update, delete or list.
		rbacv1ac.PolicyRule().
			WithAPIGroups("").
			WithResources("secrets").
			WithVerbs("create"),
		// The worker reports its retention runs in this one ConfigMap, which the
		// operator copies into the Tenant's status. A merge patch needs no read.
		rbacv1ac.PolicyRule().
			WithAPIGroups("").
			WithResources("configmaps").
			WithResourceNames(platformv1.WorkerReportName).
			WithVerbs("patch"),
		// The worker says on a MetaChannel when it stopped serving it because Meta
		// reported that the business removed the app or deleted its account.
		rbacv1ac.PolicyRule().
			WithAPIGroups("events.k8s.io").
			WithResources("events").
			WithVerbs("create"),
	}
	names := uniqueSorted(secretNames)
	// An empty resourceNames list would grant every Secret: leave the rule out.
	if len(names) > 0 {
		rules = append(rules, rbacv1ac.PolicyRule().
			WithAPIGroups("").
			WithResources("secrets").
			WithResourceNames(names...).
			// Read by name, and watched by name: a list or watch under resourceNames is
			// allowed only when it selects exactly one of these objects
			// (fieldSelector metadata.name=<name>), never the namespace's Secrets. The
			// worker watches its channels' Secrets so that a rotation is in force at once
			// without reading them again and again.
			WithVerbs("get", "list", "watch"))
	}
	return rbacv1ac.Role(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithRules(rules...)
}

func desiredRoleBinding(t *platformv1.Tenant) *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithRoleRef(rbacv1ac.RoleRef().
			WithAPIGroup("rbac.authorization.k8s.io").
			WithKind("Role").
			WithName(WorkerName)).
		WithSubjects(rbacv1ac.Subject().
			WithKind("ServiceAccount").
			WithName(WorkerName).
			WithNamespace(t.NamespaceName()))
}

// desiredNetworkPolicy admits traffic to the worker only on the webhook port.
func desiredNetworkPolicy(t *platformv1.Tenant) *networkingv1ac.NetworkPolicyApplyConfiguration {
	return networkingv1ac.NetworkPolicy(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithSpec(networkingv1ac.NetworkPolicySpec().
			WithPodSelector(metav1ac.LabelSelector().WithMatchLabels(workerSelector(t))).
			WithPolicyTypes(networkingv1.PolicyTypeIngress).
			WithIngress(networkingv1ac.NetworkPolicyIngressRule().
				WithPorts(networkingv1ac.NetworkPolicyPort().
					WithProtocol(corev1.ProtocolTCP).
					WithPort(intstr.FromInt32(WebhookPort)))))
}

func storageSize(t *platformv1.Tenant) resource.Quantity {
	if t.Spec.Storage.Size != nil && !t.Spec.Storage.Size.IsZero() {
		return *t.Spec.Storage.Size
	}
	return resource.MustParse(defaultSize)
}

func storageClass(t *platformv1.Tenant, cfg WorkerConfig) *string {
	if t.Spec.Storage.StorageClassName != nil {
		return t.Spec.Storage.StorageClassName
	}
	if cfg.DefaultStorageClass != "" {
		return ptr.To(cfg.DefaultStorageClass)
	}
	return nil
}

// desiredDataClaim is the SQLite volume. Its owner reference lets the claim
// be recreated when deleted by hand; erasure deletes it explicitly and deals
// with the bound volume's reclaim policy.
func desiredDataClaim(t *platformv1.Tenant, cfg WorkerConfig) *corev1ac.PersistentVolumeClaimApplyConfiguration {
	spec := corev1ac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(corev1ac.VolumeResourceRequirements().
			WithRequests(corev1.ResourceList{corev1.ResourceStorage: storageSize(t)}))
	if sc := storageClass(t, cfg); sc != nil {
		spec = spec.WithStorageClassName(*sc)
	}
	return corev1ac.PersistentVolumeClaim(DataClaimName, t.NamespaceName()).
		WithLabels(tenantLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithSpec(spec)
}

func workerReplicas(t *platformv1.Tenant) int32 {
	if t.Spec.Worker.Replicas != nil {
		return *t.Spec.Worker.Replicas
	}
	return defaultReplicas
}

func workerResources(t *platformv1.Tenant) *corev1ac.ResourceRequirementsApplyConfiguration {
	rr := corev1ac.ResourceRequirements()
	if r := t.Spec.Worker.Resources; r != nil {
		if len(r.Requests) > 0 {
			rr = rr.WithRequests(r.Requests)
		}
		if len(r.Limits) > 0 {
			rr = rr.WithLimits(r.Limits)
		}
		return rr
	}
	return rr.
		WithRequests(corev1.ResourceList{
			corev1.ResourceCPU:    resource.MustParse("50m"),
			corev1.ResourceMemory: resource.MustParse("64Mi"),
		}).
		WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")})
}

// WorkerArgs are the worker's command-line arguments in a tenant's
// Deployment. The demo runs the worker locally with exactly these.
func WorkerArgs(t *platformv1.Tenant) []string {
	// A PostgreSQL worker finds its database in $OMNIFLOW_POSTGRES_DSN.
	store := "--data-dir=" + DataMountPath
	if storageBackend(t) == platformv1.StoragePostgreSQL {
		store = "--store=postgres"
	}
	return append([]string{
		"serve",
		"--listen=:8080",
		store,
		"--namespace=" + t.NamespaceName(),
		"--tenant=" + t.Name,
	}, retentionArgs(t)...)
}

// workerEnv is the worker container's environment. The PostgreSQL DSN comes
// from the tenant's Secret by reference, so that it is never in the
// Deployment itself.
func workerEnv(t *platformv1.Tenant) []*corev1ac.EnvVarApplyConfiguration {
	env := []*corev1ac.EnvVarApplyConfiguration{
		corev1ac.EnvVar().WithName(envPodNamespace).WithValueFrom(
			corev1ac.EnvVarSource().WithFieldRef(
				// apiVersion is what the server would default: set it, or
				// every comparison with the live object differs.
				corev1ac.ObjectFieldSelector().WithAPIVersion("v1").WithFieldPath("metadata.namespace"))),
		corev1ac.EnvVar().WithName(envTenantName).WithValue(t.Name),
	}
	if storageBackend(t) == platformv1.StoragePostgreSQL {
		env = append(env, corev1ac.EnvVar().WithName(envPostgresDSN).WithValueFrom(
			corev1ac.EnvVarSource().WithSecretKeyRef(
				corev1ac.SecretKeySelector().WithName(platformv1.PostgresSecretName).WithKey(platformv1.PostgresSecretKey))))
	}
	return env
}

// workerVolumeMounts: only SQLite has a data volume; a PostgreSQL worker
// keeps nothing on disk.
func workerVolumeMounts(t *platformv1.Tenant) []*corev1ac.VolumeMountApplyConfiguration {
	if storageBackend(t) != platformv1.StorageSQLite {
		return nil
	}
	return []*corev1ac.VolumeMountApplyConfiguration{corev1ac.VolumeMount().WithName("data").WithMountPath(DataMountPath)}
}

// desiredDeployment is the worker's Deployment. With forwardKey (the
// tenant has a channel with appRef), the tenant's forwarding key is mounted
// from ForwardKeySecret and the worker accepts forwarded parts with it.
func desiredDeployment(t *platformv1.Tenant, cfg WorkerConfig, forwardKey bool) *appsv1ac.DeploymentApplyConfiguration {
	image := cfg.Image
	if t.Spec.Worker.Image != "" {
		image = t.Spec.Worker.Image
	}
	args := WorkerArgs(t)
	mounts := workerVolumeMounts(t)
	if forwardKey {
		args = append(args, "--forward-key-file="+forwardKeyMountPath+"/"+ForwardingKeyKey)
		mounts = append(mounts, corev1ac.VolumeMount().WithName("forward-key").WithMountPath(forwardKeyMountPath).WithReadOnly(true))
	}
	container := corev1ac.Container().
		WithName(WorkerName).
		WithImage(image).
		WithArgs(args...).
		WithEnv(append(workerEnv(t), dataKeyEnv(t, cfg)...)...).
		WithPorts(corev1ac.ContainerPort().WithName(WebhookPortName).WithContainerPort(WebhookPort).WithProtocol(corev1.ProtocolTCP)).
		WithResources(workerResources(t)).
		WithReadinessProbe(httpProbe("/readyz")).
		WithLivenessProbe(httpProbe("/healthz")).
		WithVolumeMounts(mounts...).
		WithSecurityContext(corev1ac.SecurityContext().
			WithAllowPrivilegeEscalation(false).
			WithReadOnlyRootFilesystem(true).
			WithRunAsNonRoot(true).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")))

	pod := corev1ac.PodSpec().
		WithServiceAccountName(WorkerName).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(workerUID).
			WithRunAsGroup(workerUID).
			WithFSGroup(workerUID).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(container)
	if storageBackend(t) == platformv1.StorageSQLite {
		pod.WithVolumes(corev1ac.Volume().WithName("data").WithPersistentVolumeClaim(
			corev1ac.PersistentVolumeClaimVolumeSource().WithClaimName(DataClaimName)))
	}
	if forwardKey {
		pod.WithVolumes(corev1ac.Volume().WithName("forward-key").WithSecret(
			corev1ac.SecretVolumeSource().WithSecretName(ForwardKeySecret)))
	}

	// SQLite has one writer on a ReadWriteOnce volume: never run two pods at
	// once, even during a rollout. PostgreSQL serves several replicas, so a
	// rollout replaces them one by one and ingest never stops.
	strategy := appsv1ac.DeploymentStrategy().WithType(appsv1.RollingUpdateDeploymentStrategyType)
	if storageBackend(t) == platformv1.StorageSQLite {
		strategy = appsv1ac.DeploymentStrategy().WithType(appsv1.RecreateDeploymentStrategyType)
	}

	return appsv1ac.Deployment(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithSpec(appsv1ac.DeploymentSpec().
			WithReplicas(workerReplicas(t)).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(workerSelector(t))).
			WithStrategy(strategy).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(workerLabels(t)).
				WithSpec(pod)))
}

func httpProbe(path string) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().
		WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString(WebhookPortName))).
		WithPeriodSeconds(10)
}

func desiredService(t *platformv1.Tenant) *corev1ac.ServiceApplyConfiguration {
	return corev1ac.Service(WorkerName, t.NamespaceName()).
		WithLabels(workerLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithSpec(corev1ac.ServiceSpec().
			WithSelector(workerSelector(t)).
			WithPorts(corev1ac.ServicePort().
				WithName(WebhookPortName).
				WithPort(ServicePort).
				WithProtocol(corev1.ProtocolTCP).
				WithTargetPort(intstr.FromString(WebhookPortName))))
}

// channelSecretNames lists the Secrets that a namespace's channels reference.
func channelSecretNames(channels []platformv1.MetaChannel) []string {
	var names []string
	for i := range channels {
		for _, ref := range channelSecretRefs(&channels[i]) {
			names = append(names, ref.Ref.Name)
		}
	}
	return uniqueSorted(names)
}

func uniqueSorted(in []string) []string {
	seen := make(map[string]struct{}, len(in))
	out := make([]string, 0, len(in))
	for _, s := range in {
		if _, ok := seen[s]; ok || s == "" {
			continue
		}
		seen[s] = struct{}{}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// usesMetaApp reports whether any of the channels names a MetaApp: only
// then does the worker get a forwarding key.
func usesMetaApp(channels []platformv1.MetaChannel) bool {
	for i := range channels {
		if channels[i].Spec.AppRef != nil {
			return true
		}
	}
	return false
}

// desiredForwardKeySecret holds the tenant's derived forwarding key in hex,
// owned by the Tenant and labelled as the operator's (so erasure of an
// adopted namespace removes it, see tenantOwns).
func desiredForwardKeySecret(t *platformv1.Tenant, tenantKey []byte) *corev1ac.SecretApplyConfiguration {
	return corev1ac.Secret(ForwardKeySecret, t.NamespaceName()).
		WithLabels(tenantLabels(t)).
		WithOwnerReferences(ownerRef(t)).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{ForwardingKeyKey: []byte(hex.EncodeToString(tenantKey))})
}
