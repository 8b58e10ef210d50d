// Package subjecterasure is the worker's half of a DeletionRequest: it
// erases one end-user's records from the tenant's store (the only component
// that can reach it), writes the ledger entry, and reports the outcome in
// the request's status without naming the person.
package subjecterasure

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// Retries of a request whose subject the worker may not read yet (the operator accepts a
// request a moment before its Tenant controller names the Secret in the worker's Role,
// and nothing the worker can watch says when that happened) back off from retryBase to
// retryMax: one read per retryMax at most while a grant never comes.
const (
	retryBase = 500 * time.Millisecond
	retryMax  = 30 * time.Second
)

// Processor carries out the DeletionRequests of one namespace.
type Processor struct {
	// Client reads the Secrets a request names, and writes the requests' status, as the
	// worker's ServiceAccount.
	Client client.Client
	// RestConfig reaches the API server as the same ServiceAccount; Run watches the
	// namespace's DeletionRequests with it.
	RestConfig *rest.Config
	Namespace  string
	Store      store.Store
	Clock      clock.PassiveClock
	Log        logr.Logger

	// finished holds the requests this worker completed or saw closed (name -> UID):
	// the watch may still deliver the Pending or Running state it wrote before, and
	// such a stale copy must not start the erasure again. Touched only by Run's loop.
	finished map[string]types.UID
}

// Run watches the namespace's DeletionRequests and carries out each open one as it
// arrives or changes, until ctx ends. Nothing is polled: an idle namespace costs the
// API server one watch.
func (p *Processor) Run(ctx context.Context) error {
	if p.RestConfig == nil || p.Client == nil || p.Namespace == "" {
		return errors.New("subjecterasure: client, rest config and namespace are required")
	}
	c, err := cache.New(p.RestConfig, cache.Options{
		Scheme:                      p.Client.Scheme(),
		DefaultNamespaces:           map[string]cache.Config{p.Namespace: {}},
		DefaultTransform:            cache.TransformStripManagedFields(),
		ReaderFailOnMissingInformer: true,
	})
	if err != nil {
		return fmt.Errorf("create deletion request cache for namespace %s: %w", p.Namespace, err)
	}
	inf, err := c.GetInformer(ctx, &platformv1.DeletionRequest{})
	if err != nil {
		return fmt.Errorf("deletion request informer: %w", err)
	}
	limiter := workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax)
	queue := workqueue.NewTypedRateLimitingQueueWithConfig(limiter, workqueue.TypedRateLimitingQueueConfig[string]{})
	defer queue.ShutDown()
	enqueue := func(obj any) {
		if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if o, ok := obj.(metav1.Object); ok {
			queue.Add(o.GetName())
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, obj any) { enqueue(obj) }, DeleteFunc: enqueue,
	}); err != nil {
		return fmt.Errorf("deletion request event handler: %w", err)
	}
	cacheCtx, stopCache := context.WithCancel(ctx)
	defer stopCache()
	cacheErr := make(chan error, 1)
	go func() {
		cacheErr <- c.Start(cacheCtx)
		queue.ShutDown() // the watch is gone: nothing more will arrive
	}()
	p.finished = map[string]types.UID{}
	for p.processNext(ctx, c, queue) {
	}
	stopCache()
	if err := <-cacheErr; err != nil && ctx.Err() == nil {
		return fmt.Errorf("deletion request cache: %w", err)
	}
	return nil
}

func (p *Processor) processNext(ctx context.Context, c client.Reader, queue workqueue.TypedRateLimitingInterface[string]) bool {
	name, shutdown := queue.Get()
	if shutdown {
		return false
	}
	defer queue.Done(name)
	var dr platformv1.DeletionRequest
	err := c.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, &dr)
	switch {
	case apierrors.IsNotFound(err):
		delete(p.finished, name)
		queue.Forget(name)
		return true
	case err != nil:
		p.Log.V(1).Info("Deletion request not readable from the cache; retrying", "deletionRequest", name, "error", err.Error())
		queue.AddRateLimited(name)
		return true
	}
	if !open(&dr) || p.finished[name] == dr.UID {
		queue.Forget(name)
		return true
	}
	err = p.process(ctx, &dr)
	switch {
	case errors.Is(err, errNotGranted):
		queue.AddRateLimited(name)
	case errors.Is(err, errNotOpen):
		p.Log.V(1).Info("Deletion request no longer open; left alone", "deletionRequest", dr.Name, "phase", dr.Status.Phase)
		p.finished[name] = dr.UID
		queue.Forget(name)
	case err != nil:
		if ctx.Err() == nil {
			p.Log.Error(err, "Deletion request not carried out; retrying", "deletionRequest", dr.Name)
		}
		queue.AddRateLimited(name)
	default:
		if !open(&dr) {
			p.finished[name] = dr.UID
		}
		queue.Forget(name)
	}
	return true
}

