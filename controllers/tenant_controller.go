package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// ReconcileAnnotation on a Tenant, set to any new value (a timestamp),
// makes the operator look at it at once, for example after a manual fix.
const ReconcileAnnotation = "platform.omniflowcrm.com/reconcile-requested-at"

// TenantReconciler provisions a tenant's namespace, access, storage and
// ingest worker, and reports their state in the Tenant's status.
type TenantReconciler struct {
	client.Client
	// APIReader reads around the cache: the cache only holds our labelled
	// namespaces, and a foreign namespace must be seen to be refused.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	Worker    WorkerConfig
	Route     RouteConfig
	Postgres  PostgresConfig
	// Namespace is the operator's namespace, which holds the forwarding key
	// that tenants' forwarding keys are derived from.
	Namespace string

	// clusterMu guards cluster, the UID of kube-system once read (clusterID).
	clusterMu sync.Mutex
	cluster   string
}

// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=tenants,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=tenants/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=tenants/finalizers,verbs=update
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metachannels;deletionrequests,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metachannels/status;deletionrequests/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=create;get;patch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups="",resources=persistentvolumes,verbs=get;list;watch;patch;delete
// +kubebuilder:rbac:groups="",resources=configmaps;serviceaccounts;services;persistentvolumeclaims,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=networking.k8s.io,resources=networkpolicies,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile brings one Tenant's objects to their desired state.
func (r *TenantReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	var t platformv1.Tenant
	if err := r.Get(ctx, req.NamespacedName, &t); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	log := logf.FromContext(ctx).WithValues("tenant", klog.KObj(&t))
	ctx = logf.IntoContext(ctx, log)
	// The finalizer comes first, before any status change: the patch that adds
	// it returns the stored object. Every tenant that may hold data gets it,
	// so that deleting the Tenant can never skip the erasure.
	if t.DeletionTimestamp.IsZero() && t.Status.ErasedAt == nil {
		if err := r.ensureFinalizer(ctx, &t); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err) // gone meanwhile: nothing to do
		}
	}
	orig := t.DeepCopy()
	defer func() { retErr = errors.Join(retErr, r.patchStatus(ctx, orig, &t)) }()

	t.Status.Namespace = t.NamespaceName()
	if syncSchedule(&t, r.Clock.Now()) {
		r.Recorder.Eventf(&t, nil, corev1.EventTypeNormal, "ErasureRescheduled", "Deactivate",
			"erasure.gracePeriod changed before erasure started: data will be erased at %s", t.Status.ErasureScheduledAt.UTC().Format(time.RFC3339))
	}

	// Deletion and deactivation come before any readiness gate. Deleting a
	// Tenant is a deactivation: the finalizer holds it until the erasure is
	// complete and recorded.
	if !t.DeletionTimestamp.IsZero() || t.Spec.State == platformv1.TenantDeactivated || t.Status.ErasedAt != nil {
		return r.reconcileDeactivated(ctx, &t)
	}
	if t.Status.DeactivatedAt != nil {
		if erasureStarted(&t, r.Clock.Now()) {
			return r.reconcileDeactivated(ctx, &t) // reactivation refused: data is going
		}
		r.cancelDeactivation(&t)
	}
	// The phase is computed afresh on every pass; a phase that cannot go on
	// sets Failed itself.
	t.Status.Phase = ""
	for _, phase := range []func(context.Context, *platformv1.Tenant) (*ctrl.Result, error){
		r.reconcileNamespace, r.reconcileSubjectKey, r.reconcileStorage, r.reconcileDataKey, r.reconcileWorker, r.reconcileRetention, r.reconcileRoute,
	} {
		if res, err := phase(ctx, &t); res != nil || err != nil {
			summarize(&t)
			return resultOrZero(res), err
		}
	}
	summarize(&t)
	return ctrl.Result{}, nil
}

// stop ends a reconcile after a phase that cannot go on yet.
var stop = &ctrl.Result{}

func resultOrZero(r *ctrl.Result) ctrl.Result {
	if r == nil {
		return ctrl.Result{}
	}
	return *r
}

