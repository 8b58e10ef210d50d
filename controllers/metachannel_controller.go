package controllers

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// DefaultChannelRecheck is how often a channel's Secrets are read again.
// Secrets are not cached (a cluster's Secrets may be many and large): a
// Secret that carries the label platform.omniflowcrm.com/tenant is watched
// (metadata only) and takes effect at once; any other change to a
// referenced Secret is seen at the next re-check.
const DefaultChannelRecheck = time.Minute

// MetaChannelReconciler decides whether a channel may be served, and
// publishes the verdict and the channel's webhook URL in its status.
type MetaChannelReconciler struct {
	client.Client
	// APIReader reads Secrets around the cache, which never holds them.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Route     RouteConfig
	// Recheck is the period of the Secret re-check; 0 means DefaultChannelRecheck.
	Recheck time.Duration
}

// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metachannels,verbs=get;list;watch
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metachannels/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=tenants,verbs=get;list;watch
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metaapps,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one channel: its tenant, its claim, its Secrets.
func (r *MetaChannelReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ch platformv1.MetaChannel
	if err := r.Get(ctx, req.NamespacedName, &ch); err != nil {
		if apierrors.IsNotFound(err) {
			observeTokenRefused(req.Namespace, req.Name, nil)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ch.DeletionTimestamp != nil {
		observeTokenRefused(ch.Namespace, ch.Name, nil)
		return ctrl.Result{}, nil // nothing of ours to clean up
	}
	log := logf.FromContext(ctx).WithValues("metaChannel", klog.KObj(&ch))
	ctx = logf.IntoContext(ctx, log)
	orig := ch.DeepCopy()

	v, err := r.evaluate(ctx, &ch)
	if err != nil {
		return ctrl.Result{}, err
	}
	ch.Status.Tenant = v.Tenant
	ch.Status.WebhookURL = v.WebhookURL
	ch.Status.HeldID = v.HeldID
	ch.Status.ObservedGeneration = ch.Generation
	setCondition(&ch.Status.Conditions, ch.Generation, platformv1.ConditionReady, v.Ready, v.Reason, v.Message)
	media, err := r.mediaReport(ctx, ch.Namespace)
	if err != nil {
		return ctrl.Result{}, err
	}
	setMediaCondition(&ch, mediaCondition(&ch, v.Ready, media))
	platformv1.SetHealthConditions(&ch.Status.Conditions, ch.Generation, platformv1.MetaChannelHealth(&ch))
	if err := r.patchStatus(ctx, orig, &ch); err != nil {
		return ctrl.Result{}, err // a conflict is requeued quietly (quietConflicts)
	}
	r.recordTransition(ctx, orig, &ch, v)
	r.recordMedia(orig, &ch)
	return ctrl.Result{RequeueAfter: r.recheck()}, nil
}

func (r *MetaChannelReconciler) recheck() time.Duration {
	if r.Recheck > 0 {
		return r.Recheck
	}
	return DefaultChannelRecheck
}

// evaluate gathers what the verdict depends on, cheapest first, and stops
// at the first check that refuses the channel.
func (r *MetaChannelReconciler) evaluate(ctx context.Context, ch *platformv1.MetaChannel) (channelVerdict, error) {
	ct, err := r.tenantOf(ctx, ch.Namespace)
	if err != nil {
		return channelVerdict{}, err
	}
	v, ok := tenantVerdict(ch, ct)
	if !ok {
		return v, nil // holds nothing: status.heldID is cleared
	}
	others, err := r.claimants(ctx, ch)
	if err != nil {
		return channelVerdict{}, err
	}
	holder := claimHolder(ch, others)
	secrets := map[string]*corev1.Secret{}
	if holder == nil {
		if secrets, err = r.readSecrets(ctx, ch); err != nil {
			return channelVerdict{}, err
		}
	}
	v = acceptChannel(ch, v, r.Route, holder, secrets)
	if ch.Spec.AppRef == nil {
		return v, nil
	}
	var app platformv1.MetaApp
	switch err := r.Get(ctx, types.NamespacedName{Name: ch.Spec.AppRef.Name}, &app); {
	case apierrors.IsNotFound(err):
		return appVerdict(v, nil), nil
	case err != nil:
		return channelVerdict{}, fmt.Errorf("get metaapp %s: %w", ch.Spec.AppRef.Name, err)
	}
	return appVerdict(v, &app), nil
}

// claimants returns the other channels that claim ch's id, each with
// whether it may be served. The index (cached) finds them; each is then
// read uncached, because whether it holds the id is in its status, which
// this controller may have written a moment ago: a stale copy would let a
// newcomer take an id from the channel that was just accepted for it.
func (r *MetaChannelReconciler) claimants(ctx context.Context, ch *platformv1.MetaChannel) ([]claimant, error) {
	claim := ChannelClaim(ch)
	if claim == "" {
		return nil, nil
	}
	var list platformv1.MetaChannelList
	if err := r.List(ctx, &list, client.MatchingFields{ChannelClaimIndex: claim}); err != nil {
		return nil, fmt.Errorf("list channels with the same claim: %w", err)
	}
	var out []claimant
	for i := range list.Items {
		key := client.ObjectKeyFromObject(&list.Items[i])
		if key == client.ObjectKeyFromObject(ch) {
			continue
		}
		var o platformv1.MetaChannel
		switch err := r.APIReader.Get(ctx, key, &o); {
		case apierrors.IsNotFound(err):
			continue
		case err != nil:
			return nil, fmt.Errorf("get channel %s with the same claim: %w", key, err)
		}
		ct, err := r.tenantOf(ctx, o.Namespace)
		if err != nil {
			return nil, err
		}
		_, servable := tenantVerdict(&o, ct)
		out = append(out, claimant{Channel: &o, Servable: servable})
	}
	return out, nil
}

// tenantOf reads the channel namespace's tenant label and that Tenant.
func (r *MetaChannelReconciler) tenantOf(ctx context.Context, ns string) (channelTenant, error) {
	return lookupTenant(ctx, r.Client, ns)
}

// readSecrets reads the Secrets a channel references, uncached; a missing
// Secret maps to nil. The values stay in this function's callers' memory
// only: they are checked for presence, never logged or copied to status.
func (r *MetaChannelReconciler) readSecrets(ctx context.Context, ch *platformv1.MetaChannel) (map[string]*corev1.Secret, error) {
	secrets := map[string]*corev1.Secret{}
	for _, ref := range channelSecretRefs(ch) {
		name := ref.Ref.Name
		if _, done := secrets[name]; done {
			continue
		}
		var s corev1.Secret
		switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: ch.Namespace, Name: name}, &s); {
		case apierrors.IsNotFound(err):
			secrets[name] = nil
		case err != nil:
			return nil, fmt.Errorf("get secret %s/%s: %w", ch.Namespace, name, err)
		default:
			secrets[name] = &s
		}
	}
	return secrets, nil
}

