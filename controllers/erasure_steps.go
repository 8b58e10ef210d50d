package controllers

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// erasureTarget is what the erasure steps work on: one tenant's namespace
// and stores, as recorded at provisioning. The Tenant reconciler builds it
// from the Tenant and its namespace's marks (targetForTenant), the orphan
// sweep from the marks alone (targetFromNamespace): both then run the same
// steps.
type erasureTarget struct {
	tenantRef
	// Backend selects the store's erasure (storeErasers).
	Backend platformv1.StorageBackend
	// Database is the PostgreSQL database and role (PostgreSQL only).
	Database string
	// Volume is the PersistentVolume recorded for the data claim (SQLite).
	Volume string
	// DataKey is where the tenant's data key was recorded at provisioning
	// (status.encryption.keySecret); empty: where this operator keeps keys.
	DataKey types.NamespacedName
	// Regarding is what the erasure's Events are about: the Tenant, or the
	// orphaned namespace or volume.
	Regarding runtime.Object
}

// storeErasers is each store's contribution to DeleteStorage: it destroys
// the store's data and verifies that none is left.
var storeErasers = map[platformv1.StorageBackend]func(*TenantReconciler, context.Context, *erasureTarget) (string, bool, error){
	platformv1.StorageSQLite:     (*TenantReconciler).deleteVolume,
	platformv1.StoragePostgreSQL: (*TenantReconciler).dropPostgres,
}

// targetForTenant is the erasure target of a live Tenant. The spec and status
// say what was provisioned; the namespace's mark adds the bound volume,
// which only it may still name. (Whether the namespace was created or
// adopted, DeleteNamespace reads from the namespace itself.)
func (r *TenantReconciler) targetForTenant(ctx context.Context, t *platformv1.Tenant) (*erasureTarget, error) {
	tgt := &erasureTarget{tenantRef: refOf(t), Backend: storageBackend(t), Regarding: t}
	if tgt.Backend == platformv1.StoragePostgreSQL {
		tgt.Database = postgresDatabase(t)
	}
	if t.Status.Storage != nil {
		tgt.Volume = t.Status.Storage.VolumeName
	}
	tgt.DataKey = recordedDataKey(t)
	var ns corev1.Namespace
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: tgt.Namespace}, &ns)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("get namespace %s: %w", tgt.Namespace, err)
	case tenantOwns(&ns, tgt.tenantRef) && ns.Annotations[AnnotationVolume] != "":
		tgt.Volume = ns.Annotations[AnnotationVolume]
	}
	return tgt, nil
}

// targetFromNamespace is the erasure target of an orphaned namespace, read
// from the operator's marks only: nothing is inferred. A namespace whose
// marks do not say how to erase its store is refused.
func targetFromNamespace(ns client.Object) (*erasureTarget, error) {
	a := ns.GetAnnotations()
	tgt := &erasureTarget{
		tenantRef: tenantRef{Name: ns.GetLabels()[platformv1.LabelTenant], UID: types.UID(a[AnnotationTenantUID]), Namespace: ns.GetName()},
		Backend:   platformv1.StorageBackend(a[AnnotationStorageBackend]),
		Database:  a[AnnotationPostgresDatabase],
		Volume:    a[AnnotationVolume],
		Regarding: ns,
	}
	if _, ok := storeErasers[tgt.Backend]; !ok {
		return nil, fmt.Errorf("namespace %s has no usable %s mark (%q): its store cannot be erased", ns.GetName(), AnnotationStorageBackend, tgt.Backend)
	}
	if tgt.Backend == platformv1.StoragePostgreSQL && tgt.Database == "" {
		return nil, fmt.Errorf("namespace %s has no %s mark: its database cannot be named", ns.GetName(), AnnotationPostgresDatabase)
	}
	return tgt, nil
}

// runStep performs one step; done is true once the step is verified
// complete, and verification says what was checked and found (or what it
// is waiting for).
func (r *TenantReconciler) runStep(ctx context.Context, tgt *erasureTarget, s erasureStep) (string, bool, error) {
	logf.FromContext(ctx).V(1).Info("Erasure step", "step", s, "namespace", tgt.Namespace)
	switch s {
	case stepStopIngest:
		return r.stopIngest(ctx, tgt)
	case stepDestroyKey:
		return r.destroyKey(ctx, tgt)
	case stepDeleteWorker:
		return r.deleteWorker(ctx, tgt)
	case stepDeleteStorage:
		erase, ok := storeErasers[tgt.Backend]
		if !ok {
			return "", false, fmt.Errorf("no erasure for storage backend %q", tgt.Backend)
		}
		return erase(r, ctx, tgt)
	case stepDeleteNamespace:
		return r.deleteNamespace(ctx, tgt)
	}
	return "", false, fmt.Errorf("unknown erasure step %q", s)
}

