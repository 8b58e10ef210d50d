package meta

import (
	"bytes"
	"time"
)

// The fast path decodes the common shapes of a delivery (the envelope, and WhatsApp
// "messages" changes with contacts and text or media messages) with a hand-written
// scanner, without reflection and without scanning each byte several times. It either
// produces exactly what the encoding/json path (slowSplit, parseWhatsApp) produces, or
// gives up and leaves the input to that path: any shape it does not know (statuses,
// errors, other message types, nulls, repeated or case-folded keys, deep nesting) takes
// the reference path, which also owns every error. So does any change holding an invalid
// item (a message without id or sender or with a bad timestamp, a contact without wa_id
// or user_id): which items parseWhatsApp leaves out, and how it reports them, is decided
// in one place only, and such changes are too rare to be worth a second implementation.
// TestFastPathMatches and FuzzFastPathMatches compare the two.

// fastSplit is Split's fast path; ok is false when the body must take slowSplit.
func fastSplit(body []byte) (parts []Part, ok bool) {
	parts, _, ok = fastSplitFor(body, false)
	return parts, ok
}

// fastSplitFor is fastSplit, or with routing SplitRouting's scan (see there). entries is
// the content of the body's entry array.
func fastSplitFor(body []byte, routing bool) (parts []Part, entries []byte, ok bool) {
	l := &lexer{b: body}
	var object string
	var platform Platform
	var seen uint8
	ok = l.object(func(key []byte) bool {
		switch string(key) {
		case "object":
			if seen&1 != 0 {
				return false
			}
			seen |= 1
			var ok bool
			if object, ok = l.stringValue(); !ok || object == "" {
				return false
			}
			platform = platformOf(object)
			return true
		case "entry":
			if seen&1 == 0 || seen&2 != 0 { // "object" must come first (it always does)
				return false
			}
			seen |= 2
			l.skipWS()
			start := l.i
			if !l.array(func() bool {
				var ok bool
				parts, ok = fastEntry(l, object, platform, parts, routing)
				return ok
			}) {
				return false
			}
			entries = body[start+1 : l.i-1]
			return true
		}
		return plainKey(key) && l.skip(0)
	})
	if !ok || seen&1 == 0 || !l.end() {
		return nil, nil, false
	}
	return parts, entries, true
}

type fastChange struct {
	field string
	value []byte // nil when absent
}

// fastEntry decodes one entry and appends its parts in slowSplit's order: changes,
// then messaging items, then standby items. With routing, the parts' Raw are slices of
// the body and a WhatsApp change's value is only scanned for its phone number id.
func fastEntry(l *lexer, object string, platform Platform, parts []Part, routing bool) ([]Part, bool) {
	keep := bytes.Clone
	if routing {
		keep = func(b []byte) []byte { return b }
	}
	var id string
	var rawTime []byte
	var changes []fastChange
	var messaging, standby [][]byte
	var seen keySet
	once := seen.once
	rawItems := func(dst *[][]byte) bool {
		return l.array(func() bool {
			v, ok := l.span()
			if !ok || v[0] != '{' {
				return false
			}
			*dst = append(*dst, keep(v))
			return true
		})
	}
	ok := l.object(func(key []byte) bool {
		switch string(key) {
		case "id":
			var ok bool
			id, ok = l.flexValue()
			return once(1) && ok
		case "time":
			v, ok := l.span()
			if !ok || v[0] == 'n' { // null
				return false
			}
			rawTime = keep(v)
			return once(2)
		case "changes":
			return once(4) && l.array(func() bool {
				var c fastChange
				var cs uint8
				ok := l.object(func(key []byte) bool {
					switch string(key) {
					case "field":
						if cs&1 != 0 {
							return false
						}
						cs |= 1
						var ok bool
						c.field, ok = l.stringValue()
						return ok
					case "value":
						if cs&2 != 0 {
							return false
						}
						cs |= 2
						v, ok := l.span()
						if !ok || v[0] != '{' {
							return false
						}
						c.value = keep(v)
						return true
					}
					return plainKey(key) && l.skip(0)
				})
				changes = append(changes, c)
				return ok
			})
		case "messaging":
			return once(8) && rawItems(&messaging)
		case "standby":
			return once(16) && rawItems(&standby)
		}
		return plainKey(key) && l.skip(0)
	})
	if !ok {
		return parts, false
	}
	et, _ := parseTime(rawTime)
	base := Part{Object: object, Platform: platform, EntryID: id, EntryTime: et, entryT: rawTime, routing: routing}
	for _, c := range changes {
		p := base
		p.Raw = c.value
		p.AccountID = p.EntryID
		p.Field = c.field
		if routing {
			if platform == WhatsApp && len(c.value) > 0 {
				phone, ok := waPhoneNumberID(c.value)
				if !ok {
					return parts, false
				}
				if phone != "" {
					p.AccountID = phone
				}
			}
			parts = append(parts, p)
			continue
		}
		if platform == WhatsApp && len(c.value) > 0 {
			if p.Field == "messages" {
				if phone, parsed, ok := fastWAValue(c.value, et); ok {
					if phone != "" {
						p.AccountID = phone
					}
					p.fast = parsed
					parts = append(parts, p)
					continue
				}
			}
			p.decodeWA()
		}
		parts = append(parts, p)
	}
	for _, raw := range messaging {
		p := base
		p.Raw, p.Field, p.AccountID = raw, "messaging", p.EntryID
		parts = append(parts, p)
	}
	for _, raw := range standby {
		p := base
		p.Raw, p.Field, p.AccountID = raw, "standby", p.EntryID
		parts = append(parts, p)
	}
	return parts, true
}

