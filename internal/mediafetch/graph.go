package mediafetch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// DefaultGraphAPIBaseURL is Meta's Graph API; a channel's graphAPIBaseURL overrides it.
const DefaultGraphAPIBaseURL = "https://graph.facebook.com"

// DefaultGraphAPIVersion is the Graph API version media ids are resolved with (Meta keeps
// a version for about two years; --graph-api-version moves it).
const DefaultGraphAPIVersion = "v24.0"

// outcome is how one fetch attempt ended.
type outcome struct {
	verdict verdict // vOK: stored; vRetry, vFail, vTokenRefused with reason
	reason  string
	stored  store.StoredBytes
	gone    bool // the record was erased meanwhile: drop quietly
}

func retry(reason string) outcome { return outcome{verdict: vRetry, reason: reason} }
func fail(reason string) outcome  { return outcome{verdict: vFail, reason: reason} }

// mediaInfo is the Graph API's description of a WhatsApp media id.
type mediaInfo struct {
	URL      string   `json:"url"`
	MIMEType string   `json:"mime_type"`
	SHA256   string   `json:"sha256"`
	FileSize flexSize `json:"file_size"`
	ID       string   `json:"id"`
}

// flexSize accepts a size as a JSON number or string (Meta's examples show both).
type flexSize int64

func (s *flexSize) UnmarshalJSON(b []byte) error {
	v, err := strconv.ParseInt(strings.Trim(string(b), `"`), 10, 64)
	if err != nil {
		// A size Meta declares oddly is no reason to refuse the file: it counts as
		// unknown, and the streaming limit still applies.
		v = 0
	}
	*s = flexSize(v)
	return nil
}

// graphError is the error object of a Graph API answer.
type graphError struct {
	Error struct {
		Code int `json:"code"`
	} `json:"error"`
}

// fetchJob runs one attempt for a claimed file with its channel (found false: the
// channel is not served).
func (f *Fetcher) fetchJob(ctx context.Context, job store.FetchJob, ch channels.Channel, found bool) outcome {
	if job.Key.Platform != meta.WhatsApp {
		if job.URL == "" {
			return fail(store.FailNotFound)
		}
		// Messenger and Instagram attachment URLs are Meta CDN URLs that need no token.
		return f.download(ctx, job, job.URL, "", job.SHA256, job.MIMEType, false, true)
	}
	if !found {
		return retry(RetryNoChannel)
	}
	token := ch.AccessToken
	base := ch.GraphAPIBaseURL
	if base == "" {
		base = DefaultGraphAPIBaseURL
	}
	if job.MediaID == "" {
		if job.URL == "" {
			return fail(store.FailNotFound)
		}
		return f.download(ctx, job, job.URL, token, job.SHA256, job.MIMEType, true, true)
	}
	for fresh := false; ; fresh = true {
		info, out := f.lookup(ctx, base, job.MediaID, token)
		if out.verdict != vOK {
			return out
		}
		if int64(info.FileSize) > f.cfg.MaxBytes {
			return fail(store.FailTooLarge)
		}
		sum, mimeType := job.SHA256, job.MIMEType
		if sum == "" {
			sum = info.SHA256
		}
		if mimeType == "" {
			mimeType = info.MIMEType
		}
		out = f.download(ctx, job, info.URL, token, sum, mimeType, true, fresh)
		if out.verdict != vURLExpired {
			return out
		}
	}
}

// lookup resolves a WhatsApp media id: GET <base>/<version>/<media-id> with the bearer
// token, answered with a short-lived download URL and what Meta declares of the file.
func (f *Fetcher) lookup(ctx context.Context, base, mediaID, token string) (mediaInfo, outcome) {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.RequestTimeout)
	defer cancel()
	u := strings.TrimSuffix(base, "/") + "/" + url.PathEscape(f.cfg.GraphAPIVersion) + "/" + url.PathEscape(mediaID)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return mediaInfo{}, retry(RetryBadResponse)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := f.cfg.HTTPClient.Do(req)
	if err != nil {
		return mediaInfo{}, retry(transportReason(err))
	}
	defer resp.Body.Close()
	// Metadata is small; an answer larger than this is not Meta's.
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return mediaInfo{}, retry(transportReason(err))
	}
	var ge graphError
	if resp.StatusCode != http.StatusOK {
		_ = json.Unmarshal(body, &ge) // the code refines the status when present
	}
	if v, reason := lookupVerdict(resp.StatusCode, ge.Error.Code); v != vOK {
		return mediaInfo{}, outcome{verdict: v, reason: reason}
	}
	var info mediaInfo
	if err := json.Unmarshal(body, &info); err != nil || info.URL == "" {
		return mediaInfo{}, retry(RetryBadResponse)
	}
	return info, outcome{}
}

// download GETs the bytes (with the bearer token for WhatsApp) and streams them into the
// store through a verifier.
func (f *Fetcher) download(ctx context.Context, job store.FetchJob, rawURL, token, sum, mimeType string, whatsApp, fresh bool) outcome {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.DownloadTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail(store.FailNotFound) // not a URL at all: nothing to try again
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.cfg.HTTPClient.Do(req)
	if err != nil {
		return retry(transportReason(err))
	}
	// Closing an unread body closes the connection: a refused file is not drained.
	defer resp.Body.Close()
	if v, reason := downloadVerdict(resp.StatusCode, whatsApp, fresh); v != vOK {
		return outcome{verdict: v, reason: reason}
	}
	if resp.ContentLength > f.cfg.MaxBytes {
		return fail(store.FailTooLarge)
	}
	if mimeType == "" {
		// Messenger and Instagram declare the type only on the CDN's answer.
		mimeType, _, _ = mime.ParseMediaType(resp.Header.Get("Content-Type"))
	}
	want, _ := declaredSHA256(sum)
	v := newVerifier(resp.Body, want, f.cfg.MaxBytes)
	stored, err := f.cfg.Store.StoreFileBytes(ctx, job.Key, v, f.cfg.MaxBytes, mimeType)
	switch {
	case err == nil:
		return outcome{stored: stored}
	case errors.Is(err, store.ErrFileGone):
		return outcome{gone: true}
	case v.tooLarge || errors.Is(err, store.ErrTooLarge):
		return fail(store.FailTooLarge)
	case v.mismatch || errors.Is(err, store.ErrChecksum):
		// The store checks the sha256 of the webhook too, in every form Meta may send
		// it, and refuses bytes that do not match it even when the stream did not tell.
		return fail(store.FailChecksum)
	case v.netErr != nil:
		return retry(transportReason(v.netErr))
	case ctx.Err() != nil:
		return retry(RetryTimeout)
	}
	f.cfg.Log.Error(err, "Storing a fetched file failed", "channel", job.Channel, "platform", job.Key.Platform)
	return retry(RetryStore)
}

// transportReason names a request that got no (complete) answer.
func transportReason(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return RetryTimeout
	}
	return RetryConnection
}

// String of an outcome, for logs (reasons only, never an id or URL).
func (o outcome) String() string {
	switch {
	case o.gone:
		return "gone"
	case o.verdict == vOK:
		return fmt.Sprintf("stored %d bytes", o.stored.Size)
	}
	return o.reason
}
