package controllers

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// The tenant's data key (docs/encryption.md) lives in a Secret in the
// operator's namespace, not the tenant's: anyone who may edit the tenant's
// namespace may read its Secrets, and the key must be readable by the
// tenant's worker alone. The Secret has no owner reference on purpose:
// garbage collection must never destroy a key behind the erasure (deleting
// the Tenant CRD would otherwise shred every tenant at once). It is bound to
// its Tenant by the tenant label and the operator's AnnotationTenantUID mark,
// and its name carries the UID too (DataKeySecretName).
const (
	// componentDataKey is the app.kubernetes.io/component of the key Secret
	// and of the Role and RoleBinding that let the worker read it.
	componentDataKey = "data-key"
	// AnnotationKeyVersion on the key Secret is its active version: with it
	// the operator fills status.encryption from the Secret's metadata alone,
	// which is all its cache holds.
	AnnotationKeyVersion = MarkPrefix + "key-version"
	// AnnotationRotationToken on the key Secret is the
	// spec.encryption.rotationToken last honoured, written in the same update
	// as the key version it produced.
	AnnotationRotationToken = MarkPrefix + "rotation-token"
	// EnvDataKeySecret tells the worker where its key is: namespace/name.
	EnvDataKeySecret = "OMNIFLOW_DATA_KEY_SECRET" //nolint:gosec // G101: the name of a variable that names a Secret, not a credential
	dataKeyPrefix    = "tenant-key-"
)

// DataKeySecretName is the name of a tenant's key Secret, and of the Role and
// RoleBinding beside it: bound to the Tenant's UID, so that a Tenant
// re-created under the same name never gets its predecessor's key.
func DataKeySecretName(tenant string, uid types.UID) string {
	sum := sha256.Sum256([]byte(uid))
	suffix := "-" + hex.EncodeToString(sum[:5])
	// A Secret's name is at most 253 characters.
	if limit := 253 - len(dataKeyPrefix) - len(suffix); len(tenant) > limit {
		tenant = tenant[:limit]
	}
	return dataKeyPrefix + tenant + suffix
}

// dataKeyLabels mark the key Secret and its access objects.
func dataKeyLabels(name string) map[string]string {
	return map[string]string{
		platformv1.LabelTenant:    name,
		platformv1.LabelManagedBy: platformv1.ManagedByValue,
		labelComponent:            componentDataKey,
	}
}

// ownsKey is tenantOwns for the key Secret, which lives in the operator's
// namespace without an owner reference: the tenant label, the operator's
// managed-by label and the UID mark (nobody but the platform admin and the
// operator may write Secrets in the operator's namespace).
func ownsKey(obj client.Object, ref tenantRef) bool {
	l := obj.GetLabels()
	return ref.UID != "" && l[platformv1.LabelTenant] == ref.Name && l[platformv1.LabelManagedBy] == platformv1.ManagedByValue &&
		l[labelComponent] == componentDataKey && obj.GetAnnotations()[AnnotationTenantUID] == string(ref.UID)
}

// dataKeyPlan is what reconcileDataKey does with the key Secret.
type dataKeyPlan int

const (
	keyKeep    dataKeyPlan = iota // in place, nothing asked of it
	keyCreate                     // never made: make it
	keyRotate                     // a new rotation token: add a version
	keyLost                       // made once and gone: never made again
	keyForeign                    // a Secret of its name that is not the tenant's
)

// planDataKey decides from the Secret's metadata (nil: not found) and the
// Tenant what to do. A key is created once: a key that status says existed
// and is gone is reported, not replaced, since a new key would make the data
// sealed under the old one unreadable without anyone noticing.
func planDataKey(t *platformv1.Tenant, ref tenantRef, secret client.Object) dataKeyPlan {
	switch {
	case secret == nil && t.Status.Encryption != nil && t.Status.Encryption.KeyVersion > 0:
		return keyLost
	case secret == nil:
		return keyCreate
	case !ownsKey(secret, ref):
		return keyForeign
	case t.Spec.Encryption.RotationToken != "" && secret.GetAnnotations()[AnnotationRotationToken] != t.Spec.Encryption.RotationToken:
		return keyRotate
	}
	return keyKeep
}

