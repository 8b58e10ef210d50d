package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/storegen"
)

// Old is how far before storegen.Epoch the records retention removes are dated; the
// retention cutoff is half of it.
const Old = 365 * 24 * time.Hour

// commitSize is the messages per Commit while building: large transactions, as a bulk
// load would use, so that a million rows take a minute, not an hour.
const commitSize = 2000

// build fills st with s.contacts people sharing s.messages messages (one delivery
// status each, a file on every tenth); the first oldPeople people's records are dated
// Old earlier.
func build(ctx context.Context, st store.Store, s size, oldPeople int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *meta.Batch, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for w := range errs {
		wg.Go(func() {
			for b := range batches {
				if _, err := st.Commit(ctx, b); err != nil {
					errs[w] = fmt.Errorf("build: %w", err)
					cancel()
					return
				}
			}
		})
	}
	per, extra := s.messages/s.contacts, s.messages%s.contacts
	acc := &meta.Batch{}
	for i := range s.contacts {
		n := per
		if i < extra {
			n++
		}
		// Time follows the order of arrival, as in a real store (what retention deletes
		// together was stored together): person i speaks after person i-1.
		offset := time.Duration(i*(per+1)) * time.Second
		if i < oldPeople {
			offset -= Old
		}
		p := storegen.Person(i, 0, n, offset)
		merge(acc, &p)
		if len(acc.Messages) < commitSize && i < s.contacts-1 {
			continue
		}
		select {
		case batches <- acc:
		case <-ctx.Done():
		}
		acc = &meta.Batch{}
	}
	close(batches)
	wg.Wait()
	return errors.Join(errs...)
}

// addPerson stores person i with n messages, in deliveries of at most commitSize.
func addPerson(ctx context.Context, st store.Store, i, n int) error {
	for first := 0; first < n; first += commitSize {
		b := storegen.Person(i, first, min(commitSize, n-first), 0)
		if _, err := st.Commit(ctx, &b); err != nil {
			return fmt.Errorf("add person: %w", err)
		}
	}
	return nil
}

func merge(dst, src *meta.Batch) {
	dst.Contacts = append(dst.Contacts, src.Contacts...)
	dst.Messages = append(dst.Messages, src.Messages...)
	dst.Statuses = append(dst.Statuses, src.Statuses...)
	dst.Receipts = append(dst.Receipts, src.Receipts...)
	dst.Files = append(dst.Files, src.Files...)
	dst.Identities = append(dst.Identities, src.Identities...)
	dst.Leads = append(dst.Leads, src.Leads...)
}
