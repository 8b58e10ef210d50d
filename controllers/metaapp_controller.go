package controllers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	networkingv1ac "k8s.io/client-go/applyconfigurations/networking/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
	gatewayv1ac "sigs.k8s.io/gateway-api/applyconfiguration/apis/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
)

// MetaChannelAppIndex indexes MetaChannels by spec.appRef.name.
const MetaChannelAppIndex = "spec.appRef.name"

// MetaAppReconciler runs each MetaApp's front door in the operator's
// namespace and publishes the app's callback URL and health.
type MetaAppReconciler struct {
	client.Client
	// APIReader reads Secrets around the cache, which never holds the
	// operator namespace's Secrets.
	APIReader client.Reader
	// Namespace is the operator's namespace: the app's Secrets are read
	// there and its front door runs there.
	Namespace string
	// Image is the manager's image, which holds /frontdoor.
	Image string
	Route RouteConfig
}

// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metaapps,verbs=get;list;watch
// +kubebuilder:rbac:groups=platform.omniflowcrm.com,resources=metaapps/status,verbs=get;patch;update
// +kubebuilder:rbac:groups=policy,resources=poddisruptionbudgets,verbs=get;list;watch;create;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=clusterroles;clusterrolebindings,verbs=get;list;watch;create;patch;delete

// Reconcile provisions one MetaApp's front door. Its objects carry the
// MetaApp as controller owner: deleting the app lets garbage collection
// remove them.
func (r *MetaAppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var app platformv1.MetaApp
	if err := r.Get(ctx, req.NamespacedName, &app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if app.DeletionTimestamp != nil {
		return ctrl.Result{}, nil
	}
	ctx = logf.IntoContext(ctx, logf.FromContext(ctx).WithValues("metaApp", klog.KObj(&app)))
	orig := app.DeepCopy()

	if err := EnsureForwardingKey(ctx, r.Client, r.APIReader, r.Namespace); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.applyFrontDoor(ctx, &app); err != nil {
		return ctrl.Result{}, err
	}
	secretReason, secretMsg, err := r.checkSecrets(ctx, &app)
	if err != nil {
		return ctrl.Result{}, err
	}
	var dep appsv1.Deployment
	if err := r.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: FrontDoorName(app.Name)}, &dep); client.IgnoreNotFound(err) != nil {
		return ctrl.Result{}, fmt.Errorf("get front door deployment: %w", err)
	}
	var chs platformv1.MetaChannelList
	if err := r.List(ctx, &chs, client.MatchingFields{MetaChannelAppIndex: app.Name}); err != nil {
		return ctrl.Result{}, fmt.Errorf("list channels of the app: %w", err)
	}

	ready, reason, msg := metaAppReadiness(&app, secretReason, secretMsg, &dep)
	app.Status.ObservedGeneration = app.Generation
	app.Status.WebhookURL = r.Route.MetaAppWebhookURL(app.Name)
	app.Status.Channels = int32(min(len(chs.Items), math.MaxInt32)) //nolint:gosec // G115: bounded just above
	setCondition(&app.Status.Conditions, app.Generation, platformv1.ConditionReady, ready, reason, msg)
	platformv1.SetHealthConditions(&app.Status.Conditions, app.Generation, platformv1.MetaAppHealth(&app))
	if !equality.Semantic.DeepEqual(orig.Status, app.Status) {
		if err := r.Status().Patch(ctx, &app, client.MergeFrom(orig)); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(fmt.Errorf("patch metaapp status: %w", err))
		}
	}
	// Secrets are not watched (not cached): look again while one is missing.
	if secretReason != "" {
		return ctrl.Result{RequeueAfter: DefaultChannelRecheck}, nil
	}
	return ctrl.Result{}, nil
}

// metaAppReadiness: the app's Secrets first (a human must act), then its
// front door's pods.
func metaAppReadiness(app *platformv1.MetaApp, secretReason, secretMsg string, dep *appsv1.Deployment) (bool, string, string) {
	if secretReason != "" {
		return false, secretReason, secretMsg
	}
	want := app.FrontDoorReplicas()
	if dep.Generation == 0 || dep.Status.ObservedGeneration < dep.Generation || dep.Status.AvailableReplicas < want {
		return false, platformv1.ReasonFrontDoorUnavailable,
			fmt.Sprintf("front door %d of %d replicas available", dep.Status.AvailableReplicas, want)
	}
	return true, platformv1.ReasonFrontDoorAvailable, fmt.Sprintf("front door %d of %d replicas available", dep.Status.AvailableReplicas, want)
}

// checkSecrets reads the app's Secrets (uncached) and says what is wrong
// with them, naming the Secret and key, never a value.
func (r *MetaAppReconciler) checkSecrets(ctx context.Context, app *platformv1.MetaApp) (reason, msg string, err error) {
	for _, ref := range []channelSecretRef{{"appSecretRef", app.Spec.AppSecretRef}, {"verifyTokenRef", app.Spec.VerifyTokenRef}} {
		var s corev1.Secret
		var sp *corev1.Secret
		switch err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.Namespace, Name: ref.Ref.Name}, &s); {
		case apierrors.IsNotFound(err):
		case err != nil:
			return "", "", fmt.Errorf("get secret %s/%s: %w", r.Namespace, ref.Ref.Name, err)
		default:
			sp = &s
		}
		if reason, msg := secretProblem(r.Namespace, ref, sp); reason != "" {
			return reason, msg, nil
		}
	}
	return "", "", nil
}

