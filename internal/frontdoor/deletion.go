package frontdoor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/forward"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/webhookhttp"
)

// maxDeletionForm caps Meta's data-deletion form: a signed_request is a few hundred bytes.
const maxDeletionForm = 64 << 10

// deletionStatusPath + code is the status page a confirmation code is answered with.
const deletionStatusPath = "/meta/deletion-status/"

// Data-deletion results (the "result" label of omniflow_frontdoor_deletions_total).
const (
	DeletionFiled        = "filed"         // 200: every bound tenant's worker filed its request
	DeletionNoTenant     = "no_tenant"     // 200: no tenant is bound to the app, nothing holds its data
	DeletionUnauthorized = "unauthorized"  // 400: the signed_request does not verify
	DeletionNotSynced    = "not_synced"    // 503
	DeletionWorkerFailed = "worker_failed" // 503: a worker did not file; Meta calls again
	DeletionNoApp        = "no_app"        // 501: the front door serves no named MetaApp
)

// handleDataDeletion is Meta's Data Deletion Request Callback at the app's URL: a form
// field signed_request signed with the app secret. A verified request is filed in every
// tenant bound to the app, by that tenant's own worker (the front door writes nothing in
// any namespace), all under one confirmation code; Meta gets {url, confirmation_code}
// only once every worker filed, else 503 so that it calls again. The code is a keyed
// hash of the request (forward.DeletionCode), so a retry files nothing twice.
func (s *Server) handleDataDeletion(w http.ResponseWriter, r *http.Request) {
	code, result, text := s.dataDeletion(w, r)
	s.m.deletions.WithLabelValues(result).Inc()
	if code != http.StatusOK {
		webhookhttp.WriteText(w, code, text)
		return
	}
	webhookhttp.WriteDeletionAccepted(w, s.statusURL(r, text), text)
}

// dataDeletion verifies and files the request; it returns the status code, the metric
// result and, for 200, the confirmation code (otherwise the text of the answer).
func (s *Server) dataDeletion(w http.ResponseWriter, r *http.Request) (int, string, string) {
	log := s.cfg.Log
	if s.cfg.App == "" {
		return http.StatusNotImplemented, DeletionNoApp, "this front door serves no named MetaApp (--app)\n"
	}
	if !s.cfg.Table.Synced() {
		return http.StatusServiceUnavailable, DeletionNotSynced, "not ready; try again later\n"
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxDeletionForm)
	if err := r.ParseForm(); err != nil {
		return http.StatusBadRequest, DeletionUnauthorized, "bad request\n"
	}
	// Only the body: Meta posts a form, and a signed_request in a URL ends up in access logs.
	sr, err := meta.ParseSignedRequest(s.cfg.AppSecret, r.PostForm.Get(meta.SignedRequestField))
	if err != nil {
		// The reason only: never the signed request, which carries the user id.
		log.Info("Data-deletion callback refused", "reason", err.Error())
		return http.StatusBadRequest, DeletionUnauthorized, "bad request\n"
	}
	bound := s.cfg.Table.Bound()
	if len(bound) == 0 {
		// No tenant is bound: nothing holds the app's data, nothing is filed and
		// nothing stored. The code itself tells its status page so (NothingHeldCode).
		log.Info("Data-deletion callback with no tenant bound to the app: nothing held, nothing filed")
		return http.StatusOK, DeletionNoTenant, forward.NothingHeldCode(s.cfg.ForwardingKey, s.cfg.App, sr.UserID, sr.IssuedAt)
	}
	code := forward.DeletionCode(s.cfg.ForwardingKey, s.cfg.App, sr.UserID, sr.IssuedAt)
	failed := s.eachTenant(len(bound), func(i int) string { return bound[i].Tenant }, "Data-deletion request not filed by a tenant's worker; Meta will call again", func(i int) error {
		f := forward.DeletionFiling{Code: code, App: s.cfg.App, Platform: string(bound[i].DeletionPlatform), UserID: sr.UserID}
		return s.fileDeletion(r.Context(), bound[i], f)
	})
	if failed > 0 {
		return http.StatusServiceUnavailable, DeletionWorkerFailed, "the request could not be recorded; try again later\n"
	}
	log.Info("Data-deletion request filed from Meta's callback", "tenants", len(bound))
	return http.StatusOK, DeletionFiled, code
}

