package subjecterasure

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

const (
	// MetaCallbackPrefix names the DeletionRequests (and their subject Secrets) that
	// Meta's data-deletion callback files.
	MetaCallbackPrefix = "meta-deletion-"
	// SubjectIDKey is the key of the identifier in a subject Secret the worker creates.
	SubjectIDKey = "id"
	// LabelChannel on a callback's request names the MetaChannel whose callback filed it
	// (a channel name, nothing personal): which Meta app the user id is scoped to.
	LabelChannel = "platform.omniflowcrm.com/meta-channel"
	// LabelApp on a request filed for Meta's data-deletion callback at a MetaApp's URL
	// names that MetaApp (the app the user id is scoped to).
	LabelApp = "platform.omniflowcrm.com/meta-app"
)

// ErrUnknownCode: no DeletionRequest of the namespace carries the confirmation code.
var ErrUnknownCode = errors.New("no deletion request has this confirmation code")

// Desk files the DeletionRequests of Meta's data-deletion callback and looks requests
// up by confirmation code, as the worker's ServiceAccount.
type Desk struct {
	Client    client.Client
	Namespace string
}

// FileMetaCallback files a request to erase userID (Meta's app-scoped user id, already
// verified) received on channel, and returns the request's confirmation code.
func (d *Desk) FileMetaCallback(ctx context.Context, channel string, platform platformv1.Platform, userID string) (string, error) {
	suffix, err := randomHex(8)
	if err != nil {
		return "", err
	}
	code, err := confirmationCode()
	if err != nil {
		return "", err
	}
	return d.file(ctx, MetaCallbackPrefix+suffix, code, map[string]string{LabelChannel: channel}, platform,
		"Meta data-deletion callback (app-scoped user id) on channel "+channel, userID)
}

// FileAppCallback files, under code, the request that Meta's data-deletion callback at
// the MetaApp app's URL asks of this tenant (the front door chose code and verified
// userID). Filing the same code again files nothing new and completes what a previous
// attempt left undone, so that Meta's retry is safe. It returns the request's name.
func (d *Desk) FileAppCallback(ctx context.Context, app string, platform platformv1.Platform, userID, code string) (string, error) {
	if !ValidCode(code) {
		return "", fmt.Errorf("confirmation code %q: want 1 to 64 letters or digits", code)
	}
	name := MetaCallbackPrefix + strings.ToLower(code)
	if _, err := d.file(ctx, name, code, map[string]string{LabelApp: app}, platform,
		"Meta data-deletion callback (app-scoped user id) at MetaApp "+app, userID); err != nil {
		return "", err
	}
	return name, nil
}

// file creates the request name (or finds it, made by an earlier attempt), then writes
// code to its status, then the Secret holding the identifier, owned by the request so
// that it can never outlive it even if the operator's clean-up does not run. The
// identifier is never in a field of the request. On failure after the request exists,
// the request stays and ends Failed (SubjectMissing) or Completed: visible, never
// silently lost; the caller answers an error so that Meta calls again. A finished
// request found again gets no Secret back: the operator removed it on purpose.
func (d *Desk) file(ctx context.Context, name, code string, labels map[string]string, platform platformv1.Platform, reason, userID string) (string, error) {
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: d.Namespace, Labels: labels},
		Spec: platformv1.DeletionRequestSpec{
			// Meta's user id is app-scoped: it is none of the platform's messaging ids,
			// so it matches nothing stored unless Meta ever sends one that is; the
			// channel's platform is the best available (docs/ingest-worker.md).
			Platform:         platform,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: name, Key: SubjectIDKey},
			Source:           platformv1.SourceMetaCallback,
			Reason:           reason,
		},
	}
	if err := d.Client.Create(ctx, dr); apierrors.IsAlreadyExists(err) {
		if err := d.Client.Get(ctx, client.ObjectKeyFromObject(dr), dr); err != nil {
			return "", fmt.Errorf("read deletion request %s: %w", name, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("create deletion request: %w", err)
	}
	// With an optimistic lock: the operator may be writing the request's status
	// (receivedAt, conditions) at this very moment.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if dr.Status.ConfirmationCode != "" {
			return nil
		}
		patch := client.MergeFromWithOptions(dr.DeepCopy(), client.MergeFromWithOptimisticLock{})
		dr.Status.ConfirmationCode = code
		err := d.Client.Status().Patch(ctx, dr, patch)
		if apierrors.IsConflict(err) {
			if gerr := d.Client.Get(ctx, client.ObjectKeyFromObject(dr), dr); gerr != nil {
				return gerr
			}
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("record confirmation code of deletion request %s: %w", name, err)
	}
	code = dr.Status.ConfirmationCode
	switch dr.Status.Phase {
	case platformv1.DeletionCompleted, platformv1.DeletionRefused, platformv1.DeletionFailed:
		return code, nil
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: d.Namespace, Labels: labels,
			// Not blockOwnerDeletion: that would need update on the request's finalizers.
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: platformv1.GroupVersion.String(), Kind: "DeletionRequest", Name: dr.Name, UID: dr.UID,
			}},
		},
		// The subject type: the only kind of Secret the operator lets the worker
		// read, and the only kind the admission policy lets the worker create.
		Type:      platformv1.SubjectSecretType,
		Immutable: ptr.To(true),
		Data:      map[string][]byte{SubjectIDKey: []byte(userID)},
	}
	if err := d.Client.Create(ctx, secret); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create subject secret of deletion request %s: %w", name, err)
	}
	return code, nil
}

// Lookup returns the request of the namespace whose status carries code. Codes are
// random and not indexed, so this lists the namespace's requests: there are few (they
// are deleted after their TTL).
func (d *Desk) Lookup(ctx context.Context, code string) (*platformv1.DeletionRequest, error) {
	if code == "" {
		return nil, ErrUnknownCode
	}
	var list platformv1.DeletionRequestList
	if err := d.Client.List(ctx, &list, client.InNamespace(d.Namespace)); err != nil {
		return nil, fmt.Errorf("list deletion requests: %w", err)
	}
	for i := range list.Items {
		if list.Items[i].Status.ConfirmationCode == code {
			return &list.Items[i], nil
		}
	}
	return nil, ErrUnknownCode
}

// ValidCode accepts what confirmation codes are made of (letters and digits, as Meta
// requires, at most 64) before anything is looked up or filed.
func ValidCode(code string) bool {
	if code == "" || len(code) > 64 {
		return false
	}
	for _, c := range code {
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// PhaseSentence says in plain words, for the person who asked, where a request in phase
// is; erased says whether a completed one found anything to erase.
func PhaseSentence(phase platformv1.DeletionPhase, erased bool) string {
	switch phase {
	case platformv1.DeletionRunning:
		return "The data linked to this request is being erased."
	case platformv1.DeletionCompleted:
		if !erased {
			return "No data linked to this identifier was found: nothing was stored about it, or it had been erased before."
		}
		return "The data linked to this identifier was erased."
	case platformv1.DeletionRefused:
		return "The request was refused and not carried out."
	case platformv1.DeletionFailed:
		return "The request could not be carried out and has to be filed again."
	default:
		return "The request was received and is waiting to be carried out."
	}
}
