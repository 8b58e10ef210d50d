// Package clusterchannels is the worker's in-cluster channel source: it watches the
// MetaChannels of the worker's own namespace, reads the Secrets they reference, and keeps
// the same channels.Registry that the standalone file feeds. A channel is served only
// while the operator says it may be (Ready=True for its current generation) and its
// Secrets could be read.
//
// Secrets are never listed as a namespace: the worker's Role names the Secrets it may
// read (resourceNames), and such a rule grants a list or watch only of exactly the object
// it names, by a field selector metadata.name=<name>. Each Secret a served channel
// references is watched that way, one watch per Secret, so a rotated app secret or verify
// token is in force as soon as the change arrives, and nothing is read while nothing
// changes.
package clusterchannels

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// maxRetry bounds the backoff of a channel whose sync failed (its Secret's watch not
// synced yet, an account still held by another channel). Retries read the caches only.
const maxRetry = 10 * time.Second

// Reasons a channel is not served, as logged. They are the operator's Ready reasons where
// the operator decided, and these where the worker did.
const (
	reasonDeleted         = "Deleted"
	reasonDeleting        = "Deleting"
	reasonNotReady        = "NotReady"
	reasonStale           = "ReadyForOlderGeneration"
	reasonSecretMissing   = platformv1.ReasonSecretMissing
	reasonSecretKey       = platformv1.ReasonSecretKeyMissing
	reasonSecretEmpty     = platformv1.ReasonSecretValueEmpty
	reasonSecretForbidden = "SecretForbidden"
	reasonSecretError     = "SecretUnreadable"
	reasonInvalid         = "Invalid"
	reasonAccountInUse    = "AccountServedByAnotherChannel"
)

// Config configures a Watcher.
type Config struct {
	// RestConfig reaches the API server as the worker's ServiceAccount.
	RestConfig *rest.Config
	// Namespace is the worker's own namespace; nothing outside it is read.
	Namespace string
	Registry  *channels.Registry
	Log       logr.Logger
}

// Watcher feeds a channels.Registry from the cluster (see the package comment).
type Watcher struct {
	cfg       Config
	cache     cache.Cache
	clientset kubernetes.Interface // watches Secrets one by one
	queue     workqueue.TypedRateLimitingInterface[string]

	// served, notServed, secretWatches and watchCtx are touched only by the goroutine
	// running Run's loop.
	served        map[string]string // channel name -> servedKey of the object it was resolved from
	notServed     map[string]string // channel name -> the last reason logged
	secretWatches map[string]*secretWatch
	watchCtx      context.Context // the Secret watches run until it ends

	// Channels whose business left (Meta's account_update, see Offboard).
	writer     client.Client     // writes the Events that say so
	offMu      sync.Mutex        // Offboard is called from HTTP handlers
	offPending map[string]string // channel name -> event, not yet tied to a generation
	offKeys    map[string]string // channel name -> servedKey it was taken out at
}

// Scheme holds the kinds the worker reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(corev1.AddToScheme(s))
	utilruntime.Must(platformv1.AddToScheme(s))
	utilruntime.Must(eventsv1.AddToScheme(s))
	return s
}

// New builds a Watcher; nothing is contacted before Run.
func New(cfg Config) (*Watcher, error) {
	if cfg.RestConfig == nil || cfg.Namespace == "" || cfg.Registry == nil {
		return nil, errors.New("clusterchannels: rest config, namespace and registry are required")
	}
	scheme := Scheme()
	// The cache holds this namespace's MetaChannels only: it is asked for no other kind,
	// and a cluster-wide watch would be refused by the worker's Role anyway.
	c, err := cache.New(cfg.RestConfig, cache.Options{
		Scheme:                      scheme,
		DefaultNamespaces:           map[string]cache.Config{cfg.Namespace: {}},
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create cache for namespace %s: %w", cfg.Namespace, err)
	}
	writer, err := client.New(cfg.RestConfig, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](250*time.Millisecond, maxRetry)
	return &Watcher{
		cfg:           cfg,
		cache:         c,
		clientset:     cs,
		queue:         workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{}),
		served:        map[string]string{},
		notServed:     map[string]string{},
		secretWatches: map[string]*secretWatch{},
		writer:        writer,
		offPending:    map[string]string{},
		offKeys:       map[string]string{},
	}, nil
}