func (r *MetaAppReconciler) applyFrontDoor(ctx context.Context, app *platformv1.MetaApp) error {
	ns, name := r.Namespace, FrontDoorName(app.Name)
	key := types.NamespacedName{Namespace: ns, Name: name}
	steps := []struct {
		what  string
		apply func() error
	}{
		{"service account", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &corev1.ServiceAccount{}, desiredFrontDoorServiceAccount(app, ns), corev1ac.ExtractServiceAccount)
			return err
		}},
		{"cluster role", func() error {
			_, err := applyIfChanged(ctx, r.Client, types.NamespacedName{Name: name}, &rbacv1.ClusterRole{}, desiredFrontDoorClusterRole(app), rbacv1ac.ExtractClusterRole)
			return err
		}},
		{"cluster role binding", func() error {
			_, err := applyIfChanged(ctx, r.Client, types.NamespacedName{Name: name}, &rbacv1.ClusterRoleBinding{}, desiredFrontDoorClusterRoleBinding(app, ns), rbacv1ac.ExtractClusterRoleBinding)
			return err
		}},
		{"service", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &corev1.Service{}, desiredFrontDoorService(app, ns), corev1ac.ExtractService)
			return err
		}},
		{"pod disruption budget", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &policyv1.PodDisruptionBudget{}, desiredFrontDoorPDB(app, ns), policyv1ac.ExtractPodDisruptionBudget)
			return err
		}},
		{"deployment", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &appsv1.Deployment{}, desiredFrontDoorDeployment(app, ns, r.Image), appsv1ac.ExtractDeployment)
			return err
		}},
	}
	switch r.Route.kind() {
	case RouteIngress:
		steps = append(steps, struct {
			what  string
			apply func() error
		}{"ingress", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &networkingv1.Ingress{}, desiredFrontDoorIngress(app, ns, r.Route), networkingv1ac.ExtractIngress)
			return err
		}})
	case RouteHTTPRoute:
		steps = append(steps, struct {
			what  string
			apply func() error
		}{"httproute", func() error {
			_, err := applyIfChanged(ctx, r.Client, key, &gatewayv1.HTTPRoute{}, desiredFrontDoorHTTPRoute(app, ns, r.Route), gatewayv1ac.ExtractHTTPRoute)
			return err
		}})
	}
	for _, s := range steps {
		if err := s.apply(); err != nil {
			return fmt.Errorf("ensure front door %s: %w", s.what, err)
		}
	}
	return nil
}

// EnsureForwardingKey creates the operator's forwarding key once: 32
// random bytes, hex, in ForwardingKeySecret. An existing Secret is never
// rewritten (every tenant's derived key depends on it). The value is never
// logged.
func EnsureForwardingKey(ctx context.Context, c client.Client, reader client.Reader, ns string) error {
	var s corev1.Secret
	err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ForwardingKeySecret}, &s)
	if err == nil {
		return nil
	}
	if !apierrors.IsNotFound(err) {
		return fmt.Errorf("get forwarding key: %w", err)
	}
	raw := make([]byte, forward.MinKeyBytes)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Errorf("generate forwarding key: %w", err)
	}
	s = corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: ForwardingKeySecret,
			Labels: map[string]string{platformv1.LabelManagedBy: platformv1.ManagedByValue, labelComponent: componentFrontDoor}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{ForwardingKeyKey: []byte(hex.EncodeToString(raw))},
	}
	if err := c.Create(ctx, &s, client.FieldOwner(fieldOwner)); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create forwarding key: %w", err)
	}
	return nil
}

// ReadForwardingKey reads the operator's forwarding key (uncached).
func ReadForwardingKey(ctx context.Context, reader client.Reader, ns string) ([]byte, error) {
	var s corev1.Secret
	if err := reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: ForwardingKeySecret}, &s); err != nil {
		return nil, fmt.Errorf("get forwarding key: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(s.Data[ForwardingKeyKey])))
	if err != nil || len(key) < forward.MinKeyBytes {
		return nil, fmt.Errorf("forwarding key %s/%s is not %d bytes of hex", ns, ForwardingKeySecret, forward.MinKeyBytes)
	}
	return key, nil
}

// SetupWithManager registers the app index on channels and the controller.
func (r *MetaAppReconciler) SetupWithManager(ctx context.Context, mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(ctx, &platformv1.MetaChannel{}, MetaChannelAppIndex, func(o client.Object) []string {
		if ref := o.(*platformv1.MetaChannel).Spec.AppRef; ref != nil {
			return []string{ref.Name}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("index metachannels by app: %w", err)
	}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Route.kind() == RouteHTTPRoute {
		// A route deleted or edited by hand is put right at once. Only here:
		// elsewhere the Gateway API need not be installed (nor cached).
		b = b.Owns(&gatewayv1.HTTPRoute{})
	}
	return b.
		// An annotation change (ReconcileAnnotation) asks for a pass now, for
		// instance after a Secret of the app was fixed (Secrets are not watched).
		For(&platformv1.MetaApp{}, builder.WithPredicates(predicate.Or(predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&corev1.ServiceAccount{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		Owns(&rbacv1.ClusterRole{}).
		Owns(&rbacv1.ClusterRoleBinding{}).
		// Cached by the managed-by label (CacheOptions), like the tenants'.
		Owns(&networkingv1.Ingress{}).
		// status.channels counts the channels that name the app.
		Watches(&platformv1.MetaChannel{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if ref := o.(*platformv1.MetaChannel).Spec.AppRef; ref != nil {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Name: ref.Name}}}
			}
			return nil
		}), builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		// A handful of apps per cluster: one at a time is plenty.
		WithOptions(controllerOptions(1)).
		Named("metaapp").
		Complete(quietConflicts(r))
}
