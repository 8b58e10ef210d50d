package channels

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

type accountKey struct {
	platform meta.Platform
	id       string
}

// Registry is the concurrency-safe set of channels a worker serves. Readers (every webhook
// request) take a read lock and get copies; writers (file reloads, cluster watch events)
// replace whole channels, so a request never sees half an update.
type Registry struct {
	mu        sync.RWMutex
	byName    map[string]Channel
	byAccount map[accountKey]string
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{byName: map[string]Channel{}, byAccount: map[accountKey]string{}}
}

// Upsert adds or replaces one channel (a MetaChannel was created or changed, or one of
// its Secrets was).
func (r *Registry) Upsert(ch Channel) error {
	if err := ch.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	k := accountKey{ch.Platform, ch.AccountID()}
	if owner, ok := r.byAccount[k]; ok && owner != ch.Name {
		return fmt.Errorf("channel %q: %s account: %w (%q)", ch.Name, ch.Platform, ErrConflict, owner)
	}
	r.deleteLocked(ch.Name)
	r.byName[ch.Name] = ch.clone()
	r.byAccount[k] = ch.Name
	return nil
}

// Delete removes a channel; its webhook URL answers 404 from then on.
func (r *Registry) Delete(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleteLocked(name)
}

func (r *Registry) deleteLocked(name string) {
	if old, ok := r.byName[name]; ok {
		delete(r.byAccount, accountKey{old.Platform, old.AccountID()})
		delete(r.byName, name)
	}
}

// Replace atomically swaps the whole set (a reload of the standalone file). The new set is
// validated first; on error nothing changes, so a typo in the file never takes the
// running channels down.
func (r *Registry) Replace(chs []Channel) error {
	byName := make(map[string]Channel, len(chs))
	byAccount := make(map[accountKey]string, len(chs))
	for _, ch := range chs {
		if err := ch.Validate(); err != nil {
			return err
		}
		if _, dup := byName[ch.Name]; dup {
			return fmt.Errorf("channel %q defined twice", ch.Name)
		}
		k := accountKey{ch.Platform, ch.AccountID()}
		if owner, ok := byAccount[k]; ok {
			return fmt.Errorf("channel %q: %s account: %w (%q)", ch.Name, ch.Platform, ErrConflict, owner)
		}
		byName[ch.Name] = ch.clone()
		byAccount[k] = ch.Name
	}
	r.mu.Lock()
	r.byName, r.byAccount = byName, byAccount
	r.mu.Unlock()
	return nil
}

// Lookup returns a copy of the named channel.
func (r *Registry) Lookup(name string) (Channel, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	ch, ok := r.byName[name]
	return ch.clone(), ok
}

// LookupByAccount returns the channel serving a platform account id (WhatsApp phone number
// id, Page id, Instagram account id): how a cluster-wide front door routes each change.
func (r *Registry) LookupByAccount(p meta.Platform, id string) (Channel, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	name, ok := r.byAccount[accountKey{p, id}]
	if !ok {
		return Channel{}, false
	}
	return r.byName[name].clone(), true
}

// Names lists the channels, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.byName))
	for n := range r.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Owner returns the channel a part of a delivery belongs to, judged by the part's own ids
// (see Channel.Owns): WhatsApp changes by their phone number id, Messenger and Instagram
// parts by entry.id. A WhatsApp account-level change names only its business account,
// which several phone numbers may share: it has no single owner, and Owner reports none
// (BusinessAccount lists the channels it concerns).
func (r *Registry) Owner(p *meta.Part) (Channel, bool) {
	id := p.AccountID
	if p.Platform == meta.WhatsApp && p.AccountID == p.EntryID {
		return Channel{}, false
	}
	if id == "" {
		return Channel{}, false
	}
	ch, ok := r.LookupByAccount(p.Platform, id)
	if !ok || !ch.Owns(p) {
		return Channel{}, false
	}
	return ch, true
}

// BusinessAccount returns the WhatsApp channels whose business account id is one of ids,
// sorted by name: the channels a WhatsApp account-level notice concerns.
func (r *Registry) BusinessAccount(ids ...string) []Channel {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []Channel
	for _, ch := range r.byName {
		if ch.WhatsApp != nil && slices.Contains(ids, string(ch.WhatsApp.BusinessAccountID)) {
			out = append(out, ch.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
