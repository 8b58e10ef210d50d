// Package healthtable is the table of what kstatus, Flux and Argo CD make of
// each phase and reason of the operator's kinds. It is the single source of
// the README's health table, of the tests that compute kstatus with the real
// library (on objects built here and on objects the operator produced in
// envtest) and of the test of the Argo CD health check (docs/gitops).
package healthtable

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Kinds.
const (
	Tenant          = "Tenant"
	MetaChannel     = "MetaChannel"
	DeletionRequest = "DeletionRequest"
	MetaApp         = "MetaApp"
)

// Row is one state an object of Kind can be in: its phase (none for a
// MetaChannel), its Ready condition, a served MetaChannel's MediaFetching
// reason (Media; "" for every other row) and whether its at-risk condition
// (ErasureAtRisk, AtRisk) is True; Want is what kstatus must compute.
type Row struct {
	Kind   string
	Phase  string
	Ready  metav1.ConditionStatus
	Reason string
	Media  string
	AtRisk bool
	Want   platformv1.Health
	// Note says when a user sees this state, for the README.
	Note string
}

const (
	t = metav1.ConditionTrue
	f = metav1.ConditionFalse
)

// Rows is every state the operator writes, by kind.
var Rows = []Row{
	{Tenant, "Provisioning", f, "Pending", "", false, platformv1.HealthInProgress, "first pass, a condition not yet observed"},
	{Tenant, "Provisioning", f, platformv1.ReasonNamespaceTerminating, "", false, platformv1.HealthInProgress, "a namespace of the same name is still terminating"},
	{Tenant, "Provisioning", f, platformv1.ReasonApplyFailed, "", false, platformv1.HealthInProgress, "an apply failed; retried"},
	{Tenant, "Provisioning", f, platformv1.ReasonClaimPending, "", false, platformv1.HealthInProgress, "the data volume is not bound yet"},
	{Tenant, "Provisioning", f, platformv1.ReasonDatabaseUnavailable, "", false, platformv1.HealthInProgress, "the PostgreSQL server or its admin Secret cannot be used yet; retried"},
	{Tenant, "Provisioning", f, platformv1.ReasonDeploymentUnavailable, "", false, platformv1.HealthInProgress, "the worker is not available yet"},
	{Tenant, "Provisioning", f, platformv1.ReasonHTTPRoutePending, "", false, platformv1.HealthInProgress, "the Gateway has not judged the HTTPRoute yet"},
	{Tenant, "Provisioning", f, platformv1.ReasonHTTPRouteNotAccepted, "", false, platformv1.HealthFailed, "the Gateway refused the HTTPRoute"},
	{Tenant, "Failed", f, platformv1.ReasonNamespaceConflict, "", false, platformv1.HealthFailed, "the namespace exists and is not this tenant's"},
	{Tenant, "Failed", f, platformv1.ReasonStorageUnsupported, "", false, platformv1.HealthFailed, "a storage backend this version cannot provide"},
	{Tenant, "Failed", f, platformv1.ReasonDatabaseConflict, "", false, platformv1.HealthFailed, "the tenant's database name is bound on the server to another Tenant"},
	{Tenant, "Active", t, platformv1.ReasonReconciled, "", false, platformv1.HealthCurrent, "provisioned, worker available"},
	{Tenant, "Deactivated", t, platformv1.ReasonDeactivated, "", false, platformv1.HealthCurrent, "ingest stopped, erasure scheduled (grace period running)"},
	{Tenant, "Erasing", f, "Erasing", "", false, platformv1.HealthInProgress, "erasure running"},
	{Tenant, "Erasing", f, "Erasing", "", true, platformv1.HealthFailed, "erasure not complete a day before its 14-day deadline"},
	{Tenant, "Erasing", f, platformv1.ReasonReactivationRefused, "", false, platformv1.HealthFailed, "spec.state set back to Active after erasure started"},
	{Tenant, "Erased", t, "Erased", "", false, platformv1.HealthCurrent, "all data erased and verified"},
	{Tenant, "Erased", f, platformv1.ReasonReactivationRefused, "", false, platformv1.HealthFailed, "spec.state set back to Active after erasure"},

	{MetaChannel, "", t, platformv1.ReasonChannelAccepted, platformv1.ReasonMediaFetching, false, platformv1.HealthCurrent, "served by the tenant's worker; WhatsApp media fetched with its access token"},
	{MetaChannel, "", t, platformv1.ReasonChannelAccepted, platformv1.ReasonMediaFetchedByURL, false, platformv1.HealthCurrent, "served; Messenger or Instagram attachments fetched from their URLs"},
	{MetaChannel, "", t, platformv1.ReasonChannelAccepted, platformv1.ReasonMediaMetadataOnly, false, platformv1.HealthCurrent, "served; no accessTokenRef: WhatsApp media kept as metadata only (a choice, not a fault)"},
	{MetaChannel, "", t, platformv1.ReasonChannelAccepted, platformv1.ReasonMediaTokenRefused, false, platformv1.HealthCurrent, "served, but Meta refused the access token: fetching paused (Warning Event, metric, alert), messages still ingested"},
	{MetaChannel, "", f, platformv1.ReasonConflict, "", false, platformv1.HealthFailed, "another channel holds its platform id"},
	{MetaChannel, "", f, platformv1.ReasonSecretMissing, "", false, platformv1.HealthFailed, "a referenced Secret does not exist"},
	{MetaChannel, "", f, platformv1.ReasonSecretKeyMissing, "", false, platformv1.HealthFailed, "a referenced Secret lacks the key"},
	{MetaChannel, "", f, platformv1.ReasonSecretValueEmpty, "", false, platformv1.HealthFailed, "a referenced Secret key is empty"},
	{MetaChannel, "", f, platformv1.ReasonNotInTenantNamespace, "", false, platformv1.HealthFailed, "not in a tenant's namespace"},
	{MetaChannel, "", f, platformv1.ReasonTenantNotFound, "", false, platformv1.HealthFailed, "the namespace's Tenant does not exist"},
	{MetaChannel, "", f, platformv1.ReasonTenantDeactivated, "", false, platformv1.HealthFailed, "the tenant is deactivated or erased"},
	{MetaChannel, "", f, platformv1.ReasonMetaAppNotFound, "", false, platformv1.HealthFailed, "spec.appRef names no MetaApp"},
	{MetaChannel, "", f, platformv1.ReasonMetaAppNotReady, "", false, platformv1.HealthFailed, "its MetaApp is not Ready"},

	{MetaApp, "", f, platformv1.ReasonFrontDoorUnavailable, "", false, platformv1.HealthInProgress, "the front door's pods are not all available yet"},
	{MetaApp, "", f, platformv1.ReasonSecretMissing, "", false, platformv1.HealthFailed, "the app secret's or verify token's Secret does not exist"},
	{MetaApp, "", f, platformv1.ReasonSecretKeyMissing, "", false, platformv1.HealthFailed, "a referenced Secret lacks the key"},
	{MetaApp, "", f, platformv1.ReasonSecretValueEmpty, "", false, platformv1.HealthFailed, "a referenced Secret key is empty"},
	{MetaApp, "", t, platformv1.ReasonFrontDoorAvailable, "", false, platformv1.HealthCurrent, "the front door serves the app's callback URL"},

	{DeletionRequest, "", f, platformv1.ReasonSubjectSecretMissing, "", false, platformv1.HealthInProgress, "waiting (a minute at most) for its subject Secret"},
	{DeletionRequest, "Pending", f, platformv1.ReasonPending, "", false, platformv1.HealthInProgress, "waiting for the tenant's worker"},
	{DeletionRequest, "Pending", f, platformv1.ReasonTenantDeactivated, "", false, platformv1.HealthInProgress, "the tenant's erasure will erase the subject too"},
	{DeletionRequest, "Pending", f, platformv1.ReasonPending, "", true, platformv1.HealthFailed, "unfinished 3 days before its 30-day deadline"},
	{DeletionRequest, "Running", f, platformv1.ReasonPending, "", false, platformv1.HealthInProgress, "the worker is erasing"},
	{DeletionRequest, "Completed", t, platformv1.ReasonCompleted, "", false, platformv1.HealthCurrent, "erased, ledger written"},
	{DeletionRequest, "Refused", f, platformv1.ReasonNotATenantNamespace, "", false, platformv1.HealthFailed, "not in a tenant's namespace"},
	{DeletionRequest, "Refused", f, platformv1.ReasonUnknownChannel, "", false, platformv1.HealthFailed, "spec.channel names no channel of the tenant"},
	{DeletionRequest, "Refused", f, platformv1.ReasonNotASubjectSecret, "", false, platformv1.HealthFailed, "the subject Secret is not of the subject type"},
	{DeletionRequest, "Refused", f, platformv1.ReasonSubjectSecretInUse, "", false, platformv1.HealthFailed, "the subject Secret is one the platform uses"},
	{DeletionRequest, "Refused", f, platformv1.ReasonSubjectSecretMissing, "", false, platformv1.HealthFailed, "the subject Secret never appeared"},
	{DeletionRequest, "Failed", f, platformv1.ReasonFailed, "", false, platformv1.HealthFailed, "the worker could not erase; file a new request"},
}

