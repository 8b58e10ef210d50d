package forward

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// Meta's data-deletion callback at a MetaApp's URL reaches the front door, which asks
// every worker of a tenant bound to the app to file its own DeletionRequest, all under
// one confirmation code, and later asks them for that code's status. Both requests use
// the tenant's forwarding credential, for a purpose of their own: a request signed for
// one purpose verifies for no other (a captured forward is not a deletion, nor the
// reverse).
const (
	// DeletionPath is the worker's endpoint for a deletion the front door files:
	// POST, a DeletionFiling in JSON, signed with SignFor(key, tenant, PurposeDeletion, body).
	DeletionPath = "/internal/meta-deletion"
	// DeletionStatusPath + code is the worker's status of that code: GET, signed with
	// SignFor(key, tenant, PurposeDeletionStatus, []byte(code)); 404 when no request of
	// the tenant carries it, else a DeletionStatus in JSON.
	DeletionStatusPath = "/internal/meta-deletion-status/"

	PurposeDeletion       = "meta-deletion"
	PurposeDeletionStatus = "meta-deletion-status"
)

// SignFor signs body for tenant's worker for one purpose other than forwarding parts.
// Tenant names never hold a NUL byte, so tenant+NUL+purpose is no other tenant's name.
func SignFor(tenantKey []byte, tenant, purpose string, body []byte) string {
	return Sign(tenantKey, tenant+"\x00"+purpose, body)
}

// VerifyFor checks a SignFor signature, in constant time.
func VerifyFor(tenantKey []byte, tenant, purpose string, body []byte, header string) error {
	return Verify(tenantKey, tenant+"\x00"+purpose, body, header)
}

// DeletionFiling asks a worker to file Meta's data-deletion request of a user of the
// app under Code. Filing the same Code twice files one request.
type DeletionFiling struct {
	// Code is the confirmation code Meta is answered with, the same in every tenant.
	Code string `json:"code"`
	// App is the MetaApp whose callback it came in on (a label of the request).
	App string `json:"app"`
	// Platform is the platform the request is filed for (the DeletionRequest's).
	Platform string `json:"platform"`
	// UserID is Meta's app-scoped user id, verified by the front door. It goes into
	// the request's subject Secret only.
	UserID string `json:"userID"`
}

// DeletionStatus is what a worker tells the front door about one code: the phase of
// its request and its dates, nothing about the person.
type DeletionStatus struct {
	Phase       string     `json:"phase"`
	ReceivedAt  time.Time  `json:"receivedAt"`
	CompletedAt *time.Time `json:"completedAt,omitempty"`
	Deadline    *time.Time `json:"deadline,omitempty"`
	// Erased says whether anything linked to the request was found and erased.
	Erased bool `json:"erased"`
}

// DeletionCode is the confirmation code of a data-deletion request of the app app for
// userID issued at issuedAt: a keyed hash (the forwarding key), so that it reveals
// nothing of the user id and cannot be computed by anyone without the key, and
// deterministic, so that Meta's retry of the same request files nothing twice while a
// later request of the same user (another issued_at) is a request of its own.
// 24 lowercase hex characters, like the codes the operator gives manual requests.
func DeletionCode(forwardingKey []byte, app, userID string, issuedAt int64) string {
	m := hmac.New(sha256.New, forwardingKey)
	m.Write([]byte("omniflow-meta-deletion-code\x00" + app + "\x00" + userID + "\x00" + strconv.FormatInt(issuedAt, 10)))
	return hex.EncodeToString(m.Sum(nil)[:12])
}

// NothingHeldCode is the confirmation code of a data-deletion request that came in
// while no tenant was bound to the app: nothing held the user's data, so nothing was
// filed, and nothing is stored to remember the request by. Its status page must still
// say so later, so the code proves itself: the first half of DeletionCode (as
// deterministic, as opaque), then 12 hex characters of a keyed tag of that half and
// the app (nothingHeldTag). Only the holder of the forwarding key makes or recognises
// one; a code of a filed request is taken for one only by a 2^-48 chance.
func NothingHeldCode(forwardingKey []byte, app, userID string, issuedAt int64) string {
	head := DeletionCode(forwardingKey, app, userID, issuedAt)[:12]
	return head + nothingHeldTag(forwardingKey, app, head)
}

// IsNothingHeldCode says whether code is a NothingHeldCode of the app under this key,
// in constant time.
func IsNothingHeldCode(forwardingKey []byte, app, code string) bool {
	if len(code) != 24 || app == "" {
		return false
	}
	return hmac.Equal([]byte(code[12:]), []byte(nothingHeldTag(forwardingKey, app, code[:12])))
}

func nothingHeldTag(forwardingKey []byte, app, head string) string {
	m := hmac.New(sha256.New, forwardingKey)
	m.Write([]byte("omniflow-meta-deletion-nothing-held\x00" + app + "\x00" + head))
	return hex.EncodeToString(m.Sum(nil)[:6])
}