func (r *MetaChannelReconciler) patchStatus(ctx context.Context, orig, ch *platformv1.MetaChannel) error {
	if equality.Semantic.DeepEqual(orig.Status, ch.Status) {
		return nil
	}
	// Optimistic lock: status.heldID decides who serves an id, so a patch
	// computed against a stale cached copy must fail (and be retried on a
	// fresh read) rather than leave a claim recorded that should be gone.
	if err := r.Status().Patch(ctx, ch, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{})); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patch metachannel status: %w", err))
	}
	return nil
}

// recordTransition emits an Event when Ready changes status or reason:
// never per reconcile, never with Secret values.
func (r *MetaChannelReconciler) recordTransition(ctx context.Context, orig, ch *platformv1.MetaChannel, v channelVerdict) {
	prev := meta.FindStatusCondition(orig.Status.Conditions, platformv1.ConditionReady)
	cur := meta.FindStatusCondition(ch.Status.Conditions, platformv1.ConditionReady)
	if cur == nil || (prev != nil && prev.Status == cur.Status && prev.Reason == cur.Reason) {
		return
	}
	typ, action := corev1.EventTypeWarning, "Refuse"
	if cur.Status == metav1.ConditionTrue {
		typ, action = corev1.EventTypeNormal, "Serve"
	}
	// No related object: the channel that holds the id may be another
	// tenant's, and the Event is read in this tenant's namespace.
	r.Recorder.Eventf(ch, nil, typ, cur.Reason, action, "%s", cur.Message)
	log := logf.FromContext(ctx)
	if v.HeldBy != nil {
		// The platform team's answer to "which channel has my id?".
		log = log.WithValues("heldBy", klog.KObj(v.HeldBy))
	}
	log.Info("Channel readiness changed", "ready", cur.Status, "reason", cur.Reason)
}

