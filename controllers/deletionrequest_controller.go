package controllers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

var (
	deletionRequestsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omniflow_deletion_requests_total",
		Help: "DeletionRequests that reached a final phase, by result (completed, refused, failed).",
	}, []string{"result"})
	deletionRequestsAtRisk = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "omniflow_deletion_requests_at_risk_total",
		Help: "DeletionRequests that were still unfinished 3 days before their 30-day deadline.",
	})

	// A counter cannot say how many are at risk now; an alert needs that.
	deletionRequestsAtRiskNow = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "omniflow_deletion_requests_at_risk",
		Help: "Unfinished DeletionRequests less than 3 days before their 30-day deadline (or past it), by tenant namespace.",
	}, []string{"namespace"})
)

func init() {
	metrics.Registry.MustRegister(deletionRequestsTotal, deletionRequestsAtRisk, deletionRequestsAtRiskNow)
}

// atRiskRequests are the requests the gauge counts. Every request is
// reconciled when the operator starts, so a new leader rebuilds the set.
var atRiskRequests = &requestSet{keys: map[types.NamespacedName]bool{}}

type requestSet struct {
	mu   sync.Mutex
	keys map[types.NamespacedName]bool
}

// mark records whether one request is at risk and republishes its
// namespace's count; a namespace with none has no series.
func (s *requestSet) mark(key types.NamespacedName, atRisk bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.keys[key] == atRisk {
		return
	}
	if atRisk {
		s.keys[key] = true
	} else {
		delete(s.keys, key)
	}
	n := 0
	for k := range s.keys {
		if k.Namespace == key.Namespace {
			n++
		}
	}
	if n == 0 {
		deletionRequestsAtRiskNow.DeleteLabelValues(key.Namespace)
		return
	}
	deletionRequestsAtRiskNow.WithLabelValues(key.Namespace).Set(float64(n))
}

// DeletionRequestReconciler is the operator's half of a DeletionRequest: it
// refuses requests outside a tenant's namespace, requests whose subject Secret
// is not one (see deletionrequest_subject.go) and requests for a channel the
// tenant does not have; it keeps the GDPR clock (receivedAt, a 30-day deadline,
// an alarm 3 days before it), sums the worker's report up in Ready and counts
// each outcome once, deletes the subject's Secret once the request is finished
// and the request itself after its TTL. The erasure is done by the tenant's
// worker, the only component that can reach the tenant's store.
//
// Status has two writers, each with fields of its own: the operator writes
// receivedAt, deadline, the phases Pending and Refused and the conditions Ready
// and AtRisk; the worker writes the phases Running, Completed and Failed, the
// counts, subjectRef, confirmationCode and the condition SubjectErased. Both
// patch with an optimistic lock, so that neither ever overwrites the other's
// conditions with a stale list.
type DeletionRequestReconciler struct {
	client.Client
	// APIReader reads subject Secrets, which the cache does not hold.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Clock     clock.PassiveClock
	// Route says which TLS Secret the tenant Ingresses use: never a subject.
	Route RouteConfig
}

// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=deletionrequests,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=deletionrequests/status,verbs=get;patch;update
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;delete

