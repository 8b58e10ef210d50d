package ingest

import (
	"encoding/json"
	"io"
	"net/http"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// handleAppDeletion files the DeletionRequest that Meta's data-deletion callback at a
// MetaApp's URL asks of this tenant: the front door verified Meta's signed_request with
// the app secret, chose the confirmation code, and proves with this tenant's forwarding
// credential that it did. Filing a code twice files one request, so the front door may
// ask again whenever Meta retries. 200 once the request and its subject Secret exist.
func (s *Server) handleAppDeletion(w http.ResponseWriter, r *http.Request) {
	if len(s.opts.ForwardKey) == 0 || s.opts.Tenant == "" {
		writeText(w, http.StatusNotFound, "not found\n")
		return
	}
	log := s.opts.Log.WithValues("forwarded", true)
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDeletionForm))
	if err != nil {
		writeText(w, http.StatusBadRequest, "bad request\n")
		return
	}
	if err := forward.VerifyFor(s.opts.ForwardKey, s.opts.Tenant, forward.PurposeDeletion, body, r.Header.Get(forward.SignatureHeader)); err != nil {
		log.Info("Forwarded data-deletion request refused", "reason", err.Error())
		writeText(w, http.StatusUnauthorized, "unauthorized\n")
		return
	}
	var f forward.DeletionFiling
	if err := json.Unmarshal(body, &f); err != nil || f.UserID == "" || f.App == "" || !subjecterasure.ValidCode(f.Code) || !validPlatform(f.Platform) {
		// Never the body: it carries the user id.
		log.Info("Forwarded data-deletion request refused", "reason", "code, app, platform and userID are required")
		writeText(w, http.StatusBadRequest, "bad request\n")
		return
	}
	if s.opts.Deletions == nil {
		writeText(w, http.StatusNotImplemented, "data-deletion requests are filed as DeletionRequests: this worker runs standalone, without a cluster\n")
		return
	}
	name, err := s.opts.Deletions.FileAppCallback(r.Context(), f.App, platformv1.Platform(f.Platform), f.UserID, f.Code)
	if err != nil {
		log.Error(err, "Data-deletion request of the MetaApp not filed", "app", f.App)
		writeText(w, http.StatusServiceUnavailable, "the request could not be recorded; try again later\n")
		return
	}
	log.Info("Data-deletion request filed from Meta's callback at the app's URL", "app", f.App, "deletionRequest", name)
	writeText(w, http.StatusOK, "filed\n")
}

func validPlatform(p string) bool {
	switch platformv1.Platform(p) {
	case platformv1.PlatformWhatsApp, platformv1.PlatformMessenger, platformv1.PlatformInstagram:
		return true
	}
	return false
}

// handleAppDeletionStatus tells the front door the state of this tenant's request
// filed under a code, for the status page it serves at the app's URL.
func (s *Server) handleAppDeletionStatus(w http.ResponseWriter, r *http.Request) {
	if len(s.opts.ForwardKey) == 0 || s.opts.Tenant == "" {
		writeText(w, http.StatusNotFound, "not found\n")
		return
	}
	code := r.PathValue("code")
	if err := forward.VerifyFor(s.opts.ForwardKey, s.opts.Tenant, forward.PurposeDeletionStatus, []byte(code), r.Header.Get(forward.SignatureHeader)); err != nil {
		writeText(w, http.StatusUnauthorized, "unauthorized\n")
		return
	}
	if s.opts.Deletions == nil {
		writeText(w, http.StatusNotImplemented, "deletion requests are kept in the cluster: this worker runs standalone\n")
		return
	}
	dr, ok := s.lookupDeletion(w, r, code)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(AppDeletionStatus(dr))
}

// AppDeletionStatus is what the front door's status page needs of a request.
func AppDeletionStatus(dr *platformv1.DeletionRequest) forward.DeletionStatus {
	st := forward.DeletionStatus{Phase: string(dr.Status.Phase), ReceivedAt: dr.CreationTimestamp.UTC(),
		Erased: dr.Status.Erased != nil && *dr.Status.Erased != (platformv1.ErasedCounts{})}
	if st.Phase == "" {
		st.Phase = string(platformv1.DeletionPending)
	}
	if dr.Status.ReceivedAt != nil {
		st.ReceivedAt = dr.Status.ReceivedAt.UTC()
	}
	if dr.Status.CompletedAt != nil {
		t := dr.Status.CompletedAt.UTC()
		st.CompletedAt = &t
	}
	if dr.Status.Deadline != nil {
		t := dr.Status.Deadline.UTC()
		st.Deadline = &t
	}
	return st
}
