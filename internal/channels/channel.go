// Package channels holds the worker's view of its tenant's MetaChannels: which platform
// accounts it serves and with which secrets. Every source (the standalone YAML file now,
// a watcher of MetaChannels and Secrets in the cluster later) feeds the same Registry.
package channels

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// ID is a Meta id. Ids are strings (they exceed 2^53), but a YAML author who forgets the
// quotes writes a number: accept integer literals verbatim rather than fail on them.
type ID string

func (id *ID) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch {
	case s == "null":
		*id = ""
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("id: %w", err)
		}
		*id = ID(v)
	case strings.Trim(s, "0123456789") == "":
		*id = ID(s)
	default:
		return fmt.Errorf("id %s: write ids as quoted strings", s)
	}
	return nil
}

// WhatsAppIDs identify one WhatsApp Business phone number.
type WhatsAppIDs struct {
	PhoneNumberID     ID `json:"phoneNumberID"`
	BusinessAccountID ID `json:"businessAccountID"`
}

// MessengerIDs identify one Facebook Page.
type MessengerIDs struct {
	PageID ID `json:"pageID"`
}

// InstagramIDs identify one Instagram professional account.
type InstagramIDs struct {
	AccountID ID `json:"accountID"`
}

// Channel mirrors a MetaChannel spec with its secrets resolved to their values. Field names
// match the CRD so that the standalone file reads like the cluster objects.
type Channel struct {
	Name      string        `json:"name"`
	Platform  meta.Platform `json:"platform"`
	WhatsApp  *WhatsAppIDs  `json:"whatsApp,omitempty"`
	Messenger *MessengerIDs `json:"messenger,omitempty"`
	Instagram *InstagramIDs `json:"instagram,omitempty"`
	// AppRef names the MetaApp whose front door receives this channel's
	// deliveries and forwards them (authenticated with the worker's forwarding
	// key); such a channel has no app secret or verify token of its own, and
	// its direct URL refuses every delivery and handshake (fail closed).
	AppRef          string `json:"appRef,omitempty"`
	AppSecret       string `json:"appSecret,omitempty"`
	VerifyToken     string `json:"verifyToken,omitempty"`
	AccessToken     string `json:"accessToken,omitempty"`
	GraphAPIBaseURL string `json:"graphAPIBaseURL,omitempty"`
}

// String never prints secrets, so a channel that ends up in a log or error is harmless.
func (c Channel) String() string {
	return fmt.Sprintf("channel %q (%s)", c.Name, c.Platform)
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// Validate checks what the CRD's CEL rules check, plus that the secrets are present: a
// channel without an app secret would have to accept unsigned deliveries.
func (c *Channel) Validate() error {
	if !nameRE.MatchString(c.Name) {
		return fmt.Errorf("channel name %q: want a DNS label (lowercase letters, digits, '-', at most 63)", c.Name)
	}
	blocks := 0
	for _, set := range []bool{c.WhatsApp != nil, c.Messenger != nil, c.Instagram != nil} {
		if set {
			blocks++
		}
	}
	var missing bool
	switch c.Platform {
	case meta.WhatsApp:
		missing = c.WhatsApp == nil || c.WhatsApp.PhoneNumberID == "" || c.WhatsApp.BusinessAccountID == ""
	case meta.Messenger:
		missing = c.Messenger == nil || c.Messenger.PageID == ""
	case meta.Instagram:
		missing = c.Instagram == nil || c.Instagram.AccountID == ""
	default:
		return fmt.Errorf("channel %q: platform %q: want WhatsApp, Messenger or Instagram", c.Name, c.Platform)
	}
	if missing || blocks != 1 {
		return fmt.Errorf("channel %q: platform %s needs exactly its own id block (whatsApp{phoneNumberID,businessAccountID}, messenger{pageID} or instagram{accountID})", c.Name, c.Platform)
	}
	if c.AppRef != "" {
		if c.AppSecret != "" || c.VerifyToken != "" {
			return fmt.Errorf("channel %q: appRef or appSecret and verifyToken, not both", c.Name)
		}
		return nil
	}
	if c.AppSecret == "" {
		return fmt.Errorf("channel %q: appSecret is required (or appRef)", c.Name)
	}
	if c.VerifyToken == "" {
		return fmt.Errorf("channel %q: verifyToken is required (or appRef)", c.Name)
	}
	return nil
}

// AccountID is the id Meta routes this channel's traffic by: the WhatsApp phone number id,
// the Page id or the Instagram account id. It is unique across a tenant's channels.
func (c *Channel) AccountID() string {
	switch {
	case c.WhatsApp != nil:
		return string(c.WhatsApp.PhoneNumberID)
	case c.Messenger != nil:
		return string(c.Messenger.PageID)
	case c.Instagram != nil:
		return string(c.Instagram.AccountID)
	}
	return ""
}

// Owns reports whether a part of a delivery belongs to this channel, judged by the part's
// own ids: WhatsApp changes by metadata.phone_number_id (account-level changes, which carry
// none, by entry.id against the business account id); Messenger and Instagram by entry.id.
func (c *Channel) Owns(p *meta.Part) bool {
	if p.Platform != c.Platform {
		return false
	}
	switch c.Platform {
	case meta.WhatsApp:
		if c.WhatsApp == nil {
			return false
		}
		if p.AccountID == string(c.WhatsApp.PhoneNumberID) {
			return true
		}
		return p.AccountID == p.EntryID && p.EntryID == string(c.WhatsApp.BusinessAccountID)
	default:
		return p.EntryID != "" && p.EntryID == c.AccountID()
	}
}

func (c Channel) clone() Channel {
	if c.WhatsApp != nil {
		v := *c.WhatsApp
		c.WhatsApp = &v
	}
	if c.Messenger != nil {
		v := *c.Messenger
		c.Messenger = &v
	}
	if c.Instagram != nil {
		v := *c.Instagram
		c.Instagram = &v
	}
	return c
}

// ErrConflict means two channels claim the same platform account: Meta's traffic for it
// could not be attributed unambiguously.
var ErrConflict = errors.New("platform account already served by another channel")

// SameApp reports whether o is signed for by the same Meta app as c: both carry the same
// app secret. A delivery signed with one app's secret can legitimately carry only that
// app's accounts, so only such channels may take each other's parts.
func (c *Channel) SameApp(o *Channel) bool {
	return c.AppSecret != "" && subtle.ConstantTimeCompare([]byte(c.AppSecret), []byte(o.AppSecret)) == 1
}