// reconcileNamespace creates the tenant's namespace, or adopts one that
// already carries the tenant's label. A namespace of the same name that is
// not the tenant's is never taken over.
func (r *TenantReconciler) reconcileNamespace(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	name := t.NamespaceName()
	var ns corev1.Namespace
	err := r.Get(ctx, types.NamespacedName{Name: name}, &ns)
	if apierrors.IsNotFound(err) {
		err = r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &ns)
	}
	switch {
	case apierrors.IsNotFound(err):
		ns = corev1.Namespace{}
		ns.Name = name
		ns.Labels = tenantLabels(t)
		// The marks go on with the namespace, in one write: a namespace the
		// operator made is never without them.
		ns.Annotations = namespaceMarks(t, OriginCreated)
		if err := r.Create(ctx, &ns, client.FieldOwner(fieldOwner)); err != nil {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionNamespaceReady, false, platformv1.ReasonApplyFailed, "cannot create namespace: "+err.Error())
			return nil, fmt.Errorf("create namespace %s: %w", name, err)
		}
		logCreated(ctx, "Namespace", &ns)
	case err != nil:
		return nil, fmt.Errorf("get namespace %s: %w", name, err)
	case ns.Labels[platformv1.LabelTenant] != t.Name:
		msg := fmt.Sprintf("namespace %s exists and does not carry the label %s=%s; it is not taken over", name, platformv1.LabelTenant, t.Name)
		if setConflict(t, msg) {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, platformv1.ReasonNamespaceConflict, "Provision", msg)
		}
		// Nothing to retry: labelling the namespace brings us back through the watch.
		return stop, nil
	case ns.DeletionTimestamp != nil:
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionNamespaceReady, false, platformv1.ReasonNamespaceTerminating,
			fmt.Sprintf("namespace %s is being deleted; waiting to create it again", name))
		return &ctrl.Result{RequeueAfter: 10 * time.Second}, nil
	default:
		origin := ns.Annotations[AnnotationNamespaceOrigin]
		if origin == "" {
			// Unmarked: someone else made it (GitOps ahead of its Tenant), or an
			// operator from before the marks; either way it is never deleted.
			origin = OriginAdopted
		}
		if prev := ns.Annotations[AnnotationTenantUID]; prev != "" && prev != string(t.UID) {
			// A Tenant re-created under the same name takes over the namespace of
			// its predecessor, data and all (the sweep's grace period is for that).
			r.Recorder.Eventf(t, &ns, corev1.EventTypeNormal, "NamespaceTakenOver", "Provision",
				"namespace %s of an earlier Tenant %s is taken over with its data", name, t.Name)
			// Its data is sealed under the predecessor's key: the key comes along
			// before the namespace's mark names the new Tenant, so that a crash
			// in between finds the predecessor again on the next pass.
			if err := r.inheritDataKey(ctx, t, types.UID(prev)); err != nil {
				return nil, err
			}
		}
		keepRecordedDatabase(t, &ns)
		if _, err := applyIfChanged(ctx, r.Client, types.NamespacedName{Name: name}, &corev1.Namespace{}, desiredNamespace(t, origin), corev1ac.ExtractNamespace); err != nil {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionNamespaceReady, false, platformv1.ReasonApplyFailed, err.Error())
			return nil, fmt.Errorf("ensure namespace %s: %w", name, err)
		}
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionNamespaceReady, true, platformv1.ReasonReconciled, "")
	return nil, nil
}

// keepRecordedDatabase: a tenant whose status names no database yet (its
// status was lost, or never written) keeps the database its own namespace's
// mark names, so nothing is renamed: the name derived from its UID is only
// for databases not yet made.
func keepRecordedDatabase(t *platformv1.Tenant, ns *corev1.Namespace) {
	recorded := ns.Annotations[AnnotationPostgresDatabase]
	if storageBackend(t) != platformv1.StoragePostgreSQL || recorded == "" || !tenantOwns(ns, refOf(t)) ||
		(t.Status.Storage != nil && t.Status.Storage.DatabaseName != "") {
		return
	}
	t.Status.Storage = &platformv1.StorageStatus{Backend: platformv1.StoragePostgreSQL, DatabaseName: recorded}
}