// Reconcile keeps one DeletionRequest's clock and outcome.
func (r *DeletionRequestReconciler) Reconcile(ctx context.Context, req ctrl.Request) (_ ctrl.Result, retErr error) {
	var dr platformv1.DeletionRequest
	if err := r.Get(ctx, req.NamespacedName, &dr); err != nil {
		if apierrors.IsNotFound(err) {
			atRiskRequests.mark(req.NamespacedName, false)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	ctx = logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("deletionRequest", klog.KObj(&dr)))
	orig := dr.DeepCopy()
	defer func() { retErr = errors.Join(retErr, r.patchStatus(ctx, orig, &dr)) }()
	now := r.Clock.Now()

	r.receive(&dr, now)
	var wake time.Duration
	if !dr.Finished() {
		var err error
		if wake, err = r.admit(ctx, &dr, now); err != nil {
			return ctrl.Result{}, err
		}
	}
	if dr.Finished() {
		return r.finished(ctx, &dr, now)
	}
	if alarm := r.checkDeadline(&dr, now); wake == 0 || alarm < wake {
		wake = alarm
	}
	return ctrl.Result{RequeueAfter: wake}, nil
}

// receive starts the clock once.
func (r *DeletionRequestReconciler) receive(dr *platformv1.DeletionRequest, now time.Time) {
	if dr.Status.ReceivedAt != nil {
		return
	}
	at := metav1.NewTime(now.UTC().Truncate(time.Second))
	dr.Status.ReceivedAt = &at
	dr.Status.Deadline = ptrTime(at.Add(platformv1.DeletionDeadline))
	r.Recorder.Eventf(dr, nil, corev1.EventTypeNormal, "Received", "Receive",
		"deletion request received; it must be answered by %s", dr.Status.Deadline.UTC().Format(time.RFC3339))
}

// cacheCatchUp is when to look again at a request whose tenant the API server
// knows and the cache does not yet.
const cacheCatchUp = time.Second

// admit decides on an open request: refuse it, wait (for its subject Secret, or
// for a deactivated tenant's erasure), or accept it for the worker (Pending). It
// returns when to look again while waiting for the Secret.
func (r *DeletionRequestReconciler) admit(ctx context.Context, dr *platformv1.DeletionRequest, now time.Time) (time.Duration, error) {
	ct, err := lookupTenant(ctx, r.Client, dr.Namespace)
	if err != nil {
		return 0, err
	}
	if !ct.servedBy(dr.Namespace) {
		// A refusal is final, and the cache may not have seen yet a namespace or
		// Tenant created moments ago (at the operator's start, or a manifest that
		// creates a tenant and a request together): refuse only on what the API
		// server says, and while the two disagree look again shortly.
		live, err := lookupTenant(ctx, r.APIReader, dr.Namespace)
		if err != nil {
			return 0, err
		}
		if live.servedBy(dr.Namespace) {
			return cacheCatchUp, nil
		}
		r.refuse(dr, now, platformv1.ReasonNotATenantNamespace,
			"refused: namespace "+dr.Namespace+" is not a tenant's namespace, so no tenant's data can be erased here")
		return 0, nil
	}
	if dr.Status.Phase == platformv1.DeletionRunning {
		// The worker has read the subject and is erasing: admitted already.
		r.waitForWorker(dr, ct.Tenant)
		return 0, nil
	}
	var channels platformv1.MetaChannelList
	if err := r.List(ctx, &channels, client.InNamespace(dr.Namespace)); err != nil {
		return 0, fmt.Errorf("list channels: %w", err)
	}
	if reason, _ := channelRefusal(dr, channels.Items); reason != "" {
		// As above: the cache may not have seen yet a channel created moments ago
		// (one manifest holding the channel and the request), so refuse only on
		// the API server's word, and while the two disagree look again shortly.
		live, err := r.liveChannel(ctx, dr)
		if err != nil {
			return 0, err
		}
		reason, msg := channelRefusal(dr, live)
		if reason == "" {
			return cacheCatchUp, nil
		}
		r.refuse(dr, now, reason, msg)
		return 0, nil
	}
	secret, err := readSubjectSecret(ctx, r.APIReader, dr)
	if err != nil {
		return 0, err
	}
	reason, msg := subjectRefusal(dr, secret, platformSecretUses(channels.Items, r.Route))
	if reason == "" && dr.Status.Phase == "" {
		// Accepting grants the worker the Secret and has the operator delete it
		// once the request is finished: the credentials Secret of a channel the
		// cache has not seen yet must not pass for a subject Secret. Accept only
		// on the API server's list of the tenant's channels (once: later passes
		// check again against the cache, which has caught up by then).
		var live platformv1.MetaChannelList
		if err := r.APIReader.List(ctx, &live, client.InNamespace(dr.Namespace)); err != nil {
			return 0, fmt.Errorf("list channels: %w", err)
		}
		reason, msg = subjectRefusal(dr, secret, platformSecretUses(live.Items, r.Route))
	}
	if reason == platformv1.ReasonSubjectSecretMissing {
		// Meta's callback creates the Secret right after the request, and a
		// manifest may list them in any order: wait a little, then refuse.
		if left := dr.Status.ReceivedAt.Add(platformv1.SubjectSecretGrace).Sub(now); left > 0 {
			setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, reason, msg)
			return min(left, subjectSecretPoll), nil
		}
		msg = "refused: " + msg
	}
	if reason != "" {
		r.refuse(dr, now, reason, msg)
		return 0, nil
	}
	if dr.Status.Phase == "" {
		dr.Status.Phase = platformv1.DeletionPending
	}
	r.waitForWorker(dr, ct.Tenant)
	return 0, nil
}

