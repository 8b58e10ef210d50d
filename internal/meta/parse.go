package meta

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed wraps every error that means the delivery body is not a Meta envelope
// (the worker answers 400). Errors inside a single part are reported by Part.Parse.
var ErrMalformed = errors.New("malformed delivery")

// Part is one self-contained unit of a delivery: one change of one entry, or one
// messaging/standby item. A delivery is split into parts so that each is attributed by its
// own ids and can be handled (or forwarded by a future front door) on its own.
type Part struct {
	Object    string   // envelope "object"
	Platform  Platform // "" when the object is not one we know
	EntryID   string   // entry.id: WABA id, Page id or Instagram account id
	EntryTime time.Time
	// Field is the change's field, or "messaging"/"standby" for messaging items.
	Field string
	// AccountID is the id the part must be attributed by: WhatsApp
	// metadata.phone_number_id when the change carries one, otherwise EntryID.
	AccountID string
	// Raw is the messaging item exactly as received, or the change's value (the change
	// object itself is rebuilt from Field and Raw when the part is forwarded).
	Raw json.RawMessage

	wa     *waValue // decoded in Split when needed for attribution
	waErr  error
	fast   *Parsed // a WhatsApp messages change already normalized by the fast path
	entryT json.RawMessage
	// routing: made by SplitRouting, which decodes nothing Parse needs.
	routing bool
}

type envelope struct {
	Object string  `json:"object"`
	Entry  []entry `json:"entry"`
}

type entry struct {
	ID        flexString        `json:"id"`
	Time      json.RawMessage   `json:"time"`
	Changes   []change          `json:"changes"` // decoded in the envelope's single pass
	Messaging []json.RawMessage `json:"messaging"`
	Standby   []json.RawMessage `json:"standby"`
}

type change struct {
	Field string          `json:"field"`
	Value json.RawMessage `json:"value"`
}

// Split decodes the envelope of a delivery and returns its parts in order. It fails only
// when the body is not JSON or not shaped like a Meta envelope; problems inside a part are
// left for Part.Parse so that one bad change cannot hide the good ones.
func Split(body []byte) ([]Part, error) {
	if parts, ok := fastSplit(body); ok {
		return parts, nil
	}
	return slowSplit(body)
}

// slowSplit is Split with encoding/json: the reference, and the path for every shape the
// fast path does not handle.
func slowSplit(body []byte) ([]Part, error) {
	var env envelope
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if env.Object == "" { // also null, {} and anything that is not a Meta envelope
		return nil, fmt.Errorf("%w: no object", ErrMalformed)
	}
	platform := platformOf(env.Object)
	var parts []Part
	for _, e := range env.Entry {
		et, _ := parseTime(e.Time) // a bad entry.time only loses a fallback timestamp
		base := Part{Object: env.Object, Platform: platform, EntryID: string(e.ID), EntryTime: et, entryT: e.Time}
		for _, c := range e.Changes {
			p := base
			p.Raw = c.Value
			p.AccountID = p.EntryID
			p.Field = c.Field
			if platform == WhatsApp && len(c.Value) > 0 {
				p.decodeWA()
			}
			parts = append(parts, p)
		}
		for _, raw := range e.Messaging {
			p := base
			p.Raw, p.Field, p.AccountID = raw, "messaging", p.EntryID
			parts = append(parts, p)
		}
		for _, raw := range e.Standby {
			p := base
			p.Raw, p.Field, p.AccountID = raw, "standby", p.EntryID
			parts = append(parts, p)
		}
	}
	return parts, nil
}

// decodeWA decodes a WhatsApp change value for attribution (and parsing).
func (p *Part) decodeWA() {
	p.wa = new(waValue)
	if err := json.Unmarshal(p.Raw, p.wa); err != nil {
		p.wa, p.waErr = nil, err
	} else if p.wa.Metadata.PhoneNumberID != "" {
		p.AccountID = string(p.wa.Metadata.PhoneNumberID)
	}
}

// Parsed is what one part yields: records to store, the kinds of events that were
// acknowledged without being stored (for metrics), and the items left out as invalid.
type Parsed struct {
	Batch   Batch
	Ignored []string
	// Invalid lists the items of the part that could not be stored (a WhatsApp message
	// with a bad timestamp, a delivery receipt naming an empty message id): they are
	// left out so that their valid siblings in the same part are still stored.
	Invalid []InvalidItem
}