// setConflict records a namespace conflict and reports whether it is new.
func setConflict(t *platformv1.Tenant, msg string) bool {
	prevReason := ""
	if prev := meta.FindStatusCondition(t.Status.Conditions, platformv1.ConditionNamespaceReady); prev != nil {
		prevReason = prev.Reason // copied: setCondition changes the slice in place
	}
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionNamespaceReady, false, platformv1.ReasonNamespaceConflict, msg)
	t.Status.Phase = platformv1.TenantPhaseFailed
	return prevReason != platformv1.ReasonNamespaceConflict
}

// reconcileStorage ensures the tenant's store: for SQLite, the data claim;
// for PostgreSQL, a role and a database on the shared server.
func (r *TenantReconciler) reconcileStorage(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	backend := storageBackend(t)
	if backend == platformv1.StoragePostgreSQL {
		return r.reconcilePostgres(ctx, t)
	}
	if backend != platformv1.StorageSQLite {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonStorageUnsupported,
			fmt.Sprintf("storage backend %s is not supported by this operator version; use SQLite", backend))
		t.Status.Phase = platformv1.TenantPhaseFailed
		return stop, reconcile.TerminalError(fmt.Errorf("storage backend %s is not supported", backend))
	}
	key := types.NamespacedName{Namespace: t.NamespaceName(), Name: DataClaimName}
	pvc := &corev1.PersistentVolumeClaim{}
	created, err := applyIfChanged(ctx, r.Client, key, pvc, desiredDataClaim(t, r.Worker), corev1ac.ExtractPersistentVolumeClaim)
	if err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonApplyFailed, err.Error())
		return nil, fmt.Errorf("ensure data claim: %w", err)
	}
	if created {
		logCreated(ctx, "PersistentVolumeClaim", pvc)
	}
	t.Status.Storage = &platformv1.StorageStatus{Backend: backend, ClaimName: DataClaimName, VolumeName: pvc.Spec.VolumeName}
	if pvc.Status.Phase == corev1.ClaimBound {
		if err := r.labelVolume(ctx, t, pvc.Spec.VolumeName); err != nil {
			return nil, err
		}
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, true, platformv1.ReasonClaimBound, "")
	} else {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonClaimPending,
			fmt.Sprintf("PersistentVolumeClaim %s is not bound yet", DataClaimName))
	}
	return nil, nil
}

// labelVolume labels and marks the bound volume with its tenant, so that the
// orphan sweep finds it even if the claim and the namespace are gone, and
// records it on the namespace.
func (r *TenantReconciler) labelVolume(ctx context.Context, t *platformv1.Tenant, name string) error {
	if name == "" {
		return nil
	}
	var pv corev1.PersistentVolume
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &pv); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("get volume %s: %w", name, err))
	}
	if pv.Labels[platformv1.LabelTenant] != t.Name || pv.Annotations[AnnotationTenantUID] != string(t.UID) {
		patch := client.MergeFrom(pv.DeepCopy())
		if pv.Labels == nil {
			pv.Labels = map[string]string{}
		}
		if pv.Annotations == nil {
			pv.Annotations = map[string]string{}
		}
		pv.Labels[platformv1.LabelTenant] = t.Name
		pv.Annotations[AnnotationTenantUID] = string(t.UID)
		if err := r.Patch(ctx, &pv, patch); err != nil {
			return fmt.Errorf("label volume %s: %w", name, err)
		}
	}
	// The namespace records the volume too: once the claim is gone, it is
	// what names the volume to the erasure.
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: t.NamespaceName()}, &ns); err != nil {
		return fmt.Errorf("get namespace %s: %w", t.NamespaceName(), err)
	}
	if !tenantOwns(&ns, refOf(t)) {
		return nil
	}
	return r.annotate(ctx, &ns, AnnotationVolume, name)
}

