// Package clusterkey is the worker's datakey.Source in a cluster: it watches the
// tenant's data key Secret, in the operator's namespace, by name (field selector
// metadata.name, which the Role the operator grants allows: get, list and watch of that
// one Secret), and keeps the parsed ring current. A rotation is in force as soon as its
// change arrives; nothing is read while nothing changes.
//
// When the Secret is deleted (the erasure's DestroyKey step), the ring is dropped at once:
// from then on Ring fails, and nothing the worker stored can be opened any more.
package clusterkey

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"

	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
	"github.com/omniflowcrm/omniflow-operator/internal/secretwatch"
)

// Config configures a Watcher.
type Config struct {
	// RestConfig reaches the API server as the worker's ServiceAccount.
	RestConfig *rest.Config
	// Namespace and Name locate the key Secret (the operator's namespace).
	Namespace, Name string
	Log             logr.Logger
}

// ParseRef splits "namespace/name", as the operator passes it in
// $OMNIFLOW_DATA_KEY_SECRET.
func ParseRef(ref string) (namespace, name string, err error) {
	ns, n, ok := strings.Cut(ref, "/")
	if !ok || ns == "" || n == "" || strings.Contains(n, "/") {
		return "", "", fmt.Errorf("data key secret %q: want namespace/name", ref)
	}
	return ns, n, nil
}

// Watcher keeps a tenant's ring from its Secret (see the package comment).
type Watcher struct {
	cfg       Config
	clientset kubernetes.Interface

	mu     sync.Mutex
	ring   *datakey.Ring
	err    error         // why there is no ring (nil while loading for the first time)
	loaded chan struct{} // closed at the first load
	once   sync.Once
	// changed gets a signal (never blocking, at most one pending) whenever the
	// ring's versions change: a rotation, for the encryption pass.
	changed chan struct{}
}

var _ datakey.Source = (*Watcher)(nil)

// New builds a Watcher; nothing is contacted before Run.
func New(cfg Config) (*Watcher, error) {
	if cfg.RestConfig == nil || cfg.Namespace == "" || cfg.Name == "" {
		return nil, errors.New("clusterkey: rest config, namespace and name are required")
	}
	cs, err := kubernetes.NewForConfig(cfg.RestConfig)
	if err != nil {
		return nil, fmt.Errorf("create clientset: %w", err)
	}
	return &Watcher{cfg: cfg, clientset: cs, loaded: make(chan struct{}), changed: make(chan struct{}, 1)}, nil
}

func (w *Watcher) ref() string { return w.cfg.Namespace + "/" + w.cfg.Name }

// Ring is the ring in force; an error before the first load, and once the Secret is
// gone.
func (w *Watcher) Ring() (*datakey.Ring, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ring != nil {
		return w.ring, nil
	}
	if w.err != nil {
		return nil, w.err
	}
	return nil, fmt.Errorf("%w (%s)", datakey.ErrNotLoaded, w.ref())
}

// Loaded is closed once a ring has been loaded.
func (w *Watcher) Loaded() <-chan struct{} { return w.loaded }

// Changed signals each change of the ring's versions (a rotation); a reader that
// lags sees one signal for several changes.
func (w *Watcher) Changed() <-chan struct{} { return w.changed }

// WaitLoaded waits until a ring is loaded, ctx ends or timeout passes; the error says
// why the key could not be had (the Secret missing, the watch refused).
func (w *Watcher) WaitLoaded(ctx context.Context, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.loaded:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		_, err := w.Ring()
		return fmt.Errorf("data key %s not loaded within %s: %w", w.ref(), timeout, err)
	}
}

// Run watches the Secret until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	inf := secretwatch.Informer(w.clientset, w.cfg.Namespace, w.cfg.Name)
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *toolscache.Reflector, err error) {
		// Refused or failed: the reflector retries with its own backoff; a ring already
		// loaded stays in force meanwhile.
		w.cfg.Log.V(1).Info("Data key watch failed; retrying", "secret", w.ref(), "error", err.Error())
		w.mu.Lock()
		if w.ring == nil {
			w.err = fmt.Errorf("watch data key %s: %w", w.ref(), err)
		}
		w.mu.Unlock()
	})
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    w.update,
		UpdateFunc: func(_, obj any) { w.update(obj) },
		DeleteFunc: func(any) { w.destroyed() },
	})
	go func() {
		// A Secret that does not exist gives no event: say so once the list answered.
		if toolscache.WaitForCacheSync(ctx.Done(), inf.HasSynced) && len(inf.GetStore().List()) == 0 {
			w.mu.Lock()
			if w.ring == nil {
				w.err = fmt.Errorf("data key Secret %s not found", w.ref())
			}
			w.mu.Unlock()
		}
	}()
	inf.RunWithContext(ctx)
	return nil
}

// update parses a new version of the Secret. A malformed one is refused and the ring in
// force kept: a half-written key must not replace a good one.
func (w *Watcher) update(obj any) {
	s, ok := obj.(*corev1.Secret)
	if !ok || s.Name != w.cfg.Name {
		return
	}
	ring, err := datakey.Parse(s.Data, nil)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.cfg.Log.Error(err, "Data key Secret is malformed; keeping the key in force", "secret", w.ref())
		if w.ring == nil {
			w.err = fmt.Errorf("data key %s: %w", w.ref(), err)
		}
		return
	}
	if w.ring == nil || w.ring.ActiveVersion() != ring.ActiveVersion() || len(w.ring.Versions()) != len(ring.Versions()) {
		w.cfg.Log.Info("Data key loaded", "secret", w.ref(), "keyVersion", ring.ActiveVersion(), "versions", len(ring.Versions()))
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
	w.ring, w.err = ring, nil
	w.once.Do(func() { close(w.loaded) })
}

// destroyed drops the ring: the key was deleted, and nothing may be read with it.
func (w *Watcher) destroyed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ring = nil
	w.err = fmt.Errorf("data key Secret %s was deleted: the tenant's stored data can no longer be read", w.ref())
	w.cfg.Log.Info("Data key destroyed; stored data can no longer be read", "secret", w.ref())
}