// InvalidItem is one item of a part left out because no record the store accepts could
// be made of it.
type InvalidItem struct {
	// Kind is a metric label such as "whatsapp.message": never an id or text.
	Kind string
	// Err says why, without payload values, so that it can be logged.
	Err error
}

// Parse normalizes the part. An error means the part as a whole is authentic but
// unusable (for example a Messenger message without an id, or a WhatsApp change value
// that is not an object); the caller acknowledges and counts it. Unusable items inside
// an otherwise usable part are reported in Parsed.Invalid instead.
func (p *Part) Parse() (Parsed, error) {
	var out Parsed
	var err error
	switch {
	case p.routing:
		return out, errRoutingPart
	case p.Platform == "":
		out.Ignored = append(out.Ignored, "unknown_object")
	case p.Field == "messaging" || p.Field == "standby":
		err = parseMessaging(p.Platform, p.Raw, p.EntryTime, &out)
	case p.Platform == WhatsApp:
		if p.waErr != nil {
			return out, fmt.Errorf("whatsapp change value: %w", p.waErr)
		}
		if p.fast != nil {
			return p.fast.clone(), nil
		}
		if p.Field != "messages" || p.wa == nil {
			out.Ignored = append(out.Ignored, ignoredKind(p.Platform, p.Field))
			return out, nil
		}
		parseWhatsApp(p.wa, p.EntryTime, &out)
	case p.Platform == Instagram && (p.Field == "comments" || p.Field == "live_comments"):
		err = parseIGComment(p.EntryID, p.Raw, p.EntryTime, &out)
	case p.Field == "messages":
		// The App Dashboard's test events (and some older Instagram payloads) wrap a
		// messaging item in changes[].value with a string timestamp.
		err = parseMessaging(p.Platform, p.Raw, p.EntryTime, &out)
	default:
		out.Ignored = append(out.Ignored, ignoredKind(p.Platform, p.Field))
	}
	if err != nil {
		return Parsed{}, err
	}
	return out, nil
}

// clone copies the record slices, so that a caller may modify what Parse returns.
func (p *Parsed) clone() Parsed {
	var c Parsed
	c.Batch.Append(&p.Batch)
	if len(p.Ignored) > 0 {
		c.Ignored = append([]string(nil), p.Ignored...)
	}
	if len(p.Invalid) > 0 {
		c.Invalid = append([]InvalidItem(nil), p.Invalid...)
	}
	return c
}

// Kind is a low-cardinality label for the part ("whatsapp.messages", "page" items are
// "messenger.messaging"), safe for metrics: it never contains ids or text.
func (p *Part) Kind() string {
	if p.Platform == "" {
		return "unknown_object"
	}
	return ignoredKind(p.Platform, p.Field)
}

// Envelope re-wraps the part as a complete one-entry delivery.
func (p *Part) Envelope() ([]byte, error) { return Envelope([]Part{*p}) }

// Envelope wraps parts of one delivery (they share its object) as a complete delivery,
// one entry per part, each with its entry's id and time: what the front door forwards to
// a tenant's worker, and what Split takes apart again into the same parts.
func Envelope(parts []Part) ([]byte, error) {
	type outEntry struct {
		ID        string            `json:"id"`
		Time      json.RawMessage   `json:"time,omitempty"`
		Changes   []json.RawMessage `json:"changes,omitempty"`
		Messaging []json.RawMessage `json:"messaging,omitempty"`
		Standby   []json.RawMessage `json:"standby,omitempty"`
	}
	if len(parts) == 0 {
		return nil, errors.New("envelope of no parts")
	}
	entries := make([]outEntry, 0, len(parts))
	for i := range parts {
		p := &parts[i]
		if p.Object != parts[0].Object {
			return nil, fmt.Errorf("envelope: parts of objects %q and %q", parts[0].Object, p.Object)
		}
		e := outEntry{ID: p.EntryID, Time: p.entryT}
		switch p.Field {
		case "messaging":
			e.Messaging = []json.RawMessage{p.Raw}
		case "standby":
			e.Standby = []json.RawMessage{p.Raw}
		default:
			c, err := json.Marshal(struct {
				Field string          `json:"field"`
				Value json.RawMessage `json:"value,omitempty"`
			}{p.Field, p.Raw})
			if err != nil {
				return nil, fmt.Errorf("marshal change: %w", err)
			}
			e.Changes = []json.RawMessage{c}
		}
		entries = append(entries, e)
	}
	b, err := json.Marshal(struct {
		Object string     `json:"object"`
		Entry  []outEntry `json:"entry"`
	}{parts[0].Object, entries})
	if err != nil {
		return nil, fmt.Errorf("marshal part envelope: %w", err)
	}
	return b, nil
}

