package store

import (
	"context"
	"fmt"
	"sort"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Lead attribution records (meta.Lead: referrals and opt-ins) live in the table
// "leads" of both SQL backends, keyed by (platform, lead_id). The notification token an
// opt-in hands over is kept in the column "token", never in the document: no export
// (neither a subject's nor a full one) and no log can carry it, and subject erasure
// (scope Contacts) and retention delete it with its row.

// LeadIndexes are the leads table's indexes, in the SQL both backends speak:
// leads_subject answers "every touch of this person, in time order" (first and last
// touch), leads_ts finds them by age for retention.
const LeadIndexes = `
CREATE UNIQUE INDEX IF NOT EXISTS leads_lead_id ON leads(platform, lead_id);
CREATE INDEX IF NOT EXISTS leads_subject ON leads(subject, ts);
CREATE INDEX IF NOT EXISTS leads_subject_alt ON leads(subject_alt) WHERE subject_alt IS NOT NULL;
CREATE INDEX IF NOT EXISTS leads_ts ON leads(ts) WHERE ts IS NOT NULL;
`

// Touches are one contact's lead attribution records on one channel: where the person
// came from first, and most recently.
type Touches struct {
	Platform meta.Platform
	Channel  string
	Subject  string
	// First and Last are the earliest and the latest touch by timestamp (the same record
	// when there is one); All lists every touch in time order.
	First, Last meta.Lead
	All         []meta.Lead
}

// LeadTouches returns the first and last touch of every contact that has lead
// attribution records, or only of one subject (any of their identifiers, linked ones
// included, as for export), from one consistent snapshot of the store. Touches without
// a timestamp sort first; ties keep the order they were stored in.
func LeadTouches(ctx context.Context, s Store, f Filter) ([]Touches, error) {
	byKey := map[[3]string]*Touches{}
	var order [][3]string
	err := s.Export(ctx, f, func(r Record) error {
		if r.Kind != KindLead {
			return nil
		}
		var l meta.Lead
		if err := r.Decode(&l); err != nil {
			return err
		}
		k := [3]string{string(l.Platform), l.Channel, l.Subject}
		t, ok := byKey[k]
		if !ok {
			t = &Touches{Platform: l.Platform, Channel: l.Channel, Subject: l.Subject}
			byKey[k] = t
			order = append(order, k)
		}
		t.All = append(t.All, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lead touches: %w", err)
	}
	out := make([]Touches, 0, len(order))
	for _, k := range order {
		t := byKey[k]
		sort.SliceStable(t.All, func(i, j int) bool { return t.All[i].Timestamp.Before(t.All[j].Timestamp) })
		t.First, t.Last = t.All[0], t.All[len(t.All)-1]
		out = append(out, *t)
	}
	return out, nil
}