// reconcileDataKey creates the tenant's data key once, rotates it when
// spec.encryption.rotationToken asks, lets the tenant's worker read it, and
// shows it in status.encryption. The key's value is never logged, never in
// an Event or a CR field, and never in the operator's cache (metadata only;
// the value is read around the cache, for a rotation).
func (r *TenantReconciler) reconcileDataKey(ctx context.Context, t *platformv1.Tenant) (*ctrl.Result, error) {
	if r.Namespace == "" {
		t.Status.Encryption = nil // no namespace of its own: no data keys (tests of other areas)
		return nil, nil
	}
	ref := refOf(t)
	key := types.NamespacedName{Namespace: r.Namespace, Name: DataKeySecretName(t.Name, t.UID)}
	live, err := r.keyMetadata(ctx, key)
	if err != nil {
		return nil, err
	}
	switch planDataKey(t, ref, live) {
	case keyLost:
		msg := fmt.Sprintf("the data key Secret %s is gone: it is not made again, since a new key could not read what the lost one sealed; restore it from a backup of namespace %s", key, key.Namespace)
		if c := meta.FindStatusCondition(t.Status.Conditions, platformv1.ConditionStorageReady); c == nil || c.Reason != platformv1.ReasonDataKeyMissing {
			r.Recorder.Eventf(t, nil, corev1.EventTypeWarning, platformv1.ReasonDataKeyMissing, "Provision", msg)
		}
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonDataKeyMissing, msg)
		t.Status.Phase = platformv1.TenantPhaseFailed
		return stop, nil // the Secret's return brings us back through the watch
	case keyForeign:
		setCondition(&t.Status.Conditions, t.Generation, platformv1.ConditionStorageReady, false, platformv1.ReasonConflict,
			fmt.Sprintf("Secret %s exists and is not this tenant's data key; it is left alone", key))
		t.Status.Phase = platformv1.TenantPhaseFailed
		return stop, nil
	case keyCreate:
		if live, err = r.createDataKey(ctx, t, key); err != nil {
			return nil, err
		}
	case keyRotate:
		if live, err = r.rotateDataKey(ctx, t, key); err != nil {
			return nil, err
		}
	case keyKeep:
	}
	if err := r.grantDataKey(ctx, t, key.Name); err != nil {
		return nil, err
	}
	version, _ := strconv.ParseInt(live.GetAnnotations()[AnnotationKeyVersion], 10, 32)
	enc := &platformv1.EncryptionStatus{
		KeySecret: key.String(), KeyVersion: int32(version), RotationToken: live.GetAnnotations()[AnnotationRotationToken],
	}
	if prev := t.Status.Encryption; prev != nil && prev.KeySecret == enc.KeySecret {
		// The worker's progress stays as last reported (reconcileRetention reads
		// the report again) and is weighed against the key version just read.
		enc.SealedVersion = prev.SealedVersion
	}
	t.Status.Encryption = settleEncryption(enc)
	return nil, nil
}

// settleEncryption derives fullyEncrypted: every record is under the version
// new records are sealed with. The operator decides it from the two versions
// rather than taking the worker's word, so that right after a rotation the
// tenant is not shown fully encrypted until the worker's pass reached it.
func settleEncryption(enc *platformv1.EncryptionStatus) *platformv1.EncryptionStatus {
	if enc != nil {
		enc.FullyEncrypted = enc.SealedVersion > 0 && enc.SealedVersion == enc.KeyVersion
	}
	return enc
}

// encryptionProgress copies the worker's encryption report into status.encryption:
// the version its last complete pass sealed the store under. A report that does not
// decode, or claims a version the key does not have yet, is ignored and the last one
// kept: the worker's word is not trusted to write the Tenant's status as it likes.
func encryptionProgress(enc *platformv1.EncryptionStatus, doc string) *platformv1.EncryptionStatus {
	if enc == nil || doc == "" {
		return settleEncryption(enc)
	}
	var rep workerreport.Encryption
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.DisallowUnknownFields()
	if dec.Decode(&rep) == nil && rep.SealedVersion >= 0 && rep.SealedVersion <= int64(enc.KeyVersion) {
		enc.SealedVersion = int32(rep.SealedVersion) //nolint:gosec // G115: within 0..KeyVersion, an int32, checked above
	}
	return settleEncryption(enc)
}