// statusURL is where the person follows the request: under PublicBaseURL when set,
// else under the URL the callback came in on (with the /apps/<app> prefix it had).
func (s *Server) statusURL(r *http.Request, code string) string {
	if s.cfg.PublicBaseURL != "" {
		return strings.TrimRight(s.cfg.PublicBaseURL, "/") + deletionStatusPath + code
	}
	// A prefix stripped on the way in (http.StripPrefix keeps RequestURI) comes back.
	prefix := ""
	if path, _, _ := strings.Cut(r.RequestURI, "?"); strings.HasSuffix(path, r.URL.Path) {
		prefix = strings.TrimSuffix(path, r.URL.Path)
	}
	return webhookhttp.RequestBase(r) + prefix + deletionStatusPath + code
}

// fileDeletion asks one tenant's worker to file the request, and returns nil once it did.
func (s *Server) fileDeletion(ctx context.Context, b Bound, f forward.DeletionFiling) error {
	body, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode deletion filing: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.Worker+forward.DeletionPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("deletion request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(forward.SignatureHeader, forward.SignFor(s.cred(b.Tenant).key, b.Tenant, forward.PurposeDeletion, body))
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("deletion request to worker: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("worker answered %d", resp.StatusCode)
	}
	return nil
}

// errUnknownCode: the worker holds no request with the code.
var errUnknownCode = errors.New("unknown confirmation code")

// deletionStatus asks one tenant's worker for the state of its request under code.
func (s *Server) deletionStatus(ctx context.Context, b Bound, code string) (forward.DeletionStatus, error) {
	var st forward.DeletionStatus
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ForwardTimeout)
	defer cancel()
	// The worker's URL comes from the routing table; code is letters and digits only
	// (ValidCode, checked by the caller).
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Worker+forward.DeletionStatusPath+code, nil) //nolint:gosec // G704: see above
	if err != nil {
		return st, fmt.Errorf("status request: %w", err)
	}
	req.Header.Set(forward.SignatureHeader, forward.SignFor(s.cred(b.Tenant).key, b.Tenant, forward.PurposeDeletionStatus, []byte(code)))
	resp, err := s.client.Do(req) //nolint:gosec // G704: the URL is the routing table's worker and a checked code
	if err != nil {
		return st, fmt.Errorf("status request to worker: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&st); err != nil {
			return st, fmt.Errorf("decode worker's status: %w", err)
		}
		return st, nil
	case http.StatusNotFound:
		return st, errUnknownCode
	default:
		return st, fmt.Errorf("worker answered %d", resp.StatusCode)
	}
}

