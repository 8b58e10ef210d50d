package controllers

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// refuses requests outside a tenant's namespace, keeps the GDPR clock
// (receivedAt, a 30-day deadline, an alarm 3 days before it), deletes the
// subject's Secret once the request is finished and the request itself after
// its TTL. The erasure is done by the tenant's worker, the only component that
// can reach the tenant's store.
type DeletionRequestReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
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
	if !dr.Finished() {
		ct, err := lookupTenant(ctx, r.Client, dr.Namespace)
		if err != nil {
			return ctrl.Result{}, err
		}
		platformOwned, err := r.platformSecret(ctx, dr.Namespace, dr.Spec.SubjectSecretRef.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		switch {
		case !ct.servedBy(dr.Namespace):
			r.finish(&dr, now, platformv1.DeletionRefused, platformv1.ReasonRefused,
				"refused: namespace "+dr.Namespace+" is not a tenant's namespace, so no tenant's data can be erased here")
		case platformOwned:
			r.finish(&dr, now, platformv1.DeletionRefused, platformv1.ReasonRefused,
				"refused: subjectSecretRef names the Secret "+dr.Spec.SubjectSecretRef.Name+
					", which the platform itself uses (a channel's credentials or the subject key); put the identifier in a Secret of its own")
		default:
			r.waitForWorker(&dr, ct.Tenant)
		}
	}
	if dr.Finished() {
		return r.finished(ctx, &dr, now)
	}
	wake := r.checkDeadline(&dr, now)
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
	if dr.Status.Phase == "" {
		dr.Status.Phase = platformv1.DeletionPending
	}
	r.Recorder.Eventf(dr, nil, corev1.EventTypeNormal, "Received", "Receive",
		"deletion request received; it must be answered by %s", dr.Status.Deadline.UTC().Format(time.RFC3339))
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

// finish records a final outcome decided by the operator.
func (r *DeletionRequestReconciler) finish(dr *platformv1.DeletionRequest, now time.Time, phase platformv1.DeletionPhase, reason, msg string) {
	dr.Status.Phase = phase
	dr.Status.CompletedAt = ptrTime(now.UTC().Truncate(time.Second))
	setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, reason, msg)
	deletionRequestsTotal.WithLabelValues("refused").Inc()
	r.Recorder.Eventf(dr, nil, corev1.EventTypeWarning, reason, "Refuse", msg)
}

// finished deals with a request in a final phase: count it once, make sure
// the identifier does not outlive it, and delete it after its TTL.
func (r *DeletionRequestReconciler) finished(ctx context.Context, dr *platformv1.DeletionRequest, now time.Time) (ctrl.Result, error) {
	if dr.Status.CompletedAt == nil {
		dr.Status.CompletedAt = ptrTime(now.UTC().Truncate(time.Second))
	}
	meta.RemoveStatusCondition(&dr.Status.Conditions, platformv1.ConditionAtRisk)
	atRiskRequests.mark(client.ObjectKeyFromObject(dr), false)
	// Count each outcome once: on the pass that first reflects it in Ready.
	switch dr.Status.Phase {
	case platformv1.DeletionCompleted:
		if !meta.IsStatusConditionTrue(dr.Status.Conditions, platformv1.ConditionReady) {
			deletionRequestsTotal.WithLabelValues("completed").Inc()
		}
		setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, true, platformv1.ReasonCompleted,
			"the subject's data is erased; see status.erased")
	case platformv1.DeletionFailed:
		if c := meta.FindStatusCondition(dr.Status.Conditions, platformv1.ConditionReady); c == nil || c.Reason != string(platformv1.DeletionFailed) {
			deletionRequestsTotal.WithLabelValues("failed").Inc()
		}
		setCondition(&dr.Status.Conditions, dr.Generation, platformv1.ConditionReady, false, string(platformv1.DeletionFailed),
			"the worker could not erase the subject's data; file a new request")
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
// is finished, the identifier has no reason to exist here.
func (r *DeletionRequestReconciler) deleteSubject(ctx context.Context, dr *platformv1.DeletionRequest) error {
	// A request must never become a way to delete the platform's own Secrets.
	if platformOwned, err := r.platformSecret(ctx, dr.Namespace, dr.Spec.SubjectSecretRef.Name); err != nil || platformOwned {
		return err
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

func (r *DeletionRequestReconciler) patchStatus(ctx context.Context, orig, dr *platformv1.DeletionRequest) error {
	dr.Status.ObservedGeneration = dr.Generation
	platformv1.SetHealthConditions(&dr.Status.Conditions, dr.Generation, platformv1.DeletionRequestHealth(dr))
	if equality.Semantic.DeepEqual(orig.Status, dr.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, dr, client.MergeFrom(orig)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patch deletion request status: %w", err))
	}
	return nil
}

// SetupWithManager watches DeletionRequests (their status too: the worker
// reports completion there) and the Tenants whose state they depend on.
func (r *DeletionRequestReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&platformv1.DeletionRequest{}).
		Watches(&platformv1.Tenant{}, handler.EnqueueRequestsFromMapFunc(r.tenantRequests)).
		WithOptions(controllerOptions()).
		Named("deletionrequest").
		Complete(quietConflicts(r))
}

func (r *DeletionRequestReconciler) tenantRequests(ctx context.Context, o client.Object) []reconcile.Request {
	t, ok := o.(*platformv1.Tenant)
	if !ok {
		return nil
	}
	var drs platformv1.DeletionRequestList
	if err := r.List(ctx, &drs, client.InNamespace(t.NamespaceName())); err != nil {
		return nil
	}
	out := make([]reconcile.Request, 0, len(drs.Items))
	for _, d := range drs.Items {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: d.Namespace, Name: d.Name}})
	}
	return out
}

// platformSecret reports whether a Secret is one the platform uses in the
// namespace: the subject key or a channel's credentials. A request naming
// one would let the worker read it and the operator delete it afterwards.
func (r *DeletionRequestReconciler) platformSecret(ctx context.Context, ns, name string) (bool, error) {
	if name == platformv1.SubjectKeySecretName {
		return true, nil
	}
	var channels platformv1.MetaChannelList
	if err := r.List(ctx, &channels, client.InNamespace(ns)); err != nil {
		return false, fmt.Errorf("list channels: %w", err)
	}
	return slices.Contains(channelSecretNames(channels.Items), name), nil
}