// mediaReport reads the media part of the worker's report in ns (cached: the
// operator made and labelled the ConfigMap); nil when there is none yet.
func (r *MetaChannelReconciler) mediaReport(ctx context.Context, ns string) (*workerreport.Media, error) {
	var cm corev1.ConfigMap
	switch err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: platformv1.WorkerReportName}, &cm); {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("get worker report %s/%s: %w", ns, platformv1.WorkerReportName, err)
	}
	return parseMediaReport(cm.Data[platformv1.WorkerReportMediaKey]), nil
}

// setMediaCondition writes MediaFetching, or removes it (c nil: not served).
func setMediaCondition(ch *platformv1.MetaChannel, c *metav1.Condition) {
	if c == nil {
		meta.RemoveStatusCondition(&ch.Status.Conditions, platformv1.ConditionMediaFetching)
		return
	}
	meta.SetStatusCondition(&ch.Status.Conditions, *c)
}

// recordMedia emits the Event a MediaFetching change calls for (after the status
// write, so that a pass retried on a conflict does not repeat it) and keeps the
// channel's token-refused series.
func (r *MetaChannelReconciler) recordMedia(orig, ch *platformv1.MetaChannel) {
	prev := meta.FindStatusCondition(orig.Status.Conditions, platformv1.ConditionMediaFetching)
	cur := meta.FindStatusCondition(ch.Status.Conditions, platformv1.ConditionMediaFetching)
	observeTokenRefused(ch.Namespace, ch.Name, cur)
	if typ, reason := mediaEvent(prev, cur); reason != "" {
		r.Recorder.Eventf(ch, nil, typ, reason, "FetchMedia", "%s", cur.Message)
	}
}

// reportChannelsChanged passes the worker report ConfigMaps whose per-channel media
// state changed: the counts change with every fetched file and concern no channel.
var reportChannelsChanged = predicate.Funcs{
	CreateFunc: func(e event.CreateEvent) bool { return e.Object.GetName() == platformv1.WorkerReportName },
	DeleteFunc: func(e event.DeleteEvent) bool { return e.Object.GetName() == platformv1.WorkerReportName },
	UpdateFunc: func(e event.UpdateEvent) bool {
		o, ok1 := e.ObjectOld.(*corev1.ConfigMap)
		n, ok2 := e.ObjectNew.(*corev1.ConfigMap)
		return ok1 && ok2 && n.Name == platformv1.WorkerReportName &&
			mediaChannelsChanged(o.Data[platformv1.WorkerReportMediaKey], n.Data[platformv1.WorkerReportMediaKey])
	},
	GenericFunc: func(event.GenericEvent) bool { return false },
}