// handleDeletionStatus is the page the callback's URL points to: the state of the
// request in every tenant bound to the app, asked of their workers now. No tenant's
// name, no identifier: the parts are numbered.
func (s *Server) handleDeletionStatus(w http.ResponseWriter, r *http.Request) {
	code := r.PathValue("code")
	if !subjecterasure.ValidCode(code) {
		webhookhttp.WriteText(w, http.StatusNotFound, "unknown confirmation code\n")
		return
	}
	// A code given while no tenant was bound: recognised by its keyed tag, without
	// any record and whatever is bound now (it tells of the time of the request).
	if forward.IsNothingHeldCode(s.cfg.ForwardingKey, s.cfg.App, code) {
		w.Header().Set("Cache-Control", "no-store")
		webhookhttp.WriteText(w, http.StatusOK, NothingHeldPage(code))
		return
	}
	if !s.cfg.Table.Synced() {
		webhookhttp.WriteText(w, http.StatusServiceUnavailable, "the status is not available right now; try again later\n")
		return
	}
	bound := s.cfg.Table.Bound()
	sts := make([]forward.DeletionStatus, len(bound))
	errs := each(len(bound), func(i int) (err error) {
		sts[i], err = s.deletionStatus(r.Context(), bound[i], code)
		return err
	})
	var known []forward.DeletionStatus
	unavailable := 0
	for i, err := range errs {
		switch {
		case err == nil:
			known = append(known, sts[i])
		case !errors.Is(err, errUnknownCode):
			unavailable++
			s.cfg.Log.Info("Deletion status not available from a tenant's worker", "tenant", bound[i].Tenant, "error", err.Error())
		}
	}
	if len(known) == 0 && unavailable == 0 {
		webhookhttp.WriteText(w, http.StatusNotFound, "unknown confirmation code\n")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	webhookhttp.WriteText(w, http.StatusOK, DeletionStatusPage(code, known, unavailable))
}

// NothingHeldPage renders the status of a request that came in while the app served
// no tenant: nothing of the person was held, so nothing was to be deleted.
func NothingHeldPage(code string) string {
	var b strings.Builder
	b.WriteString("Data deletion request\n\n")
	fmt.Fprintf(&b, "Confirmation code: %s\n", code)
	fmt.Fprintf(&b, "Status: %s\n\n", platformv1.DeletionCompleted)
	b.WriteString("No data of this user was held: when the request was received, this app served no tenant (no organisation used it), so nothing about this user was stored and there was nothing to delete.\n")
	return b.String()
}

// DeletionStatusPage renders, for the person who asked, the state of a request kept
// in several places (one per tenant bound to the app): the overall state first (the
// least advanced part), then each part's phase and dates; unavailable parts could not
// be asked right now.
func DeletionStatusPage(code string, parts []forward.DeletionStatus, unavailable int) string {
	var b strings.Builder
	b.WriteString("Data deletion request\n\n")
	fmt.Fprintf(&b, "Confirmation code: %s\n", code)
	overall, erased := overallPhase(parts, unavailable)
	fmt.Fprintf(&b, "Status: %s\n\n%s\n", overall, subjecterasure.PhaseSentence(overall, erased))
	total := len(parts) + unavailable
	if total > 1 {
		fmt.Fprintf(&b, "\nThe data of this app is kept in %d separate places; each carries out the request:\n", total)
	}
	for i, p := range parts {
		fmt.Fprintf(&b, "\nPart %d of %d: %s\n", i+1, total, p.Phase)
		fmt.Fprintf(&b, "  Received: %s\n", p.ReceivedAt.UTC().Format(time.RFC3339))
		if p.CompletedAt != nil {
			fmt.Fprintf(&b, "  Completed: %s\n", p.CompletedAt.UTC().Format(time.RFC3339))
		} else if p.Deadline != nil {
			fmt.Fprintf(&b, "  To be answered by: %s\n", p.Deadline.UTC().Format(time.RFC3339))
		}
	}
	if unavailable > 0 {
		fmt.Fprintf(&b, "\n%d part(s) could not be asked right now; try again later.\n", unavailable)
	}
	return b.String()
}

// overallPhase is the least advanced phase of the parts: Pending while any part (or an
// unavailable one) may still be; Failed or Refused if a part ended so; Completed only
// when all did (erased when any part found something).
func overallPhase(parts []forward.DeletionStatus, unavailable int) (platformv1.DeletionPhase, bool) {
	rank := map[platformv1.DeletionPhase]int{
		platformv1.DeletionPending: 0, platformv1.DeletionRunning: 1, platformv1.DeletionFailed: 2,
		platformv1.DeletionRefused: 3, platformv1.DeletionCompleted: 4,
	}
	overall, erased := platformv1.DeletionCompleted, false
	if unavailable > 0 || len(parts) == 0 {
		overall = platformv1.DeletionPending
	}
	for _, p := range parts {
		ph := platformv1.DeletionPhase(p.Phase)
		if r, ok := rank[ph]; !ok || r < rank[overall] {
			if !ok {
				ph = platformv1.DeletionPending
			}
			overall = ph
		}
		erased = erased || p.Erased
	}
	return overall, erased
}
