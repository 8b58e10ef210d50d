package clusterchannels

import (
	"context"
	"fmt"
	"sync"

	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/secretwatch"
)

// secretWatch is the watch of one Secret by name (field selector metadata.name), which a
// Role rule with that one resourceName allows.
type secretWatch struct {
	name     string
	informer toolscache.SharedIndexInformer
	stop     context.CancelFunc
	answered chan struct{} // closed once the first list succeeded or failed
	once     sync.Once

	mu  sync.Mutex
	err error // why the watch has not synced yet (Forbidden, say); nil once synced
}

func (s *secretWatch) answer(err error) {
	s.mu.Lock()
	if err != nil && !s.informer.HasSynced() {
		s.err = err
	}
	s.mu.Unlock()
	s.once.Do(func() { close(s.answered) })
}

// get returns the Secret as last seen by the watch, nil if it does not exist, or an
// error if the watch has not synced yet.
func (s *secretWatch) get() (*corev1.Secret, error) {
	if !s.informer.HasSynced() {
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err == nil {
			err = fmt.Errorf("watch of secret %s not synced yet", s.name)
		}
		return nil, err
	}
	// The store's key of a namespaced object is <namespace>/<name>; the watch holds
	// at most this one Secret, so its only item is it.
	for _, obj := range s.informer.GetStore().List() {
		if sec, ok := obj.(*corev1.Secret); ok && sec.Name == s.name {
			return sec, nil
		}
	}
	return nil, nil
}

// watchSecret returns the watch of Secret name, starting it if needed. It runs until
// the Watcher's loop ends or no served channel references the Secret any more.
func (w *Watcher) watchSecret(name string) *secretWatch {
	if sw, ok := w.secretWatches[name]; ok {
		return sw
	}
	inf := secretwatch.Informer(w.clientset, w.cfg.Namespace, name)
	watchCtx, stop := context.WithCancel(w.watchCtx)
	sw := &secretWatch{name: name, informer: inf, stop: stop, answered: make(chan struct{})}
	// Refused (the Role does not name the Secret yet) or failed: the reflector tries
	// again with its own backoff; the channel waits for the watch to sync.
	_ = inf.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *toolscache.Reflector, err error) {
		w.cfg.Log.V(1).Info("Secret watch failed; retrying", "secret", name, "error", err.Error())
		sw.answer(err)
	})
	users := func(any) { w.enqueueUsers(name) }
	_, _ = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: users, UpdateFunc: func(_, obj any) { users(obj) }, DeleteFunc: users,
	})
	go inf.RunWithContext(watchCtx)
	go func() {
		// A Secret that does not exist gives no event: say so to its channels on sync.
		if toolscache.WaitForCacheSync(watchCtx.Done(), inf.HasSynced) {
			sw.answer(nil)
			w.enqueueUsers(name)
		}
	}()
	w.secretWatches[name] = sw
	return sw
}

// enqueueUsers queues every channel that references Secret name. It is called from the
// watches' goroutines and reads only the MetaChannel cache.
func (w *Watcher) enqueueUsers(name string) {
	list, err := w.cachedChannels(w.watchCtx)
	if err != nil {
		w.cfg.Log.Error(err, "Cannot list channels for a Secret change", "secret", name)
		return
	}
	for i := range list {
		for _, ref := range secretRefs(&list[i]) {
			if ref == name {
				w.queue.Add(list[i].Name)
				break
			}
		}
	}
}

// watchWantedSecrets starts the watches of every Secret a servable channel references
// and waits until each has answered once, so that the first pass reads them all.
func (w *Watcher) watchWantedSecrets(ctx context.Context) error {
	wanted, err := w.wantedSecrets(ctx)
	if err != nil {
		return err
	}
	for name := range wanted {
		select {
		case <-w.watchSecret(name).answered:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// releaseSecretWatches stops the watches of Secrets no servable channel references.
func (w *Watcher) releaseSecretWatches(ctx context.Context) {
	wanted, err := w.wantedSecrets(ctx)
	if err != nil {
		return // kept until the next sync can tell
	}
	for name, sw := range w.secretWatches {
		if !wanted[name] {
			sw.stop()
			delete(w.secretWatches, name)
		}
	}
}

// wantedSecrets are the Secrets of the channels the operator lets the worker serve.
func (w *Watcher) wantedSecrets(ctx context.Context) (map[string]bool, error) {
	list, err := w.cachedChannels(ctx)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for i := range list {
		if refusal(&list[i]) != "" {
			continue
		}
		for _, ref := range secretRefs(&list[i]) {
			wanted[ref] = true
		}
	}
	return wanted, nil
}

func (w *Watcher) cachedChannels(ctx context.Context) ([]platformv1.MetaChannel, error) {
	var list platformv1.MetaChannelList
	if err := w.cache.List(ctx, &list, client.InNamespace(w.cfg.Namespace)); err != nil {
		return nil, fmt.Errorf("list cached metachannels: %w", err)
	}
	return list.Items, nil
}

// secretRefs names the Secrets a channel references.
func secretRefs(mc *platformv1.MetaChannel) []string {
	// A channel with appRef names no app secret or verify token of its own:
	// the MetaApp's front door checks Meta's signature.
	var refs []string
	for _, r := range []*platformv1.SecretKeyRef{mc.Spec.AppSecretRef, mc.Spec.VerifyTokenRef, mc.Spec.AccessTokenRef} {
		if r != nil {
			refs = append(refs, r.Name)
		}
	}
	return refs
}