// keyMetadata reads the key Secret's metadata from the cache; nil when it
// does not exist. A miss is checked around the cache before it counts, so
// that a key just made and not yet cached is never reported lost.
func (r *TenantReconciler) keyMetadata(ctx context.Context, key types.NamespacedName) (client.Object, error) {
	for _, reader := range []client.Reader{r.Client, r.APIReader} {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Secret"))
		err := reader.Get(ctx, key, m)
		if err == nil {
			return m, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("get data key %s: %w", key, err)
		}
	}
	return nil, nil
}

// createDataKey makes the tenant's key Secret: version 1, active, and the
// index key. An existing Secret is never replaced.
func (r *TenantReconciler) createDataKey(ctx context.Context, t *platformv1.Tenant, key types.NamespacedName) (client.Object, error) {
	data, err := datakey.NewSecretData(rand.Reader, nil)
	if err != nil {
		return nil, err
	}
	ann := map[string]string{AnnotationTenantUID: string(t.UID), AnnotationKeyVersion: "1"}
	if tok := t.Spec.Encryption.RotationToken; tok != "" {
		ann[AnnotationRotationToken] = tok // a fresh key answers the token already
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: dataKeyLabels(t.Name), Annotations: ann},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
	if err := r.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create data key %s: %w (made meanwhile; looking again)", key, err)
		}
		return nil, fmt.Errorf("create data key %s: %w", key, err)
	}
	logCreated(ctx, "Secret", secret)
	return secret, nil
}

// inheritDataKey gives a Tenant that takes over its predecessor's namespace
// (same name, another UID) the predecessor's key ring, when it takes over the
// data sealed under it: the SQLite volume lives in the namespace. (A
// PostgreSQL database is bound to the old Tenant's UID and is not taken over:
// the new Tenant gets its own database and a fresh key, and the sweep erases
// the old ones.) The copy is made under the new Tenant's key name and mark
// before the predecessor's Secret is deleted: a crash in between leaves two
// copies, of which the orphan sweep destroys the predecessor's after its grace
// period; never none. Without a predecessor's key (destroyed, or never made)
// the tenant gets a fresh key as usual.
func (r *TenantReconciler) inheritDataKey(ctx context.Context, t *platformv1.Tenant, predecessor types.UID) error {
	if r.Namespace == "" || storageBackend(t) != platformv1.StorageSQLite {
		return nil
	}
	prevKey := types.NamespacedName{Namespace: r.Namespace, Name: DataKeySecretName(t.Name, predecessor)}
	var prev corev1.Secret
	if err := r.APIReader.Get(ctx, prevKey, &prev); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("read the earlier Tenant's data key %s: %w", prevKey, err))
	}
	if !ownsKey(&prev, tenantRef{Name: t.Name, UID: predecessor}) || prev.DeletionTimestamp != nil {
		return nil
	}
	key := types.NamespacedName{Namespace: r.Namespace, Name: DataKeySecretName(t.Name, t.UID)}
	var live corev1.Secret
	err := r.APIReader.Get(ctx, key, &live)
	switch {
	case apierrors.IsNotFound(err):
		ann := map[string]string{AnnotationTenantUID: string(t.UID)}
		for _, k := range []string{AnnotationKeyVersion, AnnotationRotationToken} {
			if v, ok := prev.Annotations[k]; ok {
				ann[k] = v
			}
		}
		secret := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: key.Name, Namespace: key.Namespace, Labels: dataKeyLabels(t.Name), Annotations: ann},
			Type:       corev1.SecretTypeOpaque,
			Data:       prev.Data,
		}
		if err := r.Create(ctx, secret, client.FieldOwner(fieldOwner)); err != nil {
			return fmt.Errorf("take over data key %s as %s: %w", prevKey, key, err)
		}
		logf.FromContext(ctx).Info("Data key taken over from the earlier Tenant", "from", prevKey.String(), "secret", key.String())
		r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "DataKeyTakenOver", "Provision",
			"the data key of an earlier Tenant %s is taken over with its data, as %s", t.Name, key)
	case err != nil:
		return fmt.Errorf("get data key %s: %w", key, err)
	case !ownsKey(&live, refOf(t)) || !maps.EqualFunc(live.Data, prev.Data, bytes.Equal):
		// Not the copy a crashed pass made: the predecessor's key is left to the
		// sweep (reconcileDataKey reports a foreign Secret).
		return nil
	}
	uid := prev.UID
	if err := r.Delete(ctx, &prev, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete the earlier Tenant's data key %s: %w", prevKey, err)
	}
	return nil
}