// reconcileWorker ensures the worker's identity, access, network policy,
// Deployment and Service, and reads the Deployment's availability.
func (r *TenantReconciler) reconcileWorker(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	ns := t.NamespaceName()
	var channels platformv1.MetaChannelList
	if err := r.List(ctx, &channels, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list channels: %w", err)
	}
	var requests platformv1.DeletionRequestList
	if err := r.List(ctx, &requests, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("list deletion requests: %w", err)
	}
	// The worker reads only the subject Secrets of requests that pass the rule.
	granted, err := grantedSubjects(ctx, r.APIReader, ns, requests.Items, platformSecretUses(channels.Items, r.Route))
	if err != nil {
		return nil, err
	}
	forwardKey := usesMetaApp(channels.Items)
	if err := r.reconcileForwardKey(ctx, t, forwardKey); err != nil {
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionWorkerReady, false, platformv1.ReasonApplyFailed,
			fmt.Sprintf("Secret %s: %v", ForwardKeySecret, err))
		return nil, err
	}
	key := types.NamespacedName{Namespace: ns, Name: WorkerName}
	dep := &appsv1.Deployment{}
	sa, role, rb, np, svc := &corev1.ServiceAccount{}, &rbacv1.Role{}, &rbacv1.RoleBinding{}, &networkingv1.NetworkPolicy{}, &corev1.Service{}
	steps := []struct {
		kind  string
		live  client.Object
		apply func() (bool, error)
	}{
		{"ServiceAccount", sa, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, sa, desiredServiceAccount(t), corev1ac.ExtractServiceAccount)
		}},
		{"Role", role, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, role, desiredRole(t, workerSecretNames(channels.Items, granted)), rbacv1ac.ExtractRole)
		}},
		{"RoleBinding", rb, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, rb, desiredRoleBinding(t), rbacv1ac.ExtractRoleBinding)
		}},
		{"NetworkPolicy", np, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, np, desiredNetworkPolicy(t), networkingv1ac.ExtractNetworkPolicy)
		}},
		{"Deployment", dep, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, dep, desiredDeployment(t, r.Worker, forwardKey), appsv1ac.ExtractDeployment)
		}},
		{"Service", svc, func() (bool, error) {
			return applyIfChanged(ctx, r.Client, key, svc, desiredService(t), corev1ac.ExtractService)
		}},
	}
	for _, s := range steps {
		created, err := s.apply()
		if err != nil {
			setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionWorkerReady, false, platformv1.ReasonApplyFailed,
				fmt.Sprintf("%s %s: %v", s.kind, WorkerName, err))
			return nil, fmt.Errorf("ensure worker %s: %w", s.kind, err)
		}
		if created {
			logCreated(ctx, s.kind, s.live)
		}
	}
	ok, reason, msg := deploymentAvailable(dep, workerReplicas(t))
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionWorkerReady, ok, reason, msg)
	return nil, nil
}

// deploymentAvailable reads a Deployment's status. A freshly applied
// Deployment has no status yet, which reads as not available.
func deploymentAvailable(dep *appsv1.Deployment, want int32) (bool, string, string) {
	switch {
	case dep.Generation == 0:
		return false, platformv1.ReasonDeploymentUnavailable, "worker Deployment not observed yet"
	case dep.Status.ObservedGeneration < dep.Generation:
		return false, platformv1.ReasonDeploymentUnavailable, "worker Deployment rollout not observed yet"
	case dep.Status.UpdatedReplicas < want || dep.Status.AvailableReplicas < want:
		return false, platformv1.ReasonDeploymentUnavailable,
			fmt.Sprintf("%d of %d worker replicas available", dep.Status.AvailableReplicas, want)
	}
	return true, platformv1.ReasonDeploymentAvailable, fmt.Sprintf("%d worker replicas available", want)
}

// summarize computes Ready and the phase from the other conditions.
func summarize(t *platformv1.Tenant) {
	if c := firstNotTrue(t.Status.Conditions, platformv1.ConditionNamespaceReady, platformv1.ConditionStorageReady,
		platformv1.ConditionWorkerReady, platformv1.ConditionRouteReady); c != nil {
		if t.Status.Phase != platformv1.TenantPhaseFailed {
			t.Status.Phase = platformv1.TenantPhaseProvisioning
		}
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionReady, false, c.Reason, c.Message)
		return
	}
	t.Status.Phase = platformv1.TenantPhaseActive
	setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionReady, true, platformv1.ReasonReconciled, "tenant is provisioned and its worker is available")
}

