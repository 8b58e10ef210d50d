package ingest

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/webhookhttp"
)

// maxDeletionForm caps the callback's form: a signed_request is a few hundred bytes.
const maxDeletionForm = 64 << 10

// handleDataDeletion is Meta's Data Deletion Request Callback (meta-webhooks.md §6.1):
// a form field signed_request signed with the channel's app secret. A verified request
// files a DeletionRequest (source MetaCallback) and answers the status page's URL and
// the request's confirmation code. Nothing is filed for anything that does not verify.
func (s *Server) handleDataDeletion(w http.ResponseWriter, r *http.Request) {
	ch, ok := s.opts.Registry.Lookup(r.PathValue("channel"))
	if !ok {
		writeText(w, http.StatusNotFound, "unknown channel\n")
		return
	}
	log := s.opts.Log.WithValues("channel", ch.Name)
	r.Body = http.MaxBytesReader(w, r.Body, maxDeletionForm)
	if err := r.ParseForm(); err != nil {
		log.Info("Data-deletion callback refused", "reason", "unreadable form")
		writeText(w, http.StatusBadRequest, "bad request\n")
		return
	}
	// Only the body: Meta posts a form, and a signed_request in a URL ends up in access logs.
	sr, err := meta.ParseSignedRequest([]byte(ch.AppSecret), r.PostForm.Get(meta.SignedRequestField))
	if err != nil {
		// The reason only: never the signed request, which carries the user id.
		log.Info("Data-deletion callback refused", "reason", err.Error())
		writeText(w, http.StatusBadRequest, "bad request\n")
		return
	}
	if s.opts.Deletions == nil {
		// Standalone: no cluster to file a DeletionRequest in. A clear, stable answer
		// rather than a 503 that invites retries which could never succeed.
		log.Info("Data-deletion callback verified but not supported in standalone mode")
		writeText(w, http.StatusNotImplemented,
			"data-deletion requests are filed as DeletionRequests: this worker runs standalone, without a cluster\n")
		return
	}
	code, err := s.opts.Deletions.FileMetaCallback(r.Context(), ch.Name, platformv1.Platform(ch.Platform), sr.UserID)
	if err != nil {
		// Not filed (or filed incompletely): Meta may call again.
		log.Error(err, "Data-deletion request not filed")
		writeText(w, http.StatusServiceUnavailable, "the request could not be recorded; try again later\n")
		return
	}
	log.Info("Data-deletion request filed from Meta's callback")
	webhookhttp.WriteDeletionAccepted(w, s.deletionStatusURL(r, code), code)
}

// deletionStatusURL is where the person follows the request: under --public-base-url
// when set, else under the URL the callback came in on (its Host and X-Forwarded-Proto,
// and the /t/<tenant> prefix if it came through the tenant's Ingress path).
func (s *Server) deletionStatusURL(r *http.Request, code string) string {
	const path = "/meta/deletion-status/"
	if s.opts.PublicBaseURL != "" {
		return strings.TrimRight(s.opts.PublicBaseURL, "/") + path + code
	}
	prefix := ""
	if t := r.PathValue("tenant"); t != "" {
		prefix = "/t/" + t
	}
	return webhookhttp.RequestBase(r) + prefix + path + code
}

// handleDeletionStatus is the page the callback's URL points to: the request's phase
// and dates, in plain words, and nothing about the person.
func (s *Server) handleDeletionStatus(w http.ResponseWriter, r *http.Request) {
	if s.opts.Deletions == nil {
		writeText(w, http.StatusNotImplemented, "deletion requests are kept in the cluster: this worker runs standalone\n")
		return
	}
	dr, ok := s.lookupDeletion(w, r, r.PathValue("code"))
	if !ok {
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeText(w, http.StatusOK, DeletionStatusPage(dr))
}

// DeletionStatusPage renders a request's status for the person who asked: the phase,
// when it was received and finished, and for a completed request whether anything was
// found. No identifier, subject reference, count or internal message.
func DeletionStatusPage(dr *platformv1.DeletionRequest) string {
	var b strings.Builder
	b.WriteString("Data deletion request\n\n")
	fmt.Fprintf(&b, "Confirmation code: %s\n", dr.Status.ConfirmationCode)
	received := dr.CreationTimestamp.Time
	if dr.Status.ReceivedAt != nil {
		received = dr.Status.ReceivedAt.Time
	}
	phase := dr.Status.Phase
	if phase == "" {
		phase = platformv1.DeletionPending
	}
	fmt.Fprintf(&b, "Status: %s\n", phase)
	fmt.Fprintf(&b, "Received: %s\n", received.UTC().Format(time.RFC3339))
	if dr.Status.CompletedAt != nil {
		fmt.Fprintf(&b, "Completed: %s\n", dr.Status.CompletedAt.UTC().Format(time.RFC3339))
	}
	b.WriteString("\n")
	erased := dr.Status.Erased != nil && *dr.Status.Erased != (platformv1.ErasedCounts{})
	b.WriteString(subjecterasure.PhaseSentence(phase, erased) + "\n")
	if dr.Status.Deadline != nil && phase != platformv1.DeletionCompleted && dr.Status.CompletedAt == nil {
		fmt.Fprintf(&b, "It will be answered by %s at the latest.\n", dr.Status.Deadline.UTC().Format(time.RFC3339))
	}
	return b.String()
}

// lookupDeletion finds the request of this tenant with code, or answers why not (404
// for an unknown or malformed code, 503 when the cluster cannot be asked) and reports
// false.
func (s *Server) lookupDeletion(w http.ResponseWriter, r *http.Request, code string) (*platformv1.DeletionRequest, bool) {
	if !subjecterasure.ValidCode(code) {
		writeText(w, http.StatusNotFound, "unknown confirmation code\n")
		return nil, false
	}
	dr, err := s.opts.Deletions.Lookup(r.Context(), code)
	switch {
	case errors.Is(err, subjecterasure.ErrUnknownCode):
		writeText(w, http.StatusNotFound, "unknown confirmation code\n")
		return nil, false
	case err != nil:
		s.opts.Log.Error(err, "Deletion status not available")
		writeText(w, http.StatusServiceUnavailable, "the status is not available right now; try again later\n")
		return nil, false
	}
	return dr, true
}