// Combine joins the parts of several deliveries of one object into one delivery (as Meta
// batches the changes of several accounts into one POST).
func Combine(bodies ...[]byte) ([]byte, error) {
	var all []Part
	for i, b := range bodies {
		parts, err := Split(b)
		if err != nil {
			return nil, fmt.Errorf("delivery %d: %w", i, err)
		}
		all = append(all, parts...)
	}
	return Envelope(all)
}

// ParseDelivery splits and parses a whole delivery, ignoring attribution. Handy for tests
// and tools; the worker itself attributes each part before keeping its records.
func ParseDelivery(body []byte) (Parsed, error) {
	parts, err := Split(body)
	if err != nil {
		return Parsed{}, err
	}
	var all Parsed
	for i := range parts {
		pp, err := parts[i].Parse()
		if err != nil {
			return Parsed{}, fmt.Errorf("part %d: %w", i, err)
		}
		all.Batch.Append(&pp.Batch)
		all.Ignored = append(all.Ignored, pp.Ignored...)
		all.Invalid = append(all.Invalid, pp.Invalid...)
	}
	return all, nil
}

func platformOf(object string) Platform {
	switch object {
	case "whatsapp_business_account":
		return WhatsApp
	case "page":
		return Messenger
	case "instagram":
		return Instagram
	}
	return ""
}

// ignoredKind builds a metric label for an unstored event kind. Field names come from
// signed bodies but are still bounded to a safe shape so labels cannot explode.
func ignoredKind(p Platform, field string) string {
	if field == "" || len(field) > 40 || strings.Trim(field, "abcdefghijklmnopqrstuvwxyz_") != "" {
		field = "other"
	}
	return strings.ToLower(string(p)) + "." + field
}

// flexString accepts a JSON string or number (ids exceed 2^53 and some arrive as numbers,
// e.g. Messenger echo app_id); numbers keep their literal digits.
type flexString string

func (s *flexString) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0 || string(b) == "null":
		*s = ""
	case b[0] == '"' && bytes.IndexByte(b, '\\') < 0 && len(b) >= 2:
		*s = flexString(b[1 : len(b)-1]) // plain string: no unescaping needed
	case b[0] == '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("id string: %w", err)
		}
		*s = flexString(v)
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		*s = flexString(b)
	default:
		return errors.New("id: want a string or a number") // no value: errors get logged
	}
	return nil
}

// flexTime accepts Meta's timestamps: a string of seconds (WhatsApp), an integer of
// milliseconds (Messenger, Instagram) or of seconds (some entry.time); values at or above
// 10^12 are milliseconds. The result is UTC.
type flexTime struct{ time.Time }

func (t *flexTime) UnmarshalJSON(b []byte) error {
	v, err := parseTime(b)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// flexNumber accepts a JSON number or a string holding one (Meta's reference shows
// order quantities and prices both ways). Anything else is an error.
type flexNumber float64

func (n *flexNumber) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	if s == "null" || s == `""` {
		*n = 0
		return nil
	}
	if len(s) > 0 && s[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return fmt.Errorf("number string: %w", err)
		}
		s = strings.TrimSpace(str)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return errors.New("not a number") // no value: errors get logged
	}
	*n = flexNumber(f)
	return nil
}

func parseTime(b []byte) (time.Time, error) {
	s := strings.TrimSpace(string(b))
	if s == "" || s == "null" {
		return time.Time{}, nil
	}
	if s[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return time.Time{}, fmt.Errorf("timestamp string: %w", err)
		}
		s = strings.TrimSpace(str)
		if s == "" {
			return time.Time{}, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return unixAuto(n)
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f >= 1e17 {
		return time.Time{}, errors.New("timestamp: not a unix time") // no value: errors get logged
	}
	return unixAuto(int64(f))
}

func unixAuto(n int64) (time.Time, error) {
	// Bound to years 1970..~5000 so that arithmetic never overflows and nonsense is refused.
	if n < 0 || n >= 1e17 {
		return time.Time{}, errors.New("timestamp out of range")
	}
	if n >= 1e12 {
		return time.UnixMilli(n).UTC(), nil
	}
	return time.Unix(n, 0).UTC(), nil
}

func compact(raw json.RawMessage) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil
	}
	return buf.Bytes()
}

func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}