// subjectSecretPoll: subject Secrets are not watched (the cache holds only the
// platform's own Secrets), so a request waiting for one looks again this often.
const subjectSecretPoll = 2 * time.Second

// liveChannel reads the channel spec.channel names from the API server: none
// if there is no such channel.
func (r *DeletionRequestReconciler) liveChannel(ctx context.Context, dr *platformv1.DeletionRequest) ([]platformv1.MetaChannel, error) {
	var ch platformv1.MetaChannel
	err := r.APIReader.Get(ctx, client.ObjectKey{Namespace: dr.Namespace, Name: dr.Spec.Channel}, &ch)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read channel %s: %w", dr.Spec.Channel, err)
	}
	return []platformv1.MetaChannel{ch}, nil
}

// channelRefusal checks spec.channel against the tenant's MetaChannels: an
// unknown channel, or one of another platform, would complete with zero counts,
// which reads as "nothing was stored about this person".
func channelRefusal(dr *platformv1.DeletionRequest, channels []platformv1.MetaChannel) (reason, msg string) {
	if dr.Spec.Channel == "" {
		return "", ""
	}
	for i := range channels {
		if channels[i].Name != dr.Spec.Channel {
			continue
		}
		if channels[i].Spec.Platform != dr.Spec.Platform {
			return platformv1.ReasonUnknownChannel, fmt.Sprintf("refused: spec.channel %s is a %s channel, but spec.platform is %s",
				dr.Spec.Channel, channels[i].Spec.Platform, dr.Spec.Platform)
		}
		return "", ""
	}
	return platformv1.ReasonUnknownChannel, fmt.Sprintf("refused: spec.channel %s names no MetaChannel of this tenant; "+
		"leave spec.channel empty to erase on every %s channel", dr.Spec.Channel, dr.Spec.Platform)
}

func (r *DeletionRequestReconciler) waitForWorker(dr *platformv1.DeletionRequest, t *platformv1.Tenant) {
	msg := "waiting for the tenant's worker to erase the subject's data"
	reason := platformv1.ReasonPending
	if t.Spec.State == platformv1.TenantDeactivated || !t.DeletionTimestamp.IsZero() {
		reason = platformv1.ReasonTenantDeactivated
		msg = "the tenant is deactivated: all of its data, this subject's included, is erased with it"
		if t.Status.ErasureScheduledAt != nil {
			msg += " at " + t.Status.ErasureScheduledAt.UTC().Format(time.RFC3339)
		}
	}
	setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, reason, msg)
}

// refuse records the operator's refusal. msg names fields and Secrets, never
// a Secret's content.
func (r *DeletionRequestReconciler) refuse(dr *platformv1.DeletionRequest, now time.Time, reason, msg string) {
	dr.Status.Phase = platformv1.DeletionRefused
	dr.Status.CompletedAt = ptrTime(now.UTC().Truncate(time.Second))
	setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, reason, msg)
	r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, reason, "Refuse", msg)
}

// refusalReasons are the reasons of a refused request's Ready condition.
var refusalReasons = map[string]bool{
	platformv1.ReasonNotATenantNamespace: true, platformv1.ReasonUnknownChannel: true,
	platformv1.ReasonSubjectSecretMissing: true, platformv1.ReasonNotASubjectSecret: true,
	platformv1.ReasonSubjectSecretInUse: true, platformv1.ReasonRefused: true,
}

