// Package frontdoor is the webhook front door of a shared Meta app: one callback URL for
// the app, where Meta's signature is checked once with the app secret, each delivery is
// split into its parts, each part is routed by its own ids to the tenant whose channel
// serves them, and each tenant's parts are forwarded to that tenant's worker in one
// request (package forward). Meta gets 200 only once every worker concerned has
// committed its parts; otherwise an error, so that Meta retries and the workers absorb
// what they already hold. The front door keeps nothing: no store, no tenant secrets.
package frontdoor

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Tenant is one tenant behind the front door: its worker and the channels the front door
// routes to it.
type Tenant struct {
	Name string `json:"name"`
	// Worker is the base URL of the tenant's worker (its Service), e.g.
	// http://ingest-worker.tenant-acme.svc:8080.
	Worker   string         `json:"worker"`
	Channels []RouteChannel `json:"channels"`
}

// RouteChannel is the routing part of a channel: its platform and ids.
type RouteChannel struct {
	Platform  meta.Platform          `json:"platform"`
	WhatsApp  *channels.WhatsAppIDs  `json:"whatsApp,omitempty"`
	Messenger *channels.MessengerIDs `json:"messenger,omitempty"`
	Instagram *channels.InstagramIDs `json:"instagram,omitempty"`
}

// accountID is the id the channel's parts are routed by.
func (c *RouteChannel) accountID() string {
	switch c.Platform {
	case meta.WhatsApp:
		if c.WhatsApp != nil {
			return string(c.WhatsApp.PhoneNumberID)
		}
	case meta.Messenger:
		if c.Messenger != nil {
			return string(c.Messenger.PageID)
		}
	case meta.Instagram:
		if c.Instagram != nil {
			return string(c.Instagram.AccountID)
		}
	}
	return ""
}

type accountKey struct {
	platform meta.Platform
	id       string
}

// Target is where a part goes: a tenant's worker.
type Target struct {
	Tenant string
	Worker string
}

type routes struct {
	accounts map[accountKey]Target
	// wabas maps a WhatsApp business account id to the tenants with a number in it:
	// account-level changes name only the business account.
	wabas map[string][]Target
	// bound lists every tenant behind the front door, in the order given.
	bound []Bound
}

// Bound is a tenant bound to the front door's app, with the platform a data-deletion
// request of the app is filed for in it.
type Bound struct {
	Target
	DeletionPlatform meta.Platform
}

// deletionPlatform picks the platform a data-deletion request of the app's user is
// filed for in a tenant. Meta's user id is that of a Facebook user of the app, which
// matches none of the platforms' messaging ids; the platform only says where the
// request looks. Messenger (Facebook's own) is preferred, then Instagram, then WhatsApp.
func deletionPlatform(chs []RouteChannel) meta.Platform {
	best := meta.Platform("")
	rank := map[meta.Platform]int{meta.Messenger: 3, meta.Instagram: 2, meta.WhatsApp: 1}
	for _, ch := range chs {
		if rank[ch.Platform] > rank[best] {
			best = ch.Platform
		}
	}
	return best
}

// Table is the routing table: which tenant serves which platform id. It is replaced
// whole (a reload of the routes file, a change seen by the cluster watch), so that a
// delivery never sees half an update. Until the first Replace it is not synced, and the
// front door answers 503: routing with an empty table would acknowledge and lose
// every part.
type Table struct {
	mu     sync.RWMutex
	r      routes
	synced atomic.Bool
}

// Synced reports whether the table has been filled once.
func (t *Table) Synced() bool { return t.synced.Load() }

// Replace validates tenants and swaps them in. An id claimed twice is refused (the
// cluster's claim rule gives every id one holder; a file must say the same), and nothing
// changes.
func (t *Table) Replace(tenants []Tenant) error {
	r := routes{accounts: map[accountKey]Target{}, wabas: map[string][]Target{}}
	seen := map[string]bool{}
	for _, tn := range tenants {
		if tn.Name == "" || tn.Worker == "" {
			return fmt.Errorf("tenant %q: name and worker are required", tn.Name)
		}
		if seen[tn.Name] {
			return fmt.Errorf("tenant %q listed twice", tn.Name)
		}
		seen[tn.Name] = true
		target := Target{Tenant: tn.Name, Worker: tn.Worker}
		for i, ch := range tn.Channels {
			id := ch.accountID()
			if id == "" || (ch.Platform == meta.WhatsApp && ch.WhatsApp.BusinessAccountID == "") {
				return fmt.Errorf("tenant %q: channels[%d]: platform %q needs its own id block", tn.Name, i, ch.Platform)
			}
			k := accountKey{ch.Platform, id}
			if other, dup := r.accounts[k]; dup {
				return fmt.Errorf("tenant %q: channels[%d]: %s id %s is already routed to tenant %q", tn.Name, i, ch.Platform, id, other.Tenant)
			}
			r.accounts[k] = target
			if ch.WhatsApp != nil {
				waba := string(ch.WhatsApp.BusinessAccountID)
				if !slices.Contains(r.wabas[waba], target) {
					r.wabas[waba] = append(r.wabas[waba], target)
				}
			}
		}
	}
	for _, tn := range tenants {
		if len(tn.Channels) > 0 {
			r.bound = append(r.bound, Bound{Target: Target{Tenant: tn.Name, Worker: tn.Worker}, DeletionPlatform: deletionPlatform(tn.Channels)})
		}
	}
	t.mu.Lock()
	t.r = r
	t.mu.Unlock()
	t.synced.Store(true)
	return nil
}

// Bound returns the tenants behind the front door (those with a routed channel).
func (t *Table) Bound() []Bound {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.r.bound
}

// Reasons a part is routed nowhere (the "reason" label of the unrouted metric).
const (
	ReasonUnknownAccount = "unknown_account" // no Ready channel behind this front door holds the id
	ReasonUnknownObject  = "unknown_object"  // not a WhatsApp, Messenger or Instagram delivery
)

// Route returns the tenants a part goes to (one, or for a WhatsApp account-level change
// every tenant with a number in the business account), or why none.
func (t *Table) Route(p *meta.Part) ([]Target, string) {
	if p.Platform == "" {
		return nil, ReasonUnknownObject
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p.Platform == meta.WhatsApp && p.AccountID == p.EntryID {
		ids := []string{p.EntryID}
		// PARTNER_APP_UNINSTALLED names the business portfolio in entry.id and the
		// business account only in its value.
		if _, named, ok := meta.AccountRemoval(p); ok {
			ids = append(ids, named...)
		}
		var out []Target
		for _, id := range ids {
			for _, tg := range t.r.wabas[id] {
				if !slices.Contains(out, tg) {
					out = append(out, tg)
				}
			}
		}
		if len(out) == 0 {
			return nil, ReasonUnknownAccount
		}
		sort.Slice(out, func(i, j int) bool { return out[i].Tenant < out[j].Tenant })
		return out, ""
	}
	tg, ok := t.r.accounts[accountKey{p.Platform, p.AccountID}]
	if !ok || p.AccountID == "" {
		return nil, ReasonUnknownAccount
	}
	return []Target{tg}, ""
}