func (r *TenantReconciler) patchStatus(ctx context.Context, orig, t *platformv1.Tenant) error {
	t.Status.ObservedGeneration = t.Generation
	platformv1.SetHealthConditions(&t.Status.Conditions, t.Generation, platformv1.TenantHealth(t))
	if equality.Semantic.DeepEqual(orig.Status, t.Status) {
		return nil
	}
	// Optimistic lock: a merge patch only carries what changed against orig, so
	// against a stale cached orig it can silently keep fields that should go
	// (a reactivation that must clear the erasure record read before the last
	// step was recorded). A conflict instead retries the pass on a fresh read;
	// every step is idempotent and verified, so running one again is safe.
	if err := r.Status().Patch(ctx, t, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patch tenant status: %w", err))
	}
	// After the write, not before: the optimistic lock lets exactly one pass
	// record the transition, so the Event is never doubled by a retry.
	if becameReady(orig, t) {
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, ReasonProvisioned, "Provision", "tenant is provisioned and its worker is available")
	}
	return nil
}

// SetupWithManager registers the controller and its watches.
func (r *TenantReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Route.kind() == RouteHTTPRoute {
		// The Gateway's verdict arrives in the route's status: watch it. Only
		// here: elsewhere the Gateway API need not be installed.
		b = b.Owns(&gatewayv1.HTTPRoute{})
	}
	return b.
		For(&platformv1.Tenant{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{},
			// An annotation change (ReconcileAnnotation) asks for a pass now.
			predicate.AnnotationChangedPredicate{},
		))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		// The worker's retention and shared-files reports, copied into status.
		Owns(&corev1.ConfigMap{}).
		Owns(&corev1.PersistentVolumeClaim{}).
		Owns(&rbacv1.Role{}).
		Owns(&rbacv1.RoleBinding{}).
		Owns(&networkingv1.NetworkPolicy{}).
		Owns(&networkingv1.Ingress{}).
		// A deleted omniflow-postgres Secret is recreated at once (and the
		// role follows it). Metadata only, so no value sits in the cache, and
		// only that Secret, so that other Secrets cause no passes.
		WatchesMetadata(&corev1.Secret{},
			handler.EnqueueRequestForOwner(mgr.GetScheme(), mgr.GetRESTMapper(), &platformv1.Tenant{}, handler.OnlyControllerOwner()),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
				return o.GetName() == platformv1.PostgresSecretName
			}))).
		// A data key Secret that goes (deleted by hand) is reported at once.
		// It has no owner reference (tenant_datakey.go): mapped by its label.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(namespaceToTenant),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
				return o.GetNamespace() == r.Namespace && o.GetLabels()[labelComponent] == componentDataKey
			}))).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(namespaceToTenant)).
		Watches(&platformv1.MetaChannel{}, handler.EnqueueRequestsFromMapFunc(r.objectToTenant)).
		Watches(&platformv1.DeletionRequest{}, handler.EnqueueRequestsFromMapFunc(r.objectToTenant)).
		WithOptions(controllerOptions(workers)).
		Named("tenant").
		Complete(quietConflicts(r))
}

// namespaceToTenant maps a labelled namespace to its Tenant.
func namespaceToTenant(_ context.Context, o client.Object) []reconcile.Request {
	if name := o.GetLabels()[platformv1.LabelTenant]; name != "" {
		return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: name}}}
	}
	return nil
}

// objectToTenant maps an object in a tenant's namespace to the Tenant,
// through the namespace's label.
func (r *TenantReconciler) objectToTenant(ctx context.Context, o client.Object) []reconcile.Request {
	var ns corev1.Namespace
	if err := r.Get(ctx, types.NamespacedName{Name: o.GetNamespace()}, &ns); err != nil {
		return nil
	}
	return namespaceToTenant(ctx, &ns)
}