// Run watches until ctx ends (see ingest.ChannelSource). synced is called once every
// channel present at start has been resolved into the registry or refused.
func (w *Watcher) Run(ctx context.Context, synced func()) error {
	defer w.queue.ShutDown()
	inf, err := w.cache.GetInformer(ctx, &platformv1.MetaChannel{})
	if err != nil {
		return fmt.Errorf("metachannel informer: %w", err)
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    w.enqueue,
		UpdateFunc: func(_, obj any) { w.enqueue(obj) },
		DeleteFunc: w.enqueue,
	}); err != nil {
		return fmt.Errorf("metachannel event handler: %w", err)
	}

	// The loop ends with ctx, or when the cache stops on its own: then the registry can
	// no longer follow the cluster, and Run reports it so the worker stops.
	cacheCtx, stopCache := context.WithCancel(ctx)
	defer stopCache()
	loopCtx, stopLoop := context.WithCancel(ctx)
	defer stopLoop()
	cacheErr := make(chan error, 1)
	go func() {
		cacheErr <- w.cache.Start(cacheCtx)
		stopLoop()
	}()
	if !w.cache.WaitForCacheSync(loopCtx) {
		stopCache()
		if err := <-cacheErr; err != nil {
			return fmt.Errorf("metachannel cache: %w", err)
		}
		return ctx.Err()
	}
	w.cfg.Log.Info("Watching channels", "namespace", w.cfg.Namespace)

	// The first pass runs here, not in the loop, so that synced means "loaded": the
	// Secrets of every channel to serve are watched, and each watch has answered, first.
	w.watchCtx = loopCtx
	names, err := w.allNames(ctx)
	if err != nil {
		return err
	}
	if err := w.watchWantedSecrets(loopCtx); err != nil {
		return err
	}
	for _, name := range names {
		if err := w.sync(ctx, name); err != nil {
			w.queue.AddRateLimited(name)
		}
	}
	if synced != nil {
		synced()
	}

	go func() {
		<-loopCtx.Done()
		w.queue.ShutDown()
	}()
	for w.processNext(loopCtx) {
	}
	stopLoop() // ends the Secret watches too
	stopCache()
	err = <-cacheErr
	switch {
	case ctx.Err() != nil:
		return nil
	case err != nil:
		return fmt.Errorf("metachannel cache: %w", err)
	default:
		return errors.New("metachannel cache stopped")
	}
}

func (w *Watcher) enqueue(obj any) {
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if o, ok := obj.(metav1.Object); ok {
		w.queue.Add(o.GetName())
	}
}

// allNames lists the cached channels plus the registered ones (a served channel missing
// from the cache was deleted, and must be dropped even if its event was missed).
func (w *Watcher) allNames(ctx context.Context) ([]string, error) {
	list, err := w.cachedChannels(ctx)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	names := make([]string, 0, len(list))
	for i := range list {
		seen[list[i].Name] = true
		names = append(names, list[i].Name)
	}
	for _, n := range w.cfg.Registry.Names() {
		if !seen[n] {
			names = append(names, n)
		}
	}
	return names, nil
}

func (w *Watcher) processNext(ctx context.Context) bool {
	name, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(name)
	err := w.sync(ctx, name)
	w.releaseSecretWatches(ctx)
	if err != nil {
		w.cfg.Log.V(1).Info("Channel sync failed; retrying", "channel", name, "error", err.Error())
		w.queue.AddRateLimited(name)
		return true
	}
	w.queue.Forget(name)
	return true
}

// sync brings one channel's registry entry in line with the cluster. An error means
// "try again soon"; the entry is then kept only if it was resolved from the same object
// and generation (its Secrets are merely unreadable for a moment).
func (w *Watcher) sync(ctx context.Context, name string) error {
	var mc platformv1.MetaChannel
	err := w.cache.Get(ctx, types.NamespacedName{Namespace: w.cfg.Namespace, Name: name}, &mc)
	switch {
	case apierrors.IsNotFound(err):
		w.unserve(name, reasonDeleted)
		w.forgetOffboarding(name) // a channel created again with this name starts afresh
		return nil
	case err != nil:
		return fmt.Errorf("get cached metachannel %s: %w", name, err)
	}
	if reason := refusal(&mc); reason != "" {
		w.unserve(name, reason)
		return nil
	}
	if w.offboarded(ctx, &mc) {
		w.unserve(name, reasonOffboarded)
		return nil
	}
	ch, reason, err := w.resolve(ctx, &mc)
	if err != nil {
		if key, ok := w.served[name]; !ok || key != servedKey(&mc) {
			w.unserve(name, reason)
		}
		return err
	}
	if reason != "" {
		w.unserve(name, reason)
		return nil
	}
	prev, had := w.cfg.Registry.Lookup(name)
	if err := w.cfg.Registry.Upsert(ch); err != nil {
		// Another served channel still holds the account (the operator's verdicts
		// changed faster than our events arrived): retry until it is gone.
		reason := reasonInvalid
		if errors.Is(err, channels.ErrConflict) {
			reason = reasonAccountInUse
		}
		w.unserve(name, reason)
		return fmt.Errorf("serve channel %s: %w", name, err)
	}
	w.served[name] = servedKey(&mc)
	delete(w.notServed, name)
	switch {
	case !had:
		w.cfg.Log.Info("Channel served", "channel", name, "platform", string(ch.Platform))
	case !reflect.DeepEqual(prev, ch):
		// Says that something changed (a rotated secret, a new token), never what.
		w.cfg.Log.Info("Channel updated", "channel", name)
	}
	return nil
}