// notTheTenants names an object that exists and is not the tenant's.
func notTheTenants(kind, name string) string {
	return kind + " " + name + " exists and is not the tenant's; left alone"
}

// stopIngest removes the route from Meta and scales the worker to zero:
// with no worker, nothing more is stored.
func (r *TenantReconciler) stopIngest(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	routeGone, err := r.removeRoute(ctx, tgt.tenantRef, tgt.Regarding)
	if err != nil {
		return "", false, fmt.Errorf("remove route: %w", err)
	}
	if !routeGone {
		return "waiting for the route to be gone", false, nil
	}
	key := types.NamespacedName{Namespace: tgt.Namespace, Name: WorkerName}
	var dep appsv1.Deployment
	err = r.APIReader.Get(ctx, key, &dep)
	switch {
	case apierrors.IsNotFound(err):
		return "route removed; Deployment " + key.String() + " not found", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get worker deployment: %w", err)
	case !tenantOwns(&dep, tgt.tenantRef):
		return "route removed; " + notTheTenants("Deployment", key.String()), true, nil
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 0 {
		scale := appsv1ac.Deployment(WorkerName, tgt.Namespace).WithSpec(appsv1ac.DeploymentSpec().WithReplicas(0))
		if err := r.Apply(ctx, scale, client.FieldOwner(fieldOwner+"-erasure"), client.ForceOwnership); err != nil {
			return "", false, fmt.Errorf("scale worker to zero: %w", err)
		}
		return "scaling the worker Deployment to 0", false, nil
	}
	return "route removed; worker Deployment scaled to 0 replicas", true, nil
}

// kindOf is an object's kind for records, from its Go type (typed objects
// read from the API server carry no kind).
func kindOf(obj client.Object) string {
	kind := fmt.Sprintf("%T", obj)
	return kind[strings.LastIndex(kind, ".")+1:]
}

// ownedState is what deleteOwned found.
type ownedState int

const (
	ownedGone    ownedState = iota // not found
	ownedForeign                   // exists and is not the tenant's: left alone
	ownedPending                   // the tenant's, deletion requested
)

// deleteWorker removes the worker and everything that lets it run, and the
// worker's report ConfigMap (it goes with the namespace too, but an adopted
// namespace stays).
func (r *TenantReconciler) deleteWorker(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	var parts, pending []string
	for _, group := range []struct {
		name string
		objs []client.Object
	}{
		{WorkerName, []client.Object{
			&appsv1.Deployment{}, &corev1.Service{}, &networkingv1.NetworkPolicy{},
			&rbacv1.RoleBinding{}, &rbacv1.Role{}, &corev1.ServiceAccount{},
		}},
		{platformv1.WorkerReportName, []client.Object{&corev1.ConfigMap{}}},
	} {
		key := types.NamespacedName{Namespace: tgt.Namespace, Name: group.name}
		var gone, foreign, waiting []string
		for _, obj := range group.objs {
			state, err := r.deleteOwned(ctx, tgt.tenantRef, key, obj)
			if err != nil {
				return "", false, err
			}
			kind := kindOf(obj)
			switch state {
			case ownedGone:
				gone = append(gone, kind)
			case ownedForeign:
				foreign = append(foreign, kind)
			case ownedPending:
				waiting = append(waiting, kind)
			}
		}
		if len(waiting) > 0 {
			pending = append(pending, strings.Join(waiting, ", ")+" "+key.String())
		}
		if len(gone) > 0 {
			parts = append(parts, strings.Join(gone, ", ")+" "+key.String()+" not found")
		}
		if len(foreign) == 1 {
			parts = append(parts, notTheTenants(foreign[0], key.String()))
		} else if len(foreign) > 1 {
			parts = append(parts, strings.Join(foreign, ", ")+" "+key.String()+" exist and are not the tenant's; left alone")
		}
	}
	if len(pending) > 0 {
		return "waiting for " + strings.Join(pending, "; ") + " to be gone", false, nil
	}
	return strings.Join(parts, "; "), true, nil
}

// deleteOwned deletes one object if it is the tenant's and reports what it
// found, read around the cache.
func (r *TenantReconciler) deleteOwned(ctx context.Context, ref tenantRef, key types.NamespacedName, obj client.Object) (ownedState, error) {
	if err := r.APIReader.Get(ctx, key, obj); err != nil {
		if apierrors.IsNotFound(err) {
			return ownedGone, nil
		}
		return ownedGone, fmt.Errorf("get %T %s: %w", obj, key, err)
	}
	if !tenantOwns(obj, ref) {
		return ownedForeign, nil // never destroy what we did not create
	}
	if obj.GetDeletionTimestamp() == nil {
		uid := obj.GetUID()
		if err := r.Delete(ctx, obj, client.PropagationPolicy(metav1.DeletePropagationBackground), client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return ownedPending, fmt.Errorf("delete %T %s: %w", obj, key, err)
		}
	}
	return ownedPending, nil
}

// deleteVolume is SQLite's DeleteStorage: it deletes the data claim and makes
// sure its volume does not outlive it. A Retain reclaim policy is switched
// to Delete first, and a volume left behind is deleted explicitly.
func (r *TenantReconciler) deleteVolume(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	key := types.NamespacedName{Namespace: tgt.Namespace, Name: DataClaimName}
	var pvc corev1.PersistentVolumeClaim
	err := r.APIReader.Get(ctx, key, &pvc)
	var claim string
	switch {
	case err != nil && !apierrors.IsNotFound(err):
		return "", false, fmt.Errorf("get data claim: %w", err)
	case err != nil:
		claim = "PersistentVolumeClaim " + key.String() + " not found"
	case !tenantOwns(&pvc, tgt.tenantRef):
		claim = notTheTenants("PersistentVolumeClaim", key.String())
	default:
		if v := pvc.Spec.VolumeName; v != "" && v != tgt.Volume {
			// Record the volume before the claim goes: once the claim is
			// deleted, the record is the only place that still names it.
			if err := r.recordVolume(ctx, tgt, v); err != nil {
				return "", false, err
			}
			return "recording volume " + v + " before deleting the claim", false, nil
		}
		if err := r.forceReclaimDelete(ctx, pvc.Spec.VolumeName, key); err != nil {
			return "", false, err
		}
		if pvc.DeletionTimestamp == nil {
			uid := pvc.UID
			if err := r.Delete(ctx, &pvc, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				return "", false, fmt.Errorf("delete data claim: %w", err)
			}
		}
		return "waiting for PersistentVolumeClaim " + key.String() + " to be gone", false, nil
	}
	if tgt.Volume == "" {
		return claim + "; no volume was recorded for it", true, nil
	}
	var pv corev1.PersistentVolume
	err = r.APIReader.Get(ctx, types.NamespacedName{Name: tgt.Volume}, &pv)
	switch {
	case apierrors.IsNotFound(err):
		return claim + "; PersistentVolume " + tgt.Volume + " not found", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get volume %s: %w", tgt.Volume, err)
	case !claimedBy(&pv, key) || (pvc.UID != "" && pv.Spec.ClaimRef.UID == pvc.UID):
		// Bound to another claim, or to the claim that is not the tenant's.
		return claim + "; PersistentVolume " + tgt.Volume + " exists and is claimed by another claim, not the tenant's; left alone", true, nil
	}
	if err := r.forceReclaimDelete(ctx, tgt.Volume, key); err != nil {
		return "", false, err
	}
	if pv.DeletionTimestamp == nil {
		uid := pv.UID
		if err := r.Delete(ctx, &pv, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return "", false, fmt.Errorf("delete volume %s: %w", tgt.Volume, err)
		}
	}
	return "waiting for PersistentVolume " + tgt.Volume + " to be gone", false, nil
}

// recordVolume writes the bound volume's name into the namespace's mark,
// where the sweep finds it once the Tenant is gone; the reconciler copies
// it into status too.
func (r *TenantReconciler) recordVolume(ctx context.Context, tgt *erasureTarget, volume string) error {
	var ns corev1.Namespace
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: tgt.Namespace}, &ns); err != nil {
		return fmt.Errorf("get namespace %s: %w", tgt.Namespace, err)
	}
	if tenantOwns(&ns, tgt.tenantRef) {
		if err := r.annotate(ctx, &ns, AnnotationVolume, volume); err != nil {
			return err
		}
	}
	tgt.Volume = volume
	return nil
}