// fastWAValue decodes a WhatsApp "messages" change value holding contacts and text or
// media messages, and normalizes it as parseWhatsApp would.
func fastWAValue(value []byte, entryTime time.Time) (phone string, out *Parsed, ok bool) {
	l := &lexer{b: value}
	out = &Parsed{}
	b := &out.Batch
	var seen keySet
	once := seen.once
	// Contacts come before messages in parseWhatsApp's output whatever the key order.
	var msgs []Message
	var files []File
	ok = l.object(func(key []byte) bool {
		switch string(key) {
		case "metadata":
			return once(1) && l.object(func(key []byte) bool {
				if string(key) == "phone_number_id" {
					if phone != "" {
						return false
					}
					var ok bool
					phone, ok = l.flexValue()
					return ok && phone != ""
				}
				return plainKey(key) && l.skip(0)
			})
		case "contacts":
			return once(2) && l.array(func() bool {
				c, ok := fastWAContact(l)
				b.Contacts = append(b.Contacts, c)
				return ok
			})
		case "messages":
			return once(4) && l.array(func() bool {
				var ok bool
				msgs, files, ok = fastWAMessage(l, entryTime, msgs, files)
				return ok
			})
		case "statuses", "errors":
			return false
		}
		return plainKey(key) && l.skip(0)
	})
	if !ok || !l.end() {
		return "", nil, false
	}
	b.Messages, b.Files = msgs, files
	return phone, out, true
}

func fastWAContact(l *lexer) (Contact, bool) {
	var waID, userID, parent, name, username string
	var seen uint8
	once := func(bit uint8, ok bool) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	}
	ok := l.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "profile":
			var ps uint8
			return once(1, true) && l.object(func(key []byte) bool {
				var ok bool
				switch string(key) {
				case "name":
					name, ok = l.stringValue()
					return ps&1 == 0 && setBit(&ps, 1) && ok
				case "username":
					username, ok = l.stringValue()
					return ps&2 == 0 && setBit(&ps, 2) && ok
				}
				return plainKey(key) && l.skip(0)
			})
		case "wa_id":
			waID, ok = l.flexValue()
			return once(2, ok)
		case "user_id":
			userID, ok = l.stringValue()
			return once(4, ok)
		case "parent_user_id":
			parent, ok = l.stringValue()
			return once(8, ok)
		}
		return plainKey(key) && l.skip(0)
	})
	subj, _ := waSubject(waID, userID)
	if !ok || subj == "" {
		return Contact{}, false
	}
	return Contact{
		Platform: WhatsApp, Subject: subj, WaID: waID, UserID: userID,
		ParentUserID: parent, Username: username, Name: name,
	}, true
}

func setBit(b *uint8, bit uint8) bool {
	*b |= bit
	return true
}

type fastMedia struct {
	present                               bool
	id, mime, sha, caption, filename, url string
	voice, animated                       bool
}

func fastWAMedia(l *lexer, m *fastMedia) bool {
	if m.present {
		return false
	}
	m.present = true
	var seen uint8
	return l.object(func(key []byte) bool {
		var ok bool
		var bit uint8
		switch string(key) {
		case "id":
			m.id, ok = l.flexValue()
			bit = 1
		case "mime_type":
			m.mime, ok = l.stringValue()
			bit = 2
		case "sha256":
			m.sha, ok = l.stringValue()
			bit = 4
		case "caption":
			m.caption, ok = l.stringValue()
			bit = 8
		case "filename":
			m.filename, ok = l.stringValue()
			bit = 16
		case "url":
			m.url, ok = l.stringValue()
			bit = 32
		case "voice":
			m.voice, ok = l.boolValue()
			bit = 64
		case "animated":
			m.animated, ok = l.boolValue()
			bit = 128
		default:
			return plainKey(key) && l.skip(0)
		}
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		return true
	})
}

