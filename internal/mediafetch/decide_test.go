package mediafetch

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func TestLookupVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status, code int
		want         verdict
		reason       string
	}{
		{200, 0, vOK, ""},
		{401, 190, vTokenRefused, store.FailUnauthorized},
		{403, 0, vTokenRefused, store.FailUnauthorized},
		{400, 190, vTokenRefused, store.FailUnauthorized}, // expired token, as Graph sends it
		{400, 200, vTokenRefused, store.FailUnauthorized}, // permission missing
		{400, 100, vFail, store.FailNotFound},             // unknown media id
		{404, 0, vFail, store.FailNotFound},
		{429, 0, vRetry, RetryRateLimited},
		{400, 80007, vRetry, RetryRateLimited},
		{500, 0, vRetry, RetryServerError},
		{503, 2, vRetry, RetryServerError},
		{408, 0, vRetry, RetryTimeout},
		{418, 0, vRetry, RetryStatus},
	}
	for _, tc := range tests {
		v, reason := lookupVerdict(tc.status, tc.code)
		if v != tc.want || reason != tc.reason {
			t.Errorf("lookupVerdict(%d, %d) = %v %q, want %v %q", tc.status, tc.code, v, reason, tc.want, tc.reason)
		}
	}
}

func TestDownloadVerdict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status          int
		whatsApp, fresh bool
		want            verdict
		reason          string
	}{
		{200, true, false, vOK, ""},
		{404, true, false, vURLExpired, ""}, // an expired lookaside URL: resolve again
		{403, true, false, vURLExpired, ""},
		{404, true, true, vFail, store.FailNotFound}, // a fresh URL that is gone: the media is
		{403, true, true, vTokenRefused, store.FailUnauthorized},
		{401, true, false, vTokenRefused, store.FailUnauthorized},
		{404, false, true, vFail, store.FailNotFound}, // a CDN URL of deleted content
		{403, false, true, vFail, store.FailNotFound}, // a CDN URL past its signature's life
		{410, false, true, vFail, store.FailNotFound},
		{429, false, true, vRetry, RetryRateLimited},
		{502, true, false, vRetry, RetryServerError},
		{409, true, true, vRetry, RetryStatus},
	}
	for _, tc := range tests {
		v, reason := downloadVerdict(tc.status, tc.whatsApp, tc.fresh)
		if v != tc.want || reason != tc.reason {
			t.Errorf("downloadVerdict(%d, wa %v, fresh %v) = %v %q, want %v %q", tc.status, tc.whatsApp, tc.fresh, v, reason, tc.want, tc.reason)
		}
	}
}

func TestRetryPolicy(t *testing.T) {
	t.Parallel()
	p := retryPolicy{base: 30 * time.Second, max: time.Hour, maxAttempts: 5}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		attempts   int
		whatsApp   bool
		receivedAt time.Time
		lo, hi     time.Duration
		fail       string
	}{
		{"first retry after the base", 1, false, time.Time{}, 30 * time.Second, 45 * time.Second, ""},
		{"doubling", 3, false, time.Time{}, 2 * time.Minute, 3 * time.Minute, ""},
		{"the budget spent", 5, false, time.Time{}, 0, 0, store.FailAttempts},
		{"a media id that would be past its lifetime", 1, true, now.Add(-MediaIDLifetime), 0, 0, store.FailExpired},
		{"a URL has no lifetime of ours", 1, false, now.Add(-MediaIDLifetime), 30 * time.Second, 45 * time.Second, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for range 50 { // the jitter is random: every draw stays in range
				at, fail := p.next(now, tc.attempts, tc.whatsApp, tc.receivedAt)
				if fail != tc.fail {
					t.Fatalf("next() fail = %q, want %q", fail, tc.fail)
				}
				if fail == "" && (at.Sub(now) < tc.lo || at.Sub(now) > tc.hi) {
					t.Fatalf("next() = now+%s, want within [%s, %s]", at.Sub(now), tc.lo, tc.hi)
				}
			}
		})
	}
	// Capped: far along, the delay stays within max plus its jitter.
	big := retryPolicy{base: 30 * time.Second, max: time.Hour, maxAttempts: 100}
	if at, _ := big.next(now, 40, false, time.Time{}); at.Sub(now) > time.Hour*3/2 {
		t.Fatalf("attempt 40 waits %s, want at most the cap plus jitter", at.Sub(now))
	}
}

func TestDeclaredSHA256(t *testing.T) {
	t.Parallel()
	sum := sha256.Sum256([]byte("x"))
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{hex.EncodeToString(sum[:]), true},
		{base64.StdEncoding.EncodeToString(sum[:]), true},
		{base64.URLEncoding.EncodeToString(sum[:]), true},
		{"", false},
		{"not a checksum", false},
		{hex.EncodeToString(sum[:])[:63] + "z", false},
	} {
		got, ok := declaredSHA256(tc.in)
		if ok != tc.ok || (ok && string(got) != string(sum[:])) {
			t.Errorf("declaredSHA256(%q) = %x %v, want ok %v", tc.in, got, ok, tc.ok)
		}
	}
}

func TestStatusesNeverMeanSuccessByAccident(t *testing.T) {
	t.Parallel()
	// Every status but 200 is something other than "go on".
	for status := 100; status < 600; status++ {
		if status == http.StatusOK {
			continue
		}
		if v, _ := lookupVerdict(status, 0); v == vOK {
			t.Errorf("lookup %d counts as success", status)
		}
		if v, _ := downloadVerdict(status, true, true); v == vOK {
			t.Errorf("download %d counts as success", status)
		}
	}
}

func TestYieldTo(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name      string
		since     time.Time
		start     int
		sinceWant time.Time
	}{
		{"busy from now: wait", time.Time{}, 0, now},
		{"still within the yield", now.Add(-999 * time.Millisecond), 0, now.Add(-999 * time.Millisecond)},
		{"yielded long enough: one download", now.Add(-time.Second), 1, now},
	}
	for _, tc := range tests {
		start, yielding, since := yieldTo(now, tc.since, time.Second, 4)
		if start != tc.start || !yielding || !since.Equal(tc.sinceWant) {
			t.Errorf("%s: yieldTo = %d %v %v, want %d true %v", tc.name, start, yielding, since, tc.start, tc.sinceWant)
		}
	}
}
