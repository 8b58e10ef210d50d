// Package docenc encodes the JSON documents the store backends keep for every record.
// All backends share it so that an export prints the same bytes whichever database
// holds the records.
//
// Hand-written encoders cover the documents stored on every delivery (messages, files,
// contacts). They write exactly the bytes Marshal (encoding/json without HTML escaping)
// writes, field for field, and report false for anything they do not cover (nested
// reactions, locations, replies, errors), which then goes through Marshal.
// TestDocEncodersMatch and FuzzDocEncodersMatch compare them with encoding/json.
package docenc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// Marshal encodes without HTML escaping: json.Marshal would rewrite "&" in a stored raw
// fragment as "\u0026", and the fragment must stay the bytes Meta sent.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// appendJSONString is encoding/json's string encoding with HTML escaping off.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

type docWriter struct {
	buf   []byte
	first bool
}

func newDoc(capacity int) *docWriter {
	return &docWriter{buf: append(make([]byte, 0, capacity), '{'), first: true}
}

func (w *docWriter) key(k string) {
	if !w.first {
		w.buf = append(w.buf, ',')
	}
	w.first = false
	w.buf = append(w.buf, '"')
	w.buf = append(w.buf, k...)
	w.buf = append(w.buf, '"', ':')
}

func (w *docWriter) str(k, v string) {
	w.key(k)
	w.buf = appendJSONString(w.buf, v)
}

func (w *docWriter) strOmit(k, v string) {
	if v != "" {
		w.str(k, v)
	}
}

func (w *docWriter) boolOmit(k string, v bool) {
	if v {
		w.key(k)
		w.buf = append(w.buf, "true"...)
	}
}

// timeOmitzero writes a time as time.Time.MarshalJSON does; false if it would fail.
func (w *docWriter) timeOmitzero(k string, t time.Time) bool {
	if t.IsZero() {
		return true
	}
	if y := t.Year(); t.Location() != time.UTC || y < 0 || y > 9999 {
		return false
	}
	w.key(k)
	w.buf = append(w.buf, '"')
	w.buf = t.AppendFormat(w.buf, time.RFC3339Nano)
	w.buf = append(w.buf, '"')
	return true
}

func (w *docWriter) done() []byte { return append(w.buf, '}') }

// encodeMessage is Marshal(m) for messages without nested objects.
func encodeMessage(m *meta.Message) ([]byte, bool) {
	if m.Reaction != nil || m.Location != nil || m.Reply != nil || m.Order != nil || len(m.Errors) > 0 {
		return nil, false
	}
	w := newDoc(160 + len(m.Text) + len(m.Raw) + len(m.ID) + len(m.Subject))
	w.str("platform", string(m.Platform))
	w.str("channel", m.Channel)
	w.str("id", m.ID)
	w.str("subject", m.Subject)
	w.strOmit("subjectAlt", m.SubjectAlt)
	w.str("direction", string(m.Direction))
	w.str("type", m.Type)
	w.strOmit("text", m.Text)
	if !w.timeOmitzero("timestamp", m.Timestamp) {
		return nil, false
	}
	w.strOmit("replyTo", m.ReplyTo)
	w.boolOmit("forwarded", m.Forwarded)
	w.strOmit("groupID", m.GroupID)
	if len(m.Raw) > 0 {
		w.key("raw")
		// encoding/json validates and compacts a RawMessage; the parser's fragments are
		// already compact, which a cheaper scan confirms.
		if meta.IsCompactJSON(m.Raw) {
			w.buf = append(w.buf, m.Raw...)
			return w.done(), true
		}
		b := bytes.NewBuffer(w.buf)
		if err := json.Compact(b, m.Raw); err != nil {
			return nil, false
		}
		w.buf = b.Bytes()
	}
	return w.done(), true
}

// encodeFile is Marshal(f).
func encodeFile(f *meta.File) ([]byte, bool) {
	w := newDoc(200 + len(f.URL) + len(f.Caption))
	w.str("platform", string(f.Platform))
	w.str("channel", f.Channel)
	w.str("messageID", f.MessageID)
	w.key("index")
	w.buf = strconv.AppendInt(w.buf, int64(f.Index), 10)
	w.str("subject", f.Subject)
	w.strOmit("subjectAlt", f.SubjectAlt)
	w.str("mediaKind", f.Kind)
	w.strOmit("mediaID", f.MediaID)
	w.strOmit("url", f.URL)
	w.strOmit("mimeType", f.MIMEType)
	w.strOmit("sha256", f.SHA256)
	w.strOmit("caption", f.Caption)
	w.strOmit("filename", f.Filename)
	w.boolOmit("voice", f.Voice)
	w.boolOmit("animated", f.Animated)
	w.boolOmit("noFetch", f.NoFetch)
	w.strOmit("stickerID", f.StickerID)
	return w.done(), true
}

// encodeContact is Marshal(c).
func encodeContact(c *meta.Contact) ([]byte, bool) {
	w := newDoc(128 + len(c.Name))
	w.str("platform", string(c.Platform))
	w.str("channel", c.Channel)
	w.str("subject", c.Subject)
	w.strOmit("waID", c.WaID)
	w.strOmit("userID", c.UserID)
	w.strOmit("parentUserID", c.ParentUserID)
	w.strOmit("username", c.Username)
	w.strOmit("name", c.Name)
	return w.done(), true
}

// Encode encodes a stored document, by hand when it can: the bytes are Marshal's.
func Encode(v any) ([]byte, error) {
	var b []byte
	ok := false
	switch r := v.(type) {
	case *meta.Message:
		b, ok = encodeMessage(r)
	case *meta.File:
		b, ok = encodeFile(r)
	case *meta.Contact:
		b, ok = encodeContact(r)
	}
	if ok {
		return b, nil
	}
	return Marshal(v)
}
