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
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// DefaultInterval is how often pending requests are looked for.
const DefaultInterval = 5 * time.Second

// Processor carries out the DeletionRequests of one namespace.
type Processor struct {
	// Client reads DeletionRequests and the Secrets they name, and writes
	// their status, as the worker's ServiceAccount.
	Client    client.Client
	Namespace string
	Store     store.Store
	Clock     clock.PassiveClock
	Log       logr.Logger
	// Interval between looks for pending requests; 0 means DefaultInterval.
	Interval time.Duration
}

// Run processes pending requests until ctx ends.
func (p *Processor) Run(ctx context.Context) error {
	interval := p.Interval
	if interval == 0 {
		interval = DefaultInterval
	}
	for {
		if err := p.ProcessPending(ctx); err != nil && ctx.Err() == nil {
			p.Log.Error(err, "Processing deletion requests failed; retrying")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}

// ProcessPending carries out every request the operator has accepted
// (Pending) or that a previous run started (Running).
func (p *Processor) ProcessPending(ctx context.Context) error {
	var list platformv1.DeletionRequestList
	if err := p.Client.List(ctx, &list, client.InNamespace(p.Namespace)); err != nil {
		return fmt.Errorf("list deletion requests: %w", err)
	}
	var errs []error
	for i := range list.Items {
		dr := &list.Items[i]
		if dr.Status.Phase != platformv1.DeletionPending && dr.Status.Phase != platformv1.DeletionRunning {
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
			// Role: the next look finds it readable.
			log.V(1).Info("Subject Secret not readable yet; waiting for the Role")
			return nil
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
	log.Info("Subject erased", "messages", counts.Messages, "contacts", counts.Contacts, "statuses", counts.Statuses, "files", counts.Files)
	return p.report(ctx, dr, func(s *platformv1.DeletionRequestStatus) {
		now := metav1.NewTime(p.Clock.Now().UTC().Truncate(time.Second))
		s.Phase = platformv1.DeletionCompleted
		s.CompletedAt = &now
		s.SubjectRef = ref
		s.ConfirmationCode = code
		s.Erased = &platformv1.ErasedCounts{
			Messages: int64(counts.Messages), Statuses: int64(counts.Statuses),
			Contacts: int64(counts.Contacts), Files: int64(counts.Files),
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
		if ph := dr.Status.Phase; ph != platformv1.DeletionPending && ph != platformv1.DeletionRunning {
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
