package controllers

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// The operator's marks. On a Namespace, every annotation under MarkPrefix is
// the operator's alone: the admission policy shipped in config/policy
// (namespace_marks.yaml) refuses anyone else setting, changing or removing
// one. They are written at provisioning and hold everything erasure needs,
// so that the orphan sweep can erase a tenant whose Tenant object is gone
// without inferring anything.
const (
	// MarkPrefix is the prefix of the operator's annotations.
	MarkPrefix = "platform.omniflowcrm.com/"
	// AnnotationTenantUID binds a namespace (or a volume) to one Tenant, by
	// UID: the ownership mark. A namespace that carries only the tenant label
	// is not the operator's.
	AnnotationTenantUID = MarkPrefix + "tenant-uid"
	// AnnotationNamespaceOrigin says whether the operator created the
	// namespace (Created: erasure deletes it) or adopted it (Adopted: erasure
	// deletes only the tenant's objects and data in it).
	AnnotationNamespaceOrigin = MarkPrefix + "namespace-origin"
	// AnnotationStorageBackend is the tenant's storage backend.
	AnnotationStorageBackend = MarkPrefix + "storage-backend"
	// AnnotationPostgresDatabase names the tenant's PostgreSQL database and
	// role on the shared server.
	AnnotationPostgresDatabase = MarkPrefix + "postgres-database"
	// AnnotationVolume names the PersistentVolume bound to the tenant's data
	// claim, recorded once bound: once the claim is gone, it is the only
	// place that still names the volume.
	AnnotationVolume = MarkPrefix + "volume"
	// AnnotationReleasedFrom is left, in place of the other marks, on an
	// adopted namespace whose tenant's erasure is complete: the UID of that
	// Tenant. It binds the namespace to nobody, and lets a repeated erasure
	// step report what it did instead of "not the tenant's".
	AnnotationReleasedFrom = MarkPrefix + "released-from"
)

// Values of AnnotationNamespaceOrigin.
const (
	OriginCreated = "Created"
	OriginAdopted = "Adopted"
)

// tenantRef names one Tenant, by name and UID, and its namespace: all that
// the ownership rule and the erasure steps need to know of it.
type tenantRef struct {
	Name      string
	UID       types.UID
	Namespace string
}

func refOf(t *platformv1.Tenant) tenantRef {
	return tenantRef{Name: t.Name, UID: t.UID, Namespace: t.NamespaceName()}
}

// tenantOwns is the one rule that says "this object is the tenant's", used
// by provisioning, erasure and the orphan sweep alike. The object carries
// the tenant's label, and is bound to the Tenant's UID: a cluster-scoped
// object (Namespace, PersistentVolume) by the operator's AnnotationTenantUID
// mark, a namespaced one by the operator's managed-by label and a controller
// reference to the Tenant. A label alone never makes an object the tenant's:
// anyone who may label a namespace could otherwise hand it to the operator's
// erasure.
func tenantOwns(obj client.Object, ref tenantRef) bool {
	if ref.UID == "" || obj.GetLabels()[platformv1.LabelTenant] != ref.Name {
		return false
	}
	if obj.GetNamespace() == "" {
		return obj.GetAnnotations()[AnnotationTenantUID] == string(ref.UID)
	}
	if obj.GetLabels()[platformv1.LabelManagedBy] != platformv1.ManagedByValue {
		return false
	}
	owner := metav1.GetControllerOf(obj)
	return owner != nil && owner.Kind == "Tenant" && owner.UID == ref.UID
}

// namespaceMarks are the operator's marks that provisioning puts on a
// tenant's namespace. origin is kept when the namespace already has one: a
// Tenant re-created under the same name takes over its namespace as it was.
func namespaceMarks(t *platformv1.Tenant, origin string) map[string]string {
	m := map[string]string{
		AnnotationTenantUID:       string(t.UID),
		AnnotationNamespaceOrigin: origin,
		AnnotationStorageBackend:  string(storageBackend(t)),
	}
	if storageBackend(t) == platformv1.StoragePostgreSQL {
		m[AnnotationPostgresDatabase] = postgresDatabase(t)
	}
	return m
}

// operatorMarks lists the operator's annotations on an object.
func operatorMarks(obj client.Object) []string {
	var out []string
	for k := range obj.GetAnnotations() {
		if strings.HasPrefix(k, MarkPrefix) {
			out = append(out, k)
		}
	}
	return out
}
