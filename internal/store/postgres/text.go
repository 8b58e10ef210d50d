package postgres

import (
	"bytes"
	"strings"
	"unicode/utf8"
)

// PostgreSQL's TEXT (in a UTF8 database) refuses two things SQLite stores: the NUL
// character and invalid UTF-8. Meta never sends them, but a delivery the store refuses
// fails on every retry and would be redelivered for days, so nothing may be refused for
// its bytes alone. Valid text without NUL, i.e. everything real, is stored unchanged.

// keyEscape starts every escape in keyText; it is a Unicode noncharacter, which text
// from Meta does not contain (and which is itself escaped when it does).
const keyEscape = '\uffff'

// keyText maps an identifier (platform, channel, subject, message id) to text PostgreSQL
// accepts. The mapping is injective, so keys stay as distinct as they were: NUL becomes
// U+FFFF '0', U+FFFF becomes U+FFFF 'F', an invalid byte becomes U+FFFF 'x' and its two
// hex digits. Every column an identifier is stored in or looked up by goes through it,
// and only the JSON documents (which hold the identifiers as sent) are exported.
func keyText(s string) string {
	if strings.IndexByte(s, 0) < 0 && !strings.ContainsRune(s, keyEscape) && utf8.ValidString(s) {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 8)
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(keyEscape)
			b.WriteByte('x')
			b.WriteByte(hex[s[i]>>4])
			b.WriteByte(hex[s[i]&0xf])
		case r == 0:
			b.WriteRune(keyEscape)
			b.WriteByte('0')
		case r == keyEscape:
			b.WriteRune(keyEscape)
			b.WriteByte('F')
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

// nullableKey is keyText, with "" as NULL (an absent wa_id, user id or media id).
func nullableKey(s string) any {
	if s == "" {
		return nil
	}
	return keyText(s)
}

// docText makes a JSON document storable. encoding/json escapes NUL and replaces invalid
// UTF-8 in the strings it encodes, so only a raw fragment copied into a document can
// bring either; a JSON value has them only inside strings, where "\u0000" and U+FFFD
// keep it valid JSON.
func docText(d []byte) []byte {
	if bytes.IndexByte(d, 0) < 0 && utf8.Valid(d) {
		return d
	}
	d = bytes.ToValidUTF8(d, []byte("\ufffd"))
	return bytes.ReplaceAll(d, []byte{0}, []byte(`\u0000`))
}
