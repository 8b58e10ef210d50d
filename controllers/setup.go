package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// Options configure the operator's controllers.
type Options struct {
	Worker WorkerConfig
	// Route says how Meta's webhooks reach the workers (Ingress by default)
	// and the public base URL of the channels' webhook URLs.
	Route RouteConfig
	// ChannelRecheck is the period at which MetaChannels re-read their
	// Secrets; 0 means DefaultChannelRecheck.
	ChannelRecheck time.Duration
	// Clock is injected by tests; nil means the real clock.
	Clock clock.PassiveClock
	// Sweep configures the orphan sweep.
	Sweep SweepConfig
	// Postgres enables the PostgreSQL storage backend.
	Postgres PostgresConfig
	// MaxConcurrentReconciles is how many Tenants, and how many
	// DeletionRequests, are reconciled at once; 0 means
	// DefaultMaxConcurrentReconciles. MetaChannels are always reconciled one
	// at a time (see MetaChannelReconciler.SetupWithManager).
	MaxConcurrentReconciles int
	// Namespace is the operator's own namespace: MetaApps' Secrets are
	// read there and their front doors run there, and tenants' data keys
	// are kept there. Empty: no data keys (tests of other areas only;
	// cmd/manager sets it from $POD_NAMESPACE).
	Namespace string
}

// DefaultMaxConcurrentReconciles keeps a burst of new tenants from queueing
// behind one another (one at a time, 1,000 new Tenants took three minutes to
// settle) without letting one operator flood the API server.
const DefaultMaxConcurrentReconciles = 4

// SweepConfig configures the search for tenant data whose Tenant is gone.
type SweepConfig struct {
	// Interval between sweeps; 0 means 10 minutes, negative disables the sweep.
	Interval time.Duration
	// GracePeriod between finding an orphan and erasing it; 0 means the
	// default Tenant grace period (7 days). At most 13 days.
	GracePeriod time.Duration
	// MaxOrphanShare above which the sweep stands down; 0 means 0.5.
	MaxOrphanShare float64
}

// AddToScheme registers every type the operator reads or writes: the built-in
// kinds, the Omniflow API and the Gateway API's HTTPRoute (registered even where
// the Gateway API is not installed: only --route=httproute uses it).
func AddToScheme(s *runtime.Scheme) error {
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, platformv1.AddToScheme, gatewayv1.Install} {
		if err := add(s); err != nil {
			return err
		}
	}
	return nil
}

// CacheOptions restricts the manager's cache to the objects the operator
// labels, so that it never holds every Deployment, claim or namespace of a
// large cluster in memory. HTTPRoutes are named only with --route=httproute:
// the cache resolves every type it is configured for, and the Gateway API need
// not be installed otherwise. Every object is trimmed by CacheTransform on
// its way in; docs/operator-scale.md says what each kind costs.
//
// The rule for a kind a controller starts to read or own: name it here with
// the narrowest selector its objects carry (the managed-by label for what the
// operator applies), or it is cached cluster-wide, every object of that kind
// in the cluster; watch it with WatchesMetadata when only its metadata is
// read; and read nothing the transform drops (other managers' managedFields,
// kubectl's last-applied annotation, and what digestedKinds trims from the
// kinds the operator applies: a kind applied with applyIfChanged is
// registered there, cache_digest.go). The transform shares repeated strings,
// label maps and owner references between objects: never change a cached
// object in place (the cache's reads return copies, which may be changed).
// The kinds registered there and the Secrets are not indexed by namespace
// (cache_informer.go): read them from the cache by key, list them around it.
func CacheOptions(route RouteConfig) cache.Options {
	managed := labels.SelectorFromSet(labels.Set{platformv1.LabelManagedBy: platformv1.ManagedByValue})
	tenantReq, err := labels.NewRequirement(platformv1.LabelTenant, selection.Exists, nil)
	if err != nil {
		panic(err) // a constant requirement cannot be invalid
	}
	tenantNamespaces := labels.NewSelector().Add(*tenantReq)
	byObject := map[client.Object]cache.ByObject{
		// Adopted namespaces carry the tenant label before they carry ours.
		&corev1.Namespace{}: {Label: tenantNamespaces},
		// Only Secrets that carry the tenant label, and only their metadata
		// (the MetaChannel controller watches them with WatchesMetadata and
		// reads values with the uncached API reader).
		&corev1.Secret{}: {Label: tenantNamespaces},
	}
	for _, o := range []client.Object{
		&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &corev1.PersistentVolumeClaim{}, &corev1.ConfigMap{},
		&rbacv1.Role{}, &rbacv1.RoleBinding{}, &networkingv1.NetworkPolicy{}, &networkingv1.Ingress{},
		&policyv1.PodDisruptionBudget{}, &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{},
	} {
		byObject[o] = cache.ByObject{Label: managed}
	}
	if route.kind() == RouteHTTPRoute {
		byObject[&gatewayv1.HTTPRoute{}] = cache.ByObject{Label: managed}
	}
	warmDigests()
	return cache.Options{ByObject: byObject, DefaultTransform: CacheTransform, NewInformer: newCacheInformer}
}