// Key names a row's state: kind, phase, Ready status and reason, media
// reason, at risk.
func (r Row) Key() string {
	return fmt.Sprintf("%s/%s/%s/%s/%s/%v", r.Kind, r.Phase, r.Ready, r.Reason, r.Media, r.AtRisk)
}

// MediaStatus is the status of a MediaFetching condition with the reason: True
// while the worker fetches the channel's media.
func MediaStatus(reason string) metav1.ConditionStatus {
	if reason == platformv1.ReasonMediaFetching || reason == platformv1.ReasonMediaFetchedByURL {
		return t
	}
	return f
}

// KeyOf is the Key of the row an object is in.
func KeyOf(obj client.Object) string {
	var kind, phase string
	var conds []metav1.Condition
	atRisk := ""
	switch o := obj.(type) {
	case *platformv1.Tenant:
		kind, phase, conds, atRisk = Tenant, string(o.Status.Phase), o.Status.Conditions, platformv1.ConditionErasureAtRisk
	case *platformv1.MetaChannel:
		kind, conds = MetaChannel, o.Status.Conditions
	case *platformv1.MetaApp:
		kind, conds = MetaApp, o.Status.Conditions
	case *platformv1.DeletionRequest:
		kind, phase, conds, atRisk = DeletionRequest, string(o.Status.Phase), o.Status.Conditions, platformv1.ConditionAtRisk
	}
	r := Row{Kind: kind, Phase: phase}
	if c := meta.FindStatusCondition(conds, platformv1.ConditionReady); c != nil {
		r.Ready, r.Reason = c.Status, c.Reason
	}
	if c := meta.FindStatusCondition(conds, platformv1.ConditionMediaFetching); c != nil && kind == MetaChannel {
		r.Media = c.Reason
	}
	r.AtRisk = atRisk != "" && meta.IsStatusConditionTrue(conds, atRisk)
	return r.Key()
}