// outcome is the result label of a finished request whose Ready condition
// records its outcome, or "" while Ready does not (yet). Only the operator
// writes Ready, so this is the marker that the outcome was counted: it
// survives operator restarts and is written with an optimistic lock.
func outcome(dr *platformv1.DeletionRequest) string {
	c := meta.FindStatusCondition(dr.Status.Conditions, platformv1.ConditionReady)
	if c == nil {
		return ""
	}
	switch dr.Status.Phase {
	case platformv1.DeletionCompleted:
		if c.Status == metav1.ConditionTrue && c.Reason == platformv1.ReasonCompleted {
			return "completed"
		}
	case platformv1.DeletionFailed:
		if c.Reason == platformv1.ReasonFailed {
			return "failed"
		}
	case platformv1.DeletionRefused:
		if refusalReasons[c.Reason] {
			return "refused"
		}
	}
	return ""
}

// finished deals with a request in a final phase: record the outcome in Ready,
// make sure the identifier does not outlive it, and delete it after its TTL.
func (r *DeletionRequestReconciler) finished(ctx context.Context, dr *platformv1.DeletionRequest, now time.Time) (ctrl.Result, error) {
	if dr.Status.CompletedAt == nil {
		dr.Status.CompletedAt = ptrTime(now.UTC().Truncate(time.Second))
	}
	meta.RemoveStatusCondition(&dr.Status.Conditions, platformv1.ConditionAtRisk)
	report := meta.FindStatusCondition(dr.Status.Conditions, platformv1.ConditionSubjectErased)
	atRiskRequests.mark(client.ObjectKeyFromObject(dr), false)
	switch dr.Status.Phase {
	case platformv1.DeletionCompleted:
		msg := "the subject's data is erased; see status.erased"
		if report != nil && report.Message != "" {
			msg = report.Message
		}
		setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, true, platformv1.ReasonCompleted, msg)
	case platformv1.DeletionFailed:
		msg := "the worker could not erase the subject's data; file a new request"
		if report != nil && report.Message != "" {
			msg = report.Message + "; file a new request"
		}
		setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, platformv1.ReasonFailed, msg)
	}
	if err := r.deleteSubject(ctx, dr); err != nil {
		return ctrl.Result{}, err
	}
	ttl := platformv1.DeletionDeadline // the default TTL: 30 days
	if dr.Spec.TTLSecondsAfterFinished != nil {
		ttl = time.Duration(*dr.Spec.TTLSecondsAfterFinished) * time.Second
	}
	expires := dr.Status.CompletedAt.Add(ttl)
	if now.Before(expires) {
		return ctrl.Result{RequeueAfter: expires.Sub(now)}, nil
	}
	logf.FromContext(ctx).Info("Deleting finished deletion request after its TTL")
	if err := r.Delete(ctx, dr, client.Preconditions{UID: &dr.UID}); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("delete finished deletion request: %w", err)
	}
	return ctrl.Result{}, nil
}

// deleteSubject deletes the Secret that names the subject: once the request
// is finished, the identifier has no reason to exist here. Only a Secret that
// passes the subject Secret rule now is deleted, and only once no other open
// request names it.
func (r *DeletionRequestReconciler) deleteSubject(ctx context.Context, dr *platformv1.DeletionRequest) error {
	var channels platformv1.MetaChannelList
	if err := r.List(ctx, &channels, client.InNamespace(dr.Namespace)); err != nil {
		return fmt.Errorf("list channels: %w", err)
	}
	secret, err := readSubjectSecret(ctx, r.APIReader, dr)
	if err != nil || secret == nil {
		return err
	}
	secret.KeyMissing = false // an empty subject Secret goes too
	if reason, _ := subjectRefusal(dr, secret, platformSecretUses(channels.Items, r.Route)); reason != "" {
		return nil
	}
	var others platformv1.DeletionRequestList
	if err := r.List(ctx, &others, client.InNamespace(dr.Namespace)); err != nil {
		return fmt.Errorf("list deletion requests: %w", err)
	}
	for i := range others.Items {
		o := &others.Items[i]
		if o.UID != dr.UID && !o.Finished() && o.Spec.SubjectSecretRef.Name == dr.Spec.SubjectSecretRef.Name {
			// The last request to finish deletes it. Safe with concurrent
			// passes: the cache is only ever behind, and the pass that the
			// last finishing request's own update starts sees all finished.
			return nil
		}
	}
	s := &corev1.Secret{}
	s.Namespace, s.Name = dr.Namespace, dr.Spec.SubjectSecretRef.Name
	if err := r.Delete(ctx, s); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete subject secret: %w", err)
	}
	return nil
}

