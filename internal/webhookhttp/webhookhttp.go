// Package webhookhttp holds the HTTP plumbing the worker and the front door share: plain
// text answers, the run-count-answer shape of a webhook POST, and the answer to Meta's
// data-deletion callback.
package webhookhttp

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"
)

// WriteText answers code with a plain-text body.
func WriteText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// WriteDeletionAccepted answers Meta's data-deletion callback with what Meta expects:
// the URL where the person follows the request, and its confirmation code.
func WriteDeletionAccepted(w http.ResponseWriter, statusURL, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(struct {
		URL              string `json:"url"`
		ConfirmationCode string `json:"confirmation_code"`
	}{statusURL, code})
}

// Answer runs a POST path, which returns its status code and metric result without
// writing anything, hands the result and the time taken to observe, and writes the code:
// an empty 200, or the status text.
func Answer(w http.ResponseWriter, r *http.Request, run func(http.ResponseWriter, *http.Request) (int, string), observe func(result string, took time.Duration)) {
	start := time.Now()
	code, result := run(w, r)
	observe(result, time.Since(start))
	if code == http.StatusOK {
		w.WriteHeader(code)
		return
	}
	WriteText(w, code, http.StatusText(code)+"\n")
}

// RequestBase is scheme://host of the URL a request came in on, as its client saw it:
// its Host, and the first X-Forwarded-Proto (proxies append theirs after the client's)
// when it says http or https.
func RequestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ","); p != "" {
		if p = strings.ToLower(strings.TrimSpace(p)); p == "http" || p == "https" {
			scheme = p
		}
	}
	return scheme + "://" + r.Host
}