// Object builds an object in the row's state as the operator writes it:
// observed generation, Ready, the at-risk condition, and Reconciling and
// Stalled from the API's health functions.
func (r Row) Object() client.Object {
	om := metav1.ObjectMeta{Name: "x", Generation: 1}
	conds := []metav1.Condition{{Type: platformv1.ConditionReady, Status: r.Ready, Reason: r.Reason, ObservedGeneration: 1}}
	risk := func(typ string) {
		st := f
		if r.AtRisk {
			st = t
		}
		conds = append(conds, metav1.Condition{Type: typ, Status: st, Reason: "Test", ObservedGeneration: 1})
	}
	switch r.Kind {
	case Tenant:
		risk(platformv1.ConditionErasureAtRisk)
		o := &platformv1.Tenant{ObjectMeta: om}
		o.Status.ObservedGeneration, o.Status.Phase, o.Status.Conditions = 1, platformv1.TenantPhase(r.Phase), conds
		platformv1.SetHealthConditions(&o.Status.Conditions, 1, platformv1.TenantHealth(o))
		return o
	case MetaChannel:
		if r.Media != "" {
			conds = append(conds, metav1.Condition{Type: platformv1.ConditionMediaFetching, Status: MediaStatus(r.Media), Reason: r.Media, ObservedGeneration: 1})
		}
		o := &platformv1.MetaChannel{ObjectMeta: om}
		o.Status.ObservedGeneration, o.Status.Conditions = 1, conds
		platformv1.SetHealthConditions(&o.Status.Conditions, 1, platformv1.MetaChannelHealth(o))
		return o
	case MetaApp:
		o := &platformv1.MetaApp{ObjectMeta: om}
		o.Status.ObservedGeneration, o.Status.Conditions = 1, conds
		platformv1.SetHealthConditions(&o.Status.Conditions, 1, platformv1.MetaAppHealth(o))
		return o
	default:
		risk(platformv1.ConditionAtRisk)
		o := &platformv1.DeletionRequest{ObjectMeta: om}
		o.Status.ObservedGeneration, o.Status.Phase, o.Status.Conditions = 1, platformv1.DeletionPhase(r.Phase), conds
		platformv1.SetHealthConditions(&o.Status.Conditions, 1, platformv1.DeletionRequestHealth(o))
		return o
	}
}

