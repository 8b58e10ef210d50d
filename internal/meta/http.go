package meta

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// ErrTooLarge means a delivery is larger than the receiver accepts.
var ErrTooLarge = errors.New("delivery too large")

// Challenge returns the hub.challenge to echo when q is a subscription handshake (a GET
// to the callback URL) made with the verify token: hub.mode subscribe, a challenge, and
// the token compared in constant time.
func Challenge(q url.Values, verifyToken string) (string, bool) {
	challenge := q.Get("hub.challenge")
	if q.Get("hub.mode") != "subscribe" || challenge == "" || !VerifyToken(verifyToken, q.Get("hub.verify_token")) {
		return "", false
	}
	return challenge, true
}

// ReadBody reads a delivery's raw bytes into buf (reset first), at most limit of them:
// ErrTooLarge beyond, checked against Content-Length before reading. w is handed to
// http.MaxBytesReader, which then has the server close the connection rather than
// drain an oversized body.
func ReadBody(w http.ResponseWriter, r *http.Request, buf *bytes.Buffer, limit int64) error {
	buf.Reset()
	if r.ContentLength > limit {
		return ErrTooLarge
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit)); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return ErrTooLarge
		}
		return fmt.Errorf("read delivery body: %w", err)
	}
	return nil
}