// SetupAll registers every controller of the operator with the manager.
func SetupAll(mgr ctrl.Manager, opts Options) error {
	clk := opts.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	if opts.MaxConcurrentReconciles < 0 {
		return fmt.Errorf("max concurrent reconciles %d: want at least 1 (0 means %d)", opts.MaxConcurrentReconciles, DefaultMaxConcurrentReconciles)
	}
	workers := cmp.Or(opts.MaxConcurrentReconciles, DefaultMaxConcurrentReconciles)
	recorder := distinctWarnings{mgr.GetEventRecorder("omniflow-operator")}
	// Tenants' data keys live in the operator's namespace (tenant_datakey.go).
	opts.Worker.DataKeyNamespace = opts.Namespace
	tenants := &TenantReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Clock:     clk,
		Worker:    opts.Worker,
		Route:     opts.Route,
		Postgres:  opts.Postgres,
		Namespace: opts.Namespace,
	}
	if err := tenants.SetupWithManager(mgr, workers); err != nil {
		return fmt.Errorf("set up tenant controller: %w", err)
	}
	channels := &MetaChannelReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  recorder,
		Route:     opts.Route,
		Recheck:   opts.ChannelRecheck,
	}
	if err := channels.SetupWithManager(context.Background(), mgr); err != nil {
		return fmt.Errorf("set up metachannel controller: %w", err)
	}
	apps := &MetaAppReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Namespace: opts.Namespace,
		Image:     opts.Worker.Image,
		Route:     opts.Route,
	}
	if err := apps.SetupWithManager(context.Background(), mgr); err != nil {
		return fmt.Errorf("set up metaapp controller: %w", err)
	}
	requests := &DeletionRequestReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Recorder:  tenants.Recorder,
		Clock:     clk,
		Route:     opts.Route,
	}
	if err := requests.SetupWithManager(mgr, workers); err != nil {
		return fmt.Errorf("set up deletionrequest controller: %w", err)
	}
	if opts.Sweep.Interval >= 0 {
		sweeper := &OrphanSweeper{
			APIReader:      mgr.GetAPIReader(),
			Eraser:         tenants,
			Recorder:       tenants.Recorder,
			Clock:          clk,
			Interval:       cmp.Or(opts.Sweep.Interval, 10*time.Minute),
			GracePeriod:    cmp.Or(opts.Sweep.GracePeriod, platformv1.DefaultGracePeriod),
			MaxOrphanShare: cmp.Or(opts.Sweep.MaxOrphanShare, 0.5),
		}
		if sweeper.GracePeriod > platformv1.MaxGracePeriod {
			return fmt.Errorf("orphan grace period %s is longer than %s: erasure would miss the 14-day promise", sweeper.GracePeriod, platformv1.MaxGracePeriod)
		}
		if err := mgr.Add(sweeper); err != nil {
			return fmt.Errorf("add orphan sweep: %w", err)
		}
	}
	return nil
}

// controllerOptions runs up to workers reconciles at once (never two of
// the same object: the work queue hands out each key to one worker at a
// time) and caps the error backoff at 5 minutes: the default grows to about
// 16 minutes, a silent stall for an SRE watching a tenant.
//
// Concurrency is safe for the Tenant and DeletionRequest reconcilers: they
// keep no state between passes, every status write carries an optimistic
// lock (a conflict is a quiet requeue, quietConflicts), and what two objects
// may both want (a namespace named by two Tenants) is decided by the API
// server's create, not by the order of passes.
func controllerOptions(workers int) controller.Options {
	return controller.Options{
		MaxConcurrentReconciles: workers,
		RateLimiter:             workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, 5*time.Minute),
	}
}

// ConflictRequeue is how soon a reconcile that met an optimistic-lock
// conflict runs again.
const ConflictRequeue = time.Second

// quietConflicts wraps a reconciler so that an optimistic-lock conflict
// (another writer changed the object since it was read, or the cache was
// behind) is what it is: a normal event. The reconcile runs again after
// ConflictRequeue on a fresh read, logged at V(1), instead of reaching
// controller-runtime as an error, which logs "Reconciler error" with a stack
// trace and backs off. Every step of our reconcilers is idempotent, so
// running a pass again is safe. Any other error, also one joined with a
// conflict, is returned as it is.
func quietConflicts(r reconcile.Reconciler) reconcile.Reconciler {
	return reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
		res, err := r.Reconcile(ctx, req)
		if err == nil || !onlyConflicts(err) {
			return res, err
		}
		logf.FromContext(ctx).V(1).Info("Optimistic-lock conflict; requeueing", "after", ConflictRequeue, "error", err.Error())
		return reconcile.Result{RequeueAfter: ConflictRequeue}, nil
	})
}

// onlyConflicts reports whether err is a conflict and nothing else: every
// error joined into it (errors.Join, or fmt.Errorf with several %w) is one.
func onlyConflicts(err error) bool { return onlyErrorsOf(err, apierrors.IsConflict) }

// onlyErrorsOf reports whether err is of the kind is tells, and nothing else:
// every error joined into it (errors.Join, or fmt.Errorf with several %w) is
// one. is must see through wrapping (the apierrors predicates do, with
// errors.As), so a single wrapper around a join is opened and checked too.
func onlyErrorsOf(err error, is func(error) bool) bool {
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs := joined.Unwrap()
		for _, e := range errs {
			if !onlyErrorsOf(e, is) {
				return false
			}
		}
		return len(errs) > 0
	}
	if !is(err) {
		return false
	}
	// A single-error wrapper around a join: look inside.
	if inner := errors.Unwrap(err); inner != nil {
		return onlyErrorsOf(inner, is)
	}
	return true
}