// Unstructured converts an object of the operator's API for kstatus and
// the Argo CD health check, with its kind set.
func Unstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("to unstructured: %w", err)
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetAPIVersion(platformv1.GroupVersion.String())
	switch obj.(type) {
	case *platformv1.Tenant:
		u.SetKind(Tenant)
	case *platformv1.MetaChannel:
		u.SetKind(MetaChannel)
	case *platformv1.MetaApp:
		u.SetKind(MetaApp)
	case *platformv1.DeletionRequest:
		u.SetKind(DeletionRequest)
	}
	return u, nil
}

// ArgoCD is the Argo CD health status the health check in docs/gitops must
// return for a kstatus result.
func ArgoCD(h platformv1.Health) string {
	switch h {
	case platformv1.HealthCurrent:
		return "Healthy"
	case platformv1.HealthFailed:
		return "Degraded"
	}
	return "Progressing"
}

// Markdown renders the table as it stands in the README.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| Kind | Phase | Ready (reason) | At risk | kstatus / Flux | Argo CD | When |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range Rows {
		phase, risk := r.Phase, ""
		if phase == "" {
			phase = "-"
		}
		if r.AtRisk {
			risk = "yes"
		}
		ready := fmt.Sprintf("%s (%s)", r.Ready, r.Reason)
		if r.Media != "" {
			ready += fmt.Sprintf("; %s %s (%s)", platformv1.ConditionMediaFetching, MediaStatus(r.Media), r.Media)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Kind, phase, ready, risk, r.Want, ArgoCD(r.Want), r.Note)
	}
	return b.String()
}

// Lookup returns the row with the given Key.
func Lookup(key string) (Row, bool) {
	for _, r := range Rows {
		if r.Key() == key {
			return r, true
		}
	}
	return Row{}, false
}

// Check computes kstatus with the real library on an object as the
// operator wrote it and compares it with the table's row for the object's
// state; the status must describe the object's generation.
func Check(obj client.Object) error {
	key := KeyOf(obj)
	row, ok := Lookup(key)
	if !ok {
		return fmt.Errorf("%s is in a state the health table lacks: %s", obj.GetName(), key)
	}
	u, err := Unstructured(obj)
	if err != nil {
		return err
	}
	if observed, _, _ := unstructured.NestedInt64(u.Object, "status", "observedGeneration"); observed != obj.GetGeneration() {
		return fmt.Errorf("%s: status.observedGeneration %d, metadata.generation %d", obj.GetName(), observed, obj.GetGeneration())
	}
	res, err := status.Compute(u)
	if err != nil {
		return fmt.Errorf("kstatus: %w", err)
	}
	if string(res.Status) != string(row.Want) {
		return fmt.Errorf("%s in %s: kstatus computes %s (%s), the table says %s", obj.GetName(), key, res.Status, res.Message, row.Want)
	}
	return nil
}
