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
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
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
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch

// Reconcile checks one channel: its tenant, its claim, its Secrets.
func (r *MetaChannelReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var ch platformv1.MetaChannel
	if err := r.Get(ctx, req.NamespacedName, &ch); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if ch.DeletionTimestamp != nil {
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
	ch.Status.ObservedGeneration = ch.Generation
	setCondition(&ch.Status.Conditions, ch.Generation, platformv1.ConditionReady, v.Ready, v.Reason, v.Message)
	if err := r.patchStatus(ctx, orig, &ch); err != nil {
		if apierrors.IsConflict(err) {
			log.V(1).Info("Status patch conflicted; requeueing")
			return ctrl.Result{RequeueAfter: time.Second}, nil
		}
		return ctrl.Result{}, err
	}
	r.recordTransition(ctx, orig, &ch, v)
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
		return v, nil
	}
	var earlier *platformv1.MetaChannel
	if claim := ChannelClaim(ch); claim != "" {
		var claimants platformv1.MetaChannelList
		if err := r.List(ctx, &claimants, client.MatchingFields{ChannelClaimIndex: claim}); err != nil {
			return channelVerdict{}, fmt.Errorf("list channels with the same claim: %w", err)
		}
		earlier = conflictingClaim(ch, claimants.Items)
	}
	secrets := map[string]*corev1.Secret{}
	if earlier == nil {
		if secrets, err = r.readSecrets(ctx, ch); err != nil {
			return channelVerdict{}, err
		}
	}
	return acceptChannel(ch, v, r.Route, earlier, secrets), nil
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
	if err := r.Status().Patch(ctx, ch, client.MergeFrom(orig)); err != nil {
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
	if v.ConflictWith != nil {
		r.Recorder.Eventf(ch, v.ConflictWith, typ, cur.Reason, action, "%s", cur.Message)
	} else {
		r.Recorder.Eventf(ch, nil, typ, cur.Reason, action, "%s", cur.Message)
	}
	logf.FromContext(ctx).Info("Channel readiness changed", "ready", cur.Status, "reason", cur.Reason)
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
		Watches(&platformv1.Tenant{}, handler.EnqueueRequestsFromMapFunc(r.tenantChannels),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, handler.EnqueueRequestsFromMapFunc(r.namespaceChannels),
			builder.WithPredicates(predicate.LabelChangedPredicate{})).
		// Metadata only, and the cache holds only Secrets with the tenant
		// label (CacheOptions): never every Secret of the cluster.
		WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.namespaceChannels)).
		WithOptions(controllerOptions()).
		Named("metachannel").
		Complete(r)
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

// tenantChannels maps a Tenant to the channels of its namespace.
func (r *MetaChannelReconciler) tenantChannels(ctx context.Context, o client.Object) []reconcile.Request {
	t, ok := o.(*platformv1.Tenant)
	if !ok {
		return nil
	}
	reqs := r.channelsIn(ctx, t.NamespaceName())
	if t.Status.Namespace != "" && t.Status.Namespace != t.NamespaceName() {
		reqs = append(reqs, r.channelsIn(ctx, t.Status.Namespace)...)
	}
	return reqs
}

// namespaceChannels maps a namespace, or an object in one, to the channels
// of that namespace.
func (r *MetaChannelReconciler) namespaceChannels(ctx context.Context, o client.Object) []reconcile.Request {
	ns := o.GetNamespace()
	if ns == "" {
		ns = o.GetName() // the Namespace itself
	}
	return r.channelsIn(ctx, ns)
}

func (r *MetaChannelReconciler) channelsIn(ctx context.Context, ns string) []reconcile.Request {
	var list platformv1.MetaChannelList
	if err := r.List(ctx, &list, client.InNamespace(ns)); err != nil {
		logf.FromContext(ctx).Error(err, "Cannot list channels", "namespace", ns)
		return nil
	}
	reqs := make([]reconcile.Request, 0, len(list.Items))
	for i := range list.Items {
		reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&list.Items[i])})
	}
	return reqs
}