// rotateDataKey adds a key version, makes it active and records the token
// that asked for it, in one write conditional on the Secret read just before
// (a conflict retries the pass on a fresh read: never two versions for one
// token).
func (r *TenantReconciler) rotateDataKey(ctx context.Context, t *platformv1.Tenant, key types.NamespacedName) (client.Object, error) {
	var secret corev1.Secret
	if err := r.APIReader.Get(ctx, key, &secret); err != nil {
		return nil, fmt.Errorf("read data key %s for rotation: %w", key, err)
	}
	data, version, err := datakey.Rotate(secret.Data, rand.Reader, nil)
	if err != nil {
		return nil, fmt.Errorf("rotate data key %s: %w", key, err)
	}
	// A patch with the read's resourceVersion: the operator's Role grants
	// patch, not update, on Secrets.
	patch := client.MergeFromWithOptions(secret.DeepCopy(), client.MergeFromWithOptimisticLock{})
	secret.Data = data
	secret.Annotations[AnnotationKeyVersion] = strconv.FormatUint(uint64(version), 10)
	secret.Annotations[AnnotationRotationToken] = t.Spec.Encryption.RotationToken
	if err := r.Patch(ctx, &secret, patch, client.FieldOwner(fieldOwner)); err != nil {
		return nil, fmt.Errorf("rotate data key %s: %w", key, err)
	}
	logf.FromContext(ctx).Info("Data key rotated", "secret", key.String(), "keyVersion", version)
	r.Recorder.Eventf(t, nil, corev1.EventTypeNormal, "KeyRotated", "Rotate",
		"data key rotated to version %d (rotationToken %s); new records are sealed with it", version, t.Spec.Encryption.RotationToken)
	return &secret, nil
}

// grantDataKey lets the tenant's worker ServiceAccount get, list and watch
// its key Secret by name, in the operator's namespace, and nothing else
// there. A list or watch under resourceNames is allowed only when it selects
// that one object (fieldSelector metadata.name).
func (r *TenantReconciler) grantDataKey(ctx context.Context, t *platformv1.Tenant, name string) error {
	role, rb := &rbacv1.Role{}, &rbacv1.RoleBinding{}
	key := types.NamespacedName{Namespace: r.Namespace, Name: name}
	if _, err := applyIfChanged(ctx, r.Client, key, role, desiredDataKeyRole(t, r.Namespace, name), rbacv1ac.ExtractRole); err != nil {
		return fmt.Errorf("ensure data key Role %s: %w", key, err)
	}
	if _, err := applyIfChanged(ctx, r.Client, key, rb, desiredDataKeyRoleBinding(t, r.Namespace, name), rbacv1ac.ExtractRoleBinding); err != nil {
		return fmt.Errorf("ensure data key RoleBinding %s: %w", key, err)
	}
	return nil
}