// checkDeadline raises AtRisk 3 days before the deadline and says when to
// look again.
func (r *DeletionRequestReconciler) checkDeadline(dr *platformv1.DeletionRequest, now time.Time) time.Duration {
	alarm := dr.Status.Deadline.Add(-platformv1.DeletionAtRiskBefore)
	atRiskRequests.mark(client.ObjectKeyFromObject(dr), !now.Before(alarm))
	if now.Before(alarm) {
		setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionAtRisk, false, platformv1.ReasonOnSchedule,
			"deadline "+dr.Status.Deadline.UTC().Format(time.RFC3339))
		return alarm.Sub(now)
	}
	wasAtRisk := meta.IsStatusConditionTrue(dr.Status.Conditions, platformv1.ConditionAtRisk)
	msg := fmt.Sprintf("unfinished and its deadline %s is less than %s away", dr.Status.Deadline.UTC().Format(time.RFC3339), platformv1.DeletionAtRiskBefore)
	setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionAtRisk, true, platformv1.ReasonDeadlineNear, msg)
	if !wasAtRisk {
		deletionRequestsAtRisk.Inc()
		r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, "AtRisk", "Watch", msg)
	}
	return time.Hour
}

// patchStatus writes the operator's fields with an optimistic lock (the
// worker writes the same object), and counts an outcome once it is recorded.
func (r *DeletionRequestReconciler) patchStatus(ctx context.Context, orig, dr *platformv1.DeletionRequest) error {
	dr.Status.ObservedGeneration = dr.Generation
	platformv1.SetHealthConditions(&dr.Status.Conditions, dr.Generation, platformv1.DeletionRequestHealth(dr))
	if equality.Semantic.DeepEqual(orig.Status, dr.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, dr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patch deletion request status: %w", err))
	}
	if result := outcome(dr); result != "" && outcome(orig) == "" {
		deletionRequestsTotal.WithLabelValues(result).Inc()
	}
	return nil
}

// SetupWithManager watches DeletionRequests (their status too: the worker
// reports completion there) and the Tenants and MetaChannels whose state they
// depend on.
func (r *DeletionRequestReconciler) SetupWithManager(mgr ctrl.Manager, workers int) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&platformv1.DeletionRequest{}).
		Watches(&platformv1.Tenant{}, handler.EnqueueRequestsFromMapFunc(r.tenantRequests)).
		// A channel decides whether a request's channel exists and whether its
		// subject Secret is in use: look at the namespace's requests again.
		Watches(&platformv1.MetaChannel{}, handler.EnqueueRequestsFromMapFunc(r.namespaceRequests)).
		WithOptions(controllerOptions(workers)).
		Named("deletionrequest").
		Complete(quietConflicts(r))
}

func (r *DeletionRequestReconciler) tenantRequests(ctx context.Context, o client.Object) []reconcile.Request {
	t, ok := o.(*platformv1.Tenant)
	if !ok {
		return nil
	}
	return r.requestsIn(ctx, t.NamespaceName())
}

func (r *DeletionRequestReconciler) namespaceRequests(ctx context.Context, o client.Object) []reconcile.Request {
	return r.requestsIn(ctx, o.GetNamespace())
}

func (r *DeletionRequestReconciler) requestsIn(ctx context.Context, ns string) []reconcile.Request {
	var drs platformv1.DeletionRequestList
	if err := r.List(ctx, &drs, client.InNamespace(ns)); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(drs.Items))
	for _, d := range drs.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: d.Namespace, Name: d.Name}})
	}
	return out
}