// servedKey ties a registry entry to one object and generation: a recreated channel or a
// changed spec must not keep serving with what was resolved before.
func servedKey(mc *platformv1.MetaChannel) string {
	return fmt.Sprintf("%s/%d", mc.UID, mc.Generation)
}

// refusal says why the operator does not let this channel be served, or "" if it does:
// Ready=True, stamped for the current generation (a spec change is not served until the
// operator has judged it: it could claim another tenant's account).
func refusal(mc *platformv1.MetaChannel) string {
	if mc.DeletionTimestamp != nil {
		return reasonDeleting
	}
	c := apimeta.FindStatusCondition(mc.Status.Conditions, platformv1.ConditionReady)
	switch {
	case c == nil:
		return reasonNotReady
	case c.Status != metav1.ConditionTrue:
		if c.Reason != "" {
			return c.Reason
		}
		return reasonNotReady
	case c.ObservedGeneration != mc.Generation:
		return reasonStale
	}
	return ""
}

func (w *Watcher) unserve(name, reason string) {
	_, had := w.cfg.Registry.Lookup(name)
	w.cfg.Registry.Delete(name)
	delete(w.served, name)
	if reason == reasonDeleted {
		if had {
			w.cfg.Log.Info("Channel no longer served", "channel", name, "reason", reason)
		}
		delete(w.notServed, name)
		return
	}
	if had || w.notServed[name] != reason {
		w.cfg.Log.Info("Channel not served", "channel", name, "reason", reason)
	}
	w.notServed[name] = reason
}

// resolve reads the channel's Secrets from their watches and builds its registry entry.
// It returns a reason when the channel cannot be served as it stands (a Secret or key is
// missing or empty: its watch brings the fix), or an error when a Secret's watch has not
// synced yet and the channel should be tried again soon (Forbidden while the operator
// adds the Secret to the Role, a network error).
func (w *Watcher) resolve(ctx context.Context, mc *platformv1.MetaChannel) (channels.Channel, string, error) {
	ch := channels.Channel{
		Name:            mc.Name,
		Platform:        meta.Platform(mc.Spec.Platform),
		GraphAPIBaseURL: mc.Spec.GraphAPIBaseURL,
	}
	if mc.Spec.AppRef != nil {
		ch.AppRef = mc.Spec.AppRef.Name
	}
	if s := mc.Spec.WhatsApp; s != nil {
		ch.WhatsApp = &channels.WhatsAppIDs{PhoneNumberID: channels.ID(s.PhoneNumberID), BusinessAccountID: channels.ID(s.BusinessAccountID)}
	}
	if s := mc.Spec.Messenger; s != nil {
		ch.Messenger = &channels.MessengerIDs{PageID: channels.ID(s.PageID)}
	}
	if s := mc.Spec.Instagram; s != nil {
		ch.Instagram = &channels.InstagramIDs{AccountID: channels.ID(s.AccountID)}
	}
	refs := []struct {
		ref *platformv1.SecretKeyRef
		dst *string
	}{{mc.Spec.AppSecretRef, &ch.AppSecret}, {mc.Spec.VerifyTokenRef, &ch.VerifyToken}, {mc.Spec.AccessTokenRef, &ch.AccessToken}}
	for _, r := range refs {
		if r.ref == nil {
			continue
		}
		s, err := w.watchSecret(r.ref.Name).get()
		switch {
		case apierrors.IsForbidden(err):
			return ch, reasonSecretForbidden, fmt.Errorf("watch secret %s: %w", r.ref.Name, err)
		case err != nil:
			return ch, reasonSecretError, fmt.Errorf("watch secret %s: %w", r.ref.Name, err)
		case s == nil:
			return ch, reasonSecretMissing, nil
		}
		v, ok := s.Data[r.ref.Key]
		if !ok {
			return ch, reasonSecretKey, nil
		}
		// Trimmed: `kubectl create secret --from-file` keeps the file's final newline,
		// which would silently break every signature. The operator ignores it too when it
		// checks that a value is not empty.
		if *r.dst = strings.TrimSpace(string(v)); *r.dst == "" {
			return ch, reasonSecretEmpty, nil
		}
	}
	if err := ch.Validate(); err != nil {
		return ch, reasonInvalid, nil //nolint:nilerr // an invalid channel is a result (the reason), not a failure to read it
	}
	return ch, "", nil
}
