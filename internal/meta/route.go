package meta

import (
	"encoding/json"
	"errors"
)

// SplitRouting returns the parts of a delivery as Split does, with what routing them and
// wrapping them again (Envelope) needs: Object, Platform, EntryID, EntryTime, Field,
// AccountID and Raw, equal to Split's. It does not normalize anything (Split turns a
// WhatsApp messages change into records as it goes), and its parts' Raw are slices of
// body, which must outlive them. Such a part cannot be parsed (Parse fails).
//
// A scan finds each WhatsApp change's metadata.phone_number_id, validating the rest of
// the delivery as it steps over it; any shape the scan does not know, or where it could
// differ from encoding/json, takes Split instead, so the result is always Split's.
// FuzzSplitRoutingMatchesSplit compares the two.
//
// When the scan took the body, entries is the content of its entry array (a slice of
// body), which JoinEntries can put in one delivery with other deliveries' of the same
// object; nil otherwise.
func SplitRouting(body []byte) (parts []Part, entries []byte, err error) {
	if parts, entries, ok := fastSplitFor(body, true); ok {
		return parts, entries, nil
	}
	parts, err = Split(body)
	return parts, nil, err
}

// JoinEntries returns one delivery of object holding the entries of several (each the
// content of a delivery's entry array, as SplitRouting gives it): Split takes it apart
// into the parts of each in turn.
func JoinEntries(object string, entries [][]byte) []byte {
	obj, _ := json.Marshal(object) // a string always encodes
	n := len(`{"object":,"entry":[]}`) + len(obj)
	for _, e := range entries {
		n += len(e) + 1
	}
	out := make([]byte, 0, n)
	out = append(out, `{"object":`...)
	out = append(out, obj...)
	out = append(out, `,"entry":[`...)
	for i, e := range entries {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, e...)
	}
	return append(out, "]}"...)
}

var errRoutingPart = errors.New("a part of SplitRouting cannot be parsed: use Split")

// waPhoneNumberID finds a WhatsApp change value's metadata.phone_number_id as the
// decoding of waValue does (decodeWA), or gives up (ok false) where that decoding could
// fail or read the id otherwise: a member of a type it would refuse, a null, a repeated
// or case-folded key.
func waPhoneNumberID(value []byte) (phone string, ok bool) {
	l := &lexer{b: value}
	var seen keySet
	once := seen.once
	ok = l.object(func(key []byte) bool {
		switch string(key) {
		case "metadata":
			return once(1) && l.object(func(key []byte) bool {
				if string(key) == "phone_number_id" {
					var ok bool
					phone, ok = l.flexValue()
					return once(2) && ok
				}
				return plainKey(key) && l.skip(0)
			})
		case "contacts":
			return once(4) && l.next() == '[' && l.skip(0)
		case "messages":
			return once(8) && l.next() == '[' && l.skip(0)
		case "statuses":
			return once(16) && l.next() == '[' && l.skip(0)
		case "errors":
			return once(32) && l.next() == '[' && l.skip(0)
		}
		return plainKey(key) && l.skip(0)
	})
	return phone, ok && l.end()
}