// fastWAMessage decodes one message (text or media) and appends its normalized records.
func fastWAMessage(l *lexer, entryTime time.Time, msgs []Message, files []File) ([]Message, []File, bool) {
	var from, fromUserID, id, typ, replyTo string
	var ts time.Time
	var forwarded, hasText bool
	var text string
	var media [5]fastMedia // image, video, audio, document, sticker
	var seen uint16
	once := func(bit uint16, ok bool) bool {
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		return ok
	}
	l.skipWS()
	start := l.i
	l.ws = false
	ok := l.object(func(key []byte) bool {
		var ok bool
		switch string(key) {
		case "from":
			from, ok = l.flexValue()
			return once(1, ok)
		case "from_user_id":
			fromUserID, ok = l.stringValue()
			return once(2, ok)
		case "id":
			id, ok = l.stringValue()
			return once(4, ok)
		case "timestamp":
			v, ok := l.span()
			if !ok || v[0] == 'n' {
				return false
			}
			t, err := parseTime(v)
			ts = t
			return once(8, err == nil)
		case "type":
			typ, ok = l.stringValue()
			return once(16, ok)
		case "context":
			var cs uint8
			return once(32, true) && l.object(func(key []byte) bool {
				var ok, v bool
				switch string(key) {
				case "id":
					replyTo, ok = l.stringValue()
					return cs&1 == 0 && setBit(&cs, 1) && ok
				case "forwarded", "frequently_forwarded":
					bit := uint8(2)
					if len(key) > len("forwarded") {
						bit = 4
					}
					v, ok = l.boolValue()
					forwarded = forwarded || v
					return cs&bit == 0 && setBit(&cs, bit) && ok
				}
				return plainKey(key) && l.skip(0)
			})
		case "text":
			hasText = true
			var ts uint8
			return once(64, true) && l.object(func(key []byte) bool {
				if string(key) == "body" {
					var ok bool
					text, ok = l.stringValue()
					return ts == 0 && setBit(&ts, 1) && ok
				}
				return plainKey(key) && l.skip(0)
			})
		case "image":
			return fastWAMedia(l, &media[0])
		case "video":
			return fastWAMedia(l, &media[1])
		case "audio":
			return fastWAMedia(l, &media[2])
		case "document":
			return fastWAMedia(l, &media[3])
		case "sticker":
			return fastWAMedia(l, &media[4])
		case "location", "contacts", "interactive", "button", "reaction", "revoke", "errors",
			"referral", "group_id", "order", "voice":
			return false
		}
		return plainKey(key) && l.skip(0)
	})
	raw := l.b[start:l.i]
	hadWS := l.ws
	// Invalid messages (see parseWhatsApp) are handed over, never skipped here.
	if !ok || id == "" {
		return msgs, files, false
	}
	subj, alt := waSubject(from, fromUserID)
	if subj == "" {
		return msgs, files, false
	}
	msg := Message{
		Platform: WhatsApp, ID: id, Subject: subj, SubjectAlt: alt, Direction: Inbound,
		Type: typ, Timestamp: firstTime(ts, entryTime), ReplyTo: replyTo, Forwarded: forwarded,
	}
	var md *fastMedia
	switch typ {
	case "text":
		if !hasText {
			return msgs, files, false
		}
		msg.Text = text
	case "image":
		md = &media[0]
	case "video":
		md = &media[1]
	case "audio":
		md = &media[2]
	case "document":
		md = &media[3]
	case "sticker":
		md = &media[4]
	default:
		return msgs, files, false
	}
	if md != nil {
		if !md.present {
			return msgs, files, false
		}
		msg.Text = md.caption
		files = append(files, File{
			Platform: WhatsApp, MessageID: id, Subject: subj, SubjectAlt: alt, Kind: typ,
			MediaID: md.id, URL: md.url, MIMEType: md.mime, SHA256: md.sha,
			Caption: md.caption, Filename: md.filename, Voice: md.voice, Animated: md.animated,
		})
	}
	if hadWS {
		msg.Raw = compact(raw)
	} else {
		msg.Raw = bytes.Clone(raw)
	}
	return append(msgs, msg), files, true
}