// SetupWithManager registers the claim index, the controller and its watches.
func (r *MetaChannelReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &platformv1.MetaChannel{}, ChannelClaimIndex, func(o client.Object) []string {
		if claim := ChannelClaim(o.(*platformv1.MetaChannel)); claim != "" {
			return []string{claim}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index metachannels by claim: %w", err)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&platformv1.MetaChannel{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A channel that goes away, or changes its id, releases its claim.
		Watches(&platformv1.MetaChannel{}, handler.EnqueueRequestsFromMapFunc(r.sameClaim),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A Tenant or a namespace label decides whether the channels of a
		// namespace may be served, and so whether they hold their ids: the
		// channels with the same ids are judged again too.
		Watches(&platformv1.Tenant{}, handler.EnqueueRequestsFromMapFunc(r.tenantChannels),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceChannels),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// A channel with appRef is served only while its MetaApp is Ready.
		Watches(&platformv1.MetaApp{}, handler.EnqueueRequestsFromMapFunc(r.appChannels)).
		// Metadata only, and the cache holds only Secrets with the tenant
		// label (CacheOptions): never every Secret of the cluster.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.channelsBeside)).
		// The worker reports a refused token (or its end) in its report ConfigMap.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.channelsBeside),
			builder.WithPredicates(reportChannelsChanged)).
		// One reconcile at a time, whatever --max-concurrent-reconciles says:
		// a channel records its id after an uncached read of the other
		// claimants, and two passes at once could each see no holder and both
		// record the same id. Serial passes make read-then-record atomic.
		WithOptions(controllerOptions(1)).
		Named("metachannel").
		Complete(quietConflicts(r))
}

// appChannels maps a MetaApp to the channels that name it.
func (r *MetaChannelReconciler) appChannels(ctx context.Context, o client.Object) []reconcile.Request {
	var list platformv1.MetaChannelList
	if err := r.List(ctx, &list, client.MatchingFields{MetaChannelAppIndex: o.GetName()}); err != nil {
		logf.FromContext(ctx).Error(err, "Cannot list channels of an app", "metaApp", o.GetName())
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}

// sameClaim maps a channel to the other channels with the same claim.
func (r *MetaChannelReconciler) sameClaim(ctx context.Context, o client.Object) []reconcile.Request {
	ch, ok := o.(*platformv1.MetaChannel)
	if !ok {
		return nil
	}
	claim := ChannelClaim(ch)
	if claim == "" {
		return nil
	}
	var list platformv1.MetaChannelList
	if err := r.List(ctx, &list, client.MatchingFields{ChannelClaimIndex: claim}); err != nil {
		logf.FromContext(ctx).Error(err, "Cannot list channels with the same claim")
		return nil
	}
	var reqs []reconcile.Request
	for _, other := range list.Items {
		if other.Namespace != ch.Namespace || other.Name != ch.Name {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&other)})
		}
	}
	return reqs
}

// tenantChannels maps a Tenant to the channels of its namespace and the
// channels that claim the same ids.
func (r *MetaChannelReconciler) tenantChannels(ctx context.Context, o client.Object) []reconcile.Request {
	t, ok := o.(*platformv1.Tenant)
	if !ok {
		return nil
	}
	reqs := r.channelsIn(ctx, t.NamespaceName(), true)
	if t.Status.Namespace != "" && t.Status.Namespace != t.NamespaceName() {
		reqs = append(reqs, r.channelsIn(ctx, t.Status.Namespace, true)...)
	}
	return reqs
}

// namespaceChannels maps a namespace to its channels and the channels that
// claim the same ids.
func (r *MetaChannelReconciler) namespaceChannels(ctx context.Context, o client.Object) []reconcile.Request {
	return r.channelsIn(ctx, o.GetName(), true)
}

// channelsBeside maps an object (a Secret, the worker report) to the channels of its
// namespace.
func (r *MetaChannelReconciler) channelsBeside(ctx context.Context, o client.Object) []reconcile.Request {
	return r.channelsIn(ctx, o.GetNamespace(), false)
}

// channelsIn lists the channels of a namespace and, with rivals, the
// channels elsewhere that claim the same ids.
func (r *MetaChannelReconciler) channelsIn(ctx context.Context, ns string, rivals bool) []reconcile.Request {
	var list platformv1.MetaChannelList
	if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
		logf.FromContext(ctx).Error(err, "Cannot list channels", "namespace", ns)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
		if rivals {
			reqs = append(reqs, r.sameClaim(ctx, &list.Items[i])...)
		}
	}
	return reqs
}