// annotate sets (or, with an empty value, removes) one of the operator's
// marks on an object.
func (r *TenantReconciler) annotate(ctx context.Context, obj client.Object, key, value string) error {
	if obj.GetAnnotations()[key] == value {
		return nil
	}
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	if value == "" {
		delete(ann, key)
	} else {
		ann[key] = value
	}
	obj.SetAnnotations(ann)
	if err := r.Patch(ctx, obj, patch); err != nil {
		return fmt.Errorf("annotate %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
	}
	return nil
}

func claimedBy(pv *corev1.PersistentVolume, claim types.NamespacedName) bool {
	ref := pv.Spec.ClaimRef
	return ref != nil && ref.Namespace == claim.Namespace && ref.Name == claim.Name
}

// forceReclaimDelete makes the claim's volume go with it: with Retain, the
// data would stay on a Released volume after the claim is deleted.
func (r *TenantReconciler) forceReclaimDelete(ctx context.Context, volume string, claim types.NamespacedName) error {
	if volume == "" {
		return nil
	}
	var pv corev1.PersistentVolume
	if err := r.APIReader.Get(ctx, types.NamespacedName{Name: volume}, &pv); err != nil {
		return client.IgnoreNotFound(err)
	}
	if !claimedBy(&pv, claim) || pv.Spec.PersistentVolumeReclaimPolicy == corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	patch := client.MergeFrom(pv.DeepCopy())
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	if err := r.Patch(ctx, &pv, patch); err != nil {
		return fmt.Errorf("set reclaim policy of volume %s to Delete: %w", volume, err)
	}
	return nil
}

// deleteNamespace deletes the tenant's namespace, with its Secrets, channels
// and deletion requests, and waits until it is gone. A namespace the
// operator adopted is kept: only the tenant's objects in it go.
func (r *TenantReconciler) deleteNamespace(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	name := tgt.Namespace
	var ns corev1.Namespace
	err := r.APIReader.Get(ctx, types.NamespacedName{Name: name}, &ns)
	switch {
	case apierrors.IsNotFound(err):
		return "Namespace " + name + " not found", true, nil
	case err != nil:
		return "", false, fmt.Errorf("get namespace: %w", err)
	case ns.Annotations[AnnotationReleasedFrom] == string(tgt.UID) && tgt.UID != "":
		return adoptedKept(name), true, nil // released by an earlier run of this step
	case !tenantOwns(&ns, tgt.tenantRef):
		return "Namespace " + name + " exists and carries no ownership mark of this Tenant; left alone", true, nil
	case ns.Annotations[AnnotationNamespaceOrigin] != OriginCreated:
		return r.releaseAdopted(ctx, tgt, &ns)
	}
	if ns.DeletionTimestamp == nil {
		uid := ns.UID
		if err := r.Delete(ctx, &ns, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return "", false, fmt.Errorf("delete namespace: %w", err)
		}
	}
	return "waiting for Namespace " + name + " to be gone" + namespaceBlockers(&ns), false, nil
}

// releaseAdopted erases the tenant's objects from a namespace the operator
// adopted (its MetaChannels and DeletionRequests, with the subject Secrets
// they own, and the Secrets the operator made for the tenant), then removes
// the operator's marks: the namespace stays, and is no longer the tenant's.
func (r *TenantReconciler) releaseAdopted(ctx context.Context, tgt *erasureTarget, ns *corev1.Namespace) (string, bool, error) {
	var channels platformv1.MetaChannelList
	var requests platformv1.DeletionRequestList
	var secrets corev1.SecretList
	for _, list := range []client.ObjectList{&channels, &requests, &secrets} {
		if err := r.APIReader.List(ctx, list, client.InNamespace(ns.Name)); err != nil {
			return "", false, fmt.Errorf("list %T in %s: %w", list, ns.Name, err)
		}
	}
	// Every channel and request in the tenant's namespace is the tenant's;
	// of the Secrets, only those the operator made for it.
	var objs []client.Object
	for i := range channels.Items {
		objs = append(objs, &channels.Items[i])
	}
	for i := range requests.Items {
		objs = append(objs, &requests.Items[i])
	}
	for i := range secrets.Items {
		if tenantOwns(&secrets.Items[i], tgt.tenantRef) {
			objs = append(objs, &secrets.Items[i])
		}
	}
	var pending []string
	for _, o := range objs {
		pending = append(pending, kindOf(o)+" "+o.GetName())
		if o.GetDeletionTimestamp() == nil {
			if err := r.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return "", false, fmt.Errorf("delete %s %s/%s: %w", kindOf(o), ns.Name, o.GetName(), err)
			}
		}
	}
	if len(pending) > 0 {
		return "Namespace " + ns.Name + " was adopted and is kept; waiting for " + strings.Join(pending, ", ") + " to be gone", false, nil
	}
	patch := client.MergeFrom(ns.DeepCopy())
	for _, k := range operatorMarks(ns) {
		delete(ns.Annotations, k)
	}
	ns.Annotations[AnnotationReleasedFrom] = string(tgt.UID)
	if err := r.Patch(ctx, ns, patch); err != nil {
		return "", false, fmt.Errorf("remove the operator's marks from namespace %s: %w", ns.Name, err)
	}
	return adoptedKept(ns.Name), true, nil
}

func adoptedKept(ns string) string {
	return "Namespace " + ns + " was adopted and is kept: no MetaChannel, DeletionRequest or Secret of the tenant left in it; the operator's marks removed"
}

// namespaceBlockers names what keeps a namespace terminating, so that an SRE
// sees it in the Erasing condition.
func namespaceBlockers(ns *corev1.Namespace) string {
	var why []string
	for _, c := range ns.Status.Conditions {
		if c.Status == corev1.ConditionTrue && strings.HasPrefix(string(c.Type), "Namespace") && c.Type != corev1.NamespaceDeletionDiscoveryFailure {
			why = append(why, c.Message)
		}
	}
	if len(why) == 0 {
		return ""
	}
	return ": " + strings.Join(why, "; ")
}