// open: the operator has accepted the request (Pending) or a worker started it (Running).
func open(dr *platformv1.DeletionRequest) bool {
	return dr.Status.Phase == platformv1.DeletionPending || dr.Status.Phase == platformv1.DeletionRunning
}

// ProcessPending carries out, once, every request the operator has accepted (Pending) or
// that a previous run started (Running). A request whose subject is not readable yet is
// left for a later call.
func (p *Processor) ProcessPending(ctx context.Context) error {
	var list platformv1.DeletionRequestList
	if err := p.Client.List(ctx, &list, client.InNamespace(p.Namespace)); err != nil {
		return fmt.Errorf("list deletion requests: %w", err)
	}
	var errs []error
	for i := range list.Items {
		dr := &list.Items[i]
		if !open(dr) {
			continue
		}
		if err := p.Process(ctx, dr); err != nil {
			errs = append(errs, fmt.Errorf("deletion request %s: %w", dr.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Process erases one request's subject. It is idempotent: a request left
// Running by a crash is erased again, and a repeated request for the same
// person completes with zero counts. A request that the operator refused
// meanwhile (its status changed under the worker) is left alone.
func (p *Processor) Process(ctx context.Context, dr *platformv1.DeletionRequest) error {
	err := p.process(ctx, dr)
	if errors.Is(err, errNotOpen) {
		p.Log.V(1).Info("Deletion request no longer open; left alone", "deletionRequest", dr.Name, "phase", dr.Status.Phase)
		return nil
	}
	if errors.Is(err, errNotGranted) {
		return nil
	}
	return err
}

func (p *Processor) process(ctx context.Context, dr *platformv1.DeletionRequest) error {
	log := p.Log.WithValues("deletionRequest", dr.Name)
	scope, err := erasureScope(dr.Spec.Scope)
	if err != nil {
		// The CRD's enum admits nothing else; a request that still gets here is refused
		// rather than erased more widely than it asked.
		return p.report(ctx, dr, func(s *platformv1.DeletionRequestStatus) {
			s.Phase = platformv1.DeletionFailed
			setErased(s, dr.Generation, false, "ScopeUnsupported", err.Error())
		})
	}
	id, err := p.secretValue(ctx, dr.Spec.SubjectSecretRef.Name, dr.Spec.SubjectSecretRef.Key)
	if err != nil {
		if apierrors.IsForbidden(err) {
			// The operator accepted the request and is adding its Secret to the
			// Role: a later try finds it readable.
			log.V(1).Info("Subject Secret not readable yet; waiting for the Role")
			return errNotGranted
		}
		if apierrors.IsNotFound(err) || errors.Is(err, errMissingKey) {
			return p.report(ctx, dr, func(s *platformv1.DeletionRequestStatus) {
				s.Phase = platformv1.DeletionFailed
				setErased(s, dr.Generation, false, platformv1.ReasonSubjectSecretMissing,
					fmt.Sprintf("the subject Secret %s has no value under key %s", dr.Spec.SubjectSecretRef.Name, dr.Spec.SubjectSecretRef.Key))
			})
		}
		return fmt.Errorf("read subject: %w", err)
	}
	key, err := p.secretValue(ctx, platformv1.SubjectKeySecretName, platformv1.SubjectKeySecretKey)
	if err != nil {
		return fmt.Errorf("read the tenant's subject key (the operator creates it): %w", err)
	}
	subject := store.Subject{Platform: meta.Platform(dr.Spec.Platform), ID: Normalize(dr.Spec.Platform, string(id))}
	ref := SubjectRef(key, dr.Spec.Platform, subject.ID)

	if dr.Status.Phase == platformv1.DeletionPending {
		// Running first: after a crash the next run knows it must finish.
		if err := p.report(ctx, dr, func(s *platformv1.DeletionRequestStatus) {
			s.Phase = platformv1.DeletionRunning
			s.SubjectRef = ref
		}); err != nil {
			return err
		}
	}
	requested := p.Clock.Now()
	if dr.Status.ReceivedAt != nil {
		requested = dr.Status.ReceivedAt.Time
	}
	counts, err := p.Store.Erase(ctx, store.EraseRequest{
		Subject: subject, Channel: dr.Spec.Channel, Scope: scope, SubjectRef: ref, RequestedAt: requested,
	})
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	code := dr.Status.ConfirmationCode
	if code == "" {
		if code, err = confirmationCode(); err != nil {
			return err
		}
	}
	log.Info("Subject erased", "messages", counts.Messages, "contacts", counts.Contacts, "statuses", counts.Statuses, "files", counts.Files, "fileBytes", counts.FileBytes)
	return p.report(ctx, dr, func(s *platformv1.DeletionRequestStatus) {
		now := metav1.NewTime(p.Clock.Now().UTC().Truncate(time.Second))
		s.Phase = platformv1.DeletionCompleted
		s.CompletedAt = &now
		s.SubjectRef = ref
		s.ConfirmationCode = code
		s.Erased = &platformv1.ErasedCounts{
			Messages: int64(counts.Messages), Statuses: int64(counts.Statuses),
			Contacts: int64(counts.Contacts), Files: int64(counts.Files),
			FileBytes: counts.FileBytes,
		}
		what := "the subject's " + strings.ToLower(strings.Join(scope.Names(), ", "))
		if dr.Spec.Channel != "" {
			what += " on channel " + dr.Spec.Channel
		}
		msg := what + " are erased"
		if counts == (store.Counts{}) {
			msg = "no data linked to this identifier was found (" + what +
				"); nothing was stored about it, or it was erased before"
		}
		setErased(s, dr.Generation, true, platformv1.ReasonCompleted, msg)
	})
}

var errMissingKey = errors.New("key missing or empty")

func (p *Processor) secretValue(ctx context.Context, name, key string) ([]byte, error) {
	var s corev1.Secret
	if err := p.Client.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: name}, &s); err != nil {
		return nil, err
	}
	v := s.Data[key]
	if len(strings.TrimSpace(string(v))) == 0 {
		return nil, fmt.Errorf("secret %s: %w", name, errMissingKey)
	}
	return v, nil
}

// errNotGranted: the worker's Role does not name the request's subject Secret yet.
var errNotGranted = errors.New("the subject Secret is not granted to the worker yet")

// errNotOpen: the request was finished (or refused) by someone else meanwhile.
var errNotOpen = errors.New("the deletion request is no longer open")

// report writes the worker's status fields (phase, counts, subjectRef,
// confirmationCode, the SubjectErased condition) with an optimistic lock: the
// operator writes other fields of the same status, conditions included, and a
// merge patch from a stale read would put back a list the other side changed.
// On a conflict it reads the request again and applies change to that, unless
// the request is no longer Pending or Running (then it returns errNotOpen).
func (p *Processor) report(ctx context.Context, dr *platformv1.DeletionRequest, change func(*platformv1.DeletionRequestStatus)) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		orig := dr.DeepCopy()
		change(&dr.Status)
		err := p.Client.Status().Patch(ctx, dr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		if !apierrors.IsConflict(err) {
			return err
		}
		if err := p.Client.Get(ctx, client.ObjectKeyFromObject(dr), dr); err != nil {
			return err
		}
		if !open(dr) {
			return errNotOpen
		}
		return err
	})
	if errors.Is(err, errNotOpen) {
		return err
	}
	if err != nil {
		return fmt.Errorf("report status: %w", err)
	}
	return nil
}

// setErased writes the worker's one condition; Ready is the operator's.
func setErased(s *platformv1.DeletionRequestStatus, gen int64, ok bool, reason, msg string) {
	st := metav1.ConditionFalse
	if ok {
		st = metav1.ConditionTrue
	}
	apimeta.SetStatusCondition(&s.Conditions, metav1.Condition{
		Type: platformv1.ConditionSubjectErased, Status: st, Reason: reason, Message: msg, ObservedGeneration: gen,
	})
}

// erasureScope turns the request's scope into the store's; an empty list is every kind.
func erasureScope(scope []platformv1.DeletionScope) (store.Scope, error) {
	names := make([]string, len(scope))
	for i, s := range scope {
		names[i] = string(s)
	}
	return store.ParseScope(names)
}

// Normalize turns what a person or a support agent typed into the form the
// platform uses in webhooks: WhatsApp wa_ids are digits only ("+1 650-555
// 0100" is "16505550100"); other ids are kept but trimmed.
func Normalize(p platformv1.Platform, id string) string {
	id = strings.TrimSpace(id)
	if p != platformv1.PlatformWhatsApp || strings.Trim(id, "0123456789+ -().") != "" {
		return id // not a phone number (a business-scoped user id, a PSID): as is
	}
	return strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, id)
}

// SubjectRef is the keyed hash that names a subject in status and in the
// ledger: stable within a tenant, meaningless without the tenant's key.
func SubjectRef(key []byte, p platformv1.Platform, id string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(string(p) + "\x00" + id))
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

func confirmationCode() (string, error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("confirmation code: %w", err)
	}
	return hex.EncodeToString(b), nil
}