// desiredDataKeyRole and desiredDataKeyRoleBinding are owned by the Tenant
// (unlike the key Secret): they hold no data, and may go with it.
func desiredDataKeyRole(t *platformv1.Tenant, ns, name string) *rbacv1ac.RoleApplyConfiguration {
	return rbacv1ac.Role(name, ns).
		WithLabels(dataKeyLabels(t.Name)).
		WithOwnerReferences(ownerRef(t)).
		WithRules(rbacv1ac.PolicyRule().
			WithAPIGroups("").
			WithResources("secrets").
			WithResourceNames(name).
			WithVerbs("get", "list", "watch"))
}

func desiredDataKeyRoleBinding(t *platformv1.Tenant, ns, name string) *rbacv1ac.RoleBindingApplyConfiguration {
	return rbacv1ac.RoleBinding(name, ns).
		WithLabels(dataKeyLabels(t.Name)).
		WithOwnerReferences(ownerRef(t)).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup("rbac.authorization.k8s.io").WithKind("Role").WithName(name)).
		WithSubjects(rbacv1ac.Subject().WithKind("ServiceAccount").WithName(WorkerName).WithNamespace(t.NamespaceName()))
}

// dataKeyEnv tells the worker where its key is; nothing without data keys.
func dataKeyEnv(t *platformv1.Tenant, cfg WorkerConfig) []*corev1ac.EnvVarApplyConfiguration {
	if cfg.DataKeyNamespace == "" {
		return nil
	}
	return []*corev1ac.EnvVarApplyConfiguration{corev1ac.EnvVar().WithName(EnvDataKeySecret).
		WithValue(cfg.DataKeyNamespace + "/" + DataKeySecretName(t.Name, t.UID))}
}

// recordedDataKey is where status says the tenant's key was made: the
// erasure looks there, not only where this operator keeps keys now (it may
// have been moved to another namespace since), so that it never records
// "NotFound" of a key that exists elsewhere.
func recordedDataKey(t *platformv1.Tenant) types.NamespacedName {
	if t.Status.Encryption == nil {
		return types.NamespacedName{}
	}
	ns, name, ok := strings.Cut(t.Status.Encryption.KeySecret, "/")
	if !ok || ns == "" || name == "" {
		return types.NamespacedName{}
	}
	return types.NamespacedName{Namespace: ns, Name: name}
}

// destroyKey is the erasure's DestroyKey step: it deletes the tenant's key
// Secret, and the Role and RoleBinding that let the worker read it, and
// verifies with an uncached GET that the key is gone. From then on no copy
// of the tenant's store (a snapshot, a backup, a volume that outlives its
// deletion) can be read by the worker's code.
func (r *TenantReconciler) destroyKey(ctx context.Context, tgt *erasureTarget) (string, bool, error) {
	key := tgt.DataKey
	if key.Name == "" {
		if r.Namespace == "" {
			return "no data key was recorded, and the operator runs without a namespace of its own to keep one in", true, nil
		}
		key = types.NamespacedName{Namespace: r.Namespace, Name: DataKeySecretName(tgt.Name, tgt.UID)}
	}
	var pending []string
	for _, obj := range []client.Object{&rbacv1.RoleBinding{}, &rbacv1.Role{}} {
		state, err := r.deleteOwned(ctx, tgt.tenantRef, key, obj)
		if err != nil {
			return "", false, err
		}
		if state == ownedPending {
			pending = append(pending, kindOf(obj))
		}
	}
	var secret corev1.Secret
	err := r.APIReader.Get(ctx, key, &secret)
	switch {
	case apierrors.IsNotFound(err) && len(pending) == 0:
		return "Secret " + key.String() + " (the data key): GET returns NotFound; its Role and RoleBinding not found", true, nil
	case apierrors.IsNotFound(err):
	case err != nil:
		return "", false, fmt.Errorf("get data key %s: %w", key, err)
	case !ownsKey(&secret, tgt.tenantRef):
		return notTheTenants("Secret", key.String()), true, nil
	case secret.DeletionTimestamp == nil:
		uid := secret.UID
		if err := r.Delete(ctx, &secret, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
			return "", false, fmt.Errorf("delete data key %s: %w", key, err)
		}
	}
	return fmt.Sprintf("waiting for the data key Secret %s and its access (%v) to be gone", key, pending), false, nil
}
