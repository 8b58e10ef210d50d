package mediafetch

import (
	"math"
	"net/http"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// The pure decisions of the fetcher: what an answer from Meta means for a file, when a
// failed attempt is tried again, and how a declared checksum reads. Table-tested in
// decide_test.go; fetcher.go only carries them out.

// verdict is what one answer means for a file.
type verdict int

const (
	// vOK: go on (the body is the metadata or the bytes).
	vOK verdict = iota
	// vRetry: transient (timeout, 5xx, 429): try again later, with backoff.
	vRetry
	// vFail: permanent; reason says why.
	vFail
	// vTokenRefused: the channel's access token was refused: pause the channel's
	// fetches without spending attempts until its token changes.
	vTokenRefused
	// vURLExpired: a WhatsApp download URL that no longer answers: resolve the media
	// id again for a fresh one.
	vURLExpired
)

// Transient reasons recorded with RetryFile and counted in the retries metric: a closed
// set, beside the permanent store.Fail* reasons.
const (
	RetryTimeout     = "Timeout"
	RetryConnection  = "Connection"
	RetryRateLimited = "Status429"
	RetryServerError = "Status5xx"
	RetryStatus      = "Status4xx"   // an unexpected client error, tried again within the budget
	RetryBadResponse = "BadResponse" // metadata without a URL, or not JSON
	RetryStore       = "StoreError"  // the store failed while writing the bytes
	RetryNoChannel   = "NoChannel"   // the file's channel is not (or no longer) served
)

// retryReasons is every transient reason, to pre-create the metric's series.
var retryReasons = []string{RetryTimeout, RetryConnection, RetryRateLimited, RetryServerError, RetryStatus,
	RetryBadResponse, RetryStore, RetryNoChannel}

// failReasons is every permanent reason the fetcher records.
var failReasons = []string{store.FailNotFound, store.FailExpired, store.FailTooLarge, store.FailChecksum,
	store.FailUnauthorized, store.FailAttempts, store.FailNoToken}

// Graph API error codes that say the token is the problem (Meta sends them with 400 as
// well as 401/403): 190 invalid or expired token, 102 session, 10 and 200-299
// permission not granted.
func graphTokenCode(code int) bool {
	return code == 190 || code == 102 || code == 10 || (code >= 200 && code <= 299)
}

// Graph API error codes of throttling: 4 app, 17 user, 32 page, 613 and 80007 (WhatsApp
// Business) rate limits.
func graphRateCode(code int) bool {
	return code == 4 || code == 17 || code == 32 || code == 613 || code == 80007
}

// lookupVerdict judges the Graph API's answer to GET /<version>/<media-id>; code is the
// Graph error code in the body of an error answer (0 when absent).
func lookupVerdict(status, code int) (verdict, string) {
	switch {
	case status == http.StatusOK:
		return vOK, ""
	case status == http.StatusUnauthorized || status == http.StatusForbidden || graphTokenCode(code):
		return vTokenRefused, store.FailUnauthorized
	case status == http.StatusTooManyRequests || graphRateCode(code):
		return vRetry, RetryRateLimited
	case status >= 500:
		return vRetry, RetryServerError
	// 100 "Unsupported get request / object does not exist" comes with 400: the media
	// id is unknown or gone, as with 404.
	case status == http.StatusNotFound || status == http.StatusGone || status == http.StatusBadRequest:
		return vFail, store.FailNotFound
	case status == http.StatusRequestTimeout:
		return vRetry, RetryTimeout
	}
	return vRetry, RetryStatus
}

// downloadVerdict judges the answer to the download itself. A WhatsApp download URL
// (bearer token, lookaside host) expires after 5 minutes and then answers 403 or 404:
// the first time, the URL is resolved again (fresh is false after that); a fresh URL
// that still refuses means the media is gone (404) or the token is refused (401, 403).
// Messenger and Instagram CDN URLs stop answering when the content is deleted or has
// expired: permanent.
func downloadVerdict(status int, whatsApp, fresh bool) (verdict, string) {
	switch {
	case status == http.StatusOK:
		return vOK, ""
	case status == http.StatusTooManyRequests:
		return vRetry, RetryRateLimited
	case status >= 500:
		return vRetry, RetryServerError
	case status == http.StatusRequestTimeout:
		return vRetry, RetryTimeout
	case !whatsApp && (status == http.StatusUnauthorized || status == http.StatusForbidden || status == http.StatusNotFound || status == http.StatusGone):
		return vFail, store.FailNotFound
	case whatsApp && !fresh && (status == http.StatusForbidden || status == http.StatusNotFound || status == http.StatusGone):
		return vURLExpired, ""
	case whatsApp && (status == http.StatusUnauthorized || status == http.StatusForbidden):
		return vTokenRefused, store.FailUnauthorized
	case status == http.StatusNotFound || status == http.StatusGone:
		return vFail, store.FailNotFound
	}
	return vRetry, RetryStatus
}

// Retry policy defaults: attempts back off exponentially from RetryBase to RetryMax
// with up to 50% jitter; after DefaultMaxAttempts the file fails with FailAttempts
// (about 4 h of trying in all, well inside a WhatsApp media id's lifetime).
const (
	DefaultRetryBase   = 30 * time.Second
	DefaultRetryMax    = time.Hour
	DefaultMaxAttempts = 10
	retryJitter        = 0.5
)

// MediaIDLifetime is how long a WhatsApp media id received in a webhook can be
// downloaded (Meta: 7 days; 30 days is for media a business uploads itself).
// Past it, a file ends as FailExpired without a request.
const MediaIDLifetime = 7 * 24 * time.Hour

// retryPolicy decides when a failed attempt is tried again.
type retryPolicy struct {
	base, max   time.Duration
	maxAttempts int
}

// next returns when to try again after attempts failed attempts (this one included),
// or a permanent reason: FailAttempts when the budget is spent, FailExpired when a
// WhatsApp media id would be past its lifetime before the next try.
func (p retryPolicy) next(now time.Time, attempts int, whatsApp bool, receivedAt time.Time) (time.Time, string) {
	if attempts >= p.maxAttempts {
		return time.Time{}, store.FailAttempts
	}
	// The backoff package's own steps: base, 2·base, 4·base, ... capped at max, each with
	// its jitter.
	delay := wait.Backoff{Duration: p.base, Factor: 2, Jitter: retryJitter, Steps: math.MaxInt32, Cap: p.max}.DelayFunc()
	var d time.Duration
	for range max(attempts, 1) {
		d = delay()
	}
	at := now.Add(d)
	if whatsApp && expired(at, receivedAt) {
		return time.Time{}, store.FailExpired
	}
	return at, ""
}

// expired reports whether a WhatsApp media id stored at receivedAt is past its lifetime
// at now. A record without a time is judged by its attempts alone.
func expired(now, receivedAt time.Time) bool {
	return !receivedAt.IsZero() && now.Sub(receivedAt) > MediaIDLifetime
}

// declaredSHA256 decodes the checksum Meta declared, as the store reads it, so that the
// stream check and the store's own check agree on every spelling.
func declaredSHA256(s string) ([]byte, bool) { return store.DecodeSHA256(s) }
