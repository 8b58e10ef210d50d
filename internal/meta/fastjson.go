package meta

import (
	"encoding/json"
	"unicode/utf8"
)

// lexer is a strict, allocation-free JSON scanner for the fast decoding path (fastwa.go).
// It validates everything it reads or skips, so a body the fast path accepts is valid
// JSON; but it gives up (returns false) on anything unusual, and the caller then decodes
// with encoding/json, whose result is the reference. It never produces errors of its own.
type lexer struct {
	b  []byte
	i  int
	ws bool // insignificant whitespace was skipped since the flag was last cleared
}

// keySet records which of an object's known keys were seen: a repeated one makes the
// fast paths give up (encoding/json's last-wins merge is not worth copying).
type keySet uint16

// once marks bit seen and reports whether it was the first time.
func (s *keySet) once(bit keySet) bool {
	if *s&bit != 0 {
		return false
	}
	*s |= bit
	return true
}

// maxFastDepth bounds the recursion of skip; deeper values go to encoding/json.
const maxFastDepth = 64

func (l *lexer) skipWS() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
			l.ws = true
		default:
			return
		}
	}
}

// next skips whitespace and returns the next byte without consuming it (0 at the end).
func (l *lexer) next() byte {
	l.skipWS()
	if l.i < len(l.b) {
		return l.b[l.i]
	}
	return 0
}

func (l *lexer) consume(c byte) bool {
	if l.next() == c {
		l.i++
		return true
	}
	return false
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// str scans the string at l.i (after whitespace) and returns its raw content (between
// the quotes, escapes undecoded), the whole token and whether it holds escapes.
func (l *lexer) str() (content, tok []byte, esc, ok bool) {
	if l.next() != '"' {
		return nil, nil, false, false
	}
	start := l.i
	i := l.i + 1
	for i < len(l.b) {
		c := l.b[i]
		switch {
		case c == '"':
			l.i = i + 1
			return l.b[start+1 : i], l.b[start:l.i], esc, true
		case c == '\\':
			esc = true
			if i+1 >= len(l.b) {
				return nil, nil, false, false
			}
			switch l.b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+5 >= len(l.b) || !isHex(l.b[i+2]) || !isHex(l.b[i+3]) || !isHex(l.b[i+4]) || !isHex(l.b[i+5]) {
					return nil, nil, false, false
				}
				i += 6
			default:
				return nil, nil, false, false
			}
		case c < 0x20:
			return nil, nil, false, false
		default:
			i++
		}
	}
	return nil, nil, false, false
}

// number scans a JSON number at l.i (after whitespace) and returns its literal.
func (l *lexer) number() ([]byte, bool) {
	l.skipWS()
	b, i := l.b, l.i
	start := i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return nil, false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	l.i = i
	return b[start:i], true
}

func (l *lexer) literal(word string) bool {
	if len(l.b)-l.i >= len(word) && string(l.b[l.i:l.i+len(word)]) == word {
		l.i += len(word)
		return true
	}
	return false
}

// skip validates and steps over one value.
func (l *lexer) skip(depth int) bool {
	if depth > maxFastDepth {
		return false
	}
	switch l.next() {
	case '"':
		_, _, _, ok := l.str()
		return ok
	case '{':
		return l.object(func([]byte) bool { return l.skip(depth + 1) })
	case '[':
		return l.array(func() bool { return l.skip(depth + 1) })
	case 't':
		return l.literal("true")
	case 'f':
		return l.literal("false")
	case 'n':
		return l.literal("null")
	default:
		_, ok := l.number()
		return ok
	}
}

// span skips one value and returns its bytes (no surrounding whitespace).
func (l *lexer) span() ([]byte, bool) {
	l.skipWS()
	start := l.i
	if !l.skip(0) {
		return nil, false
	}
	return l.b[start:l.i], true
}

// object walks an object's members; member is called with each key (which must be a
// plain key: no escapes) positioned at the value, and must consume the value.
func (l *lexer) object(member func(key []byte) bool) bool {
	if !l.consume('{') {
		return false
	}
	if l.consume('}') {
		return true
	}
	for {
		key, _, esc, ok := l.str()
		if !ok || esc || !l.consume(':') {
			return false
		}
		l.skipWS()
		if !member(key) {
			return false
		}
		switch l.next() {
		case ',':
			l.i++
		case '}':
			l.i++
			return true
		default:
			return false
		}
	}
}

// array walks an array's elements; elem must consume one value.
func (l *lexer) array(elem func() bool) bool {
	if !l.consume('[') {
		return false
	}
	if l.consume(']') {
		return true
	}
	for {
		l.skipWS()
		if !elem() {
			return false
		}
		switch l.next() {
		case ',':
			l.i++
		case ']':
			l.i++
			return true
		default:
			return false
		}
	}
}

// end reports whether only whitespace is left.
func (l *lexer) end() bool {
	l.skipWS()
	return l.i == len(l.b)
}

// plainKey reports whether an unknown key cannot match any struct field by
// encoding/json's case-insensitive matching: lowercase ASCII only. Keys that could are
// left to encoding/json.
func plainKey(k []byte) bool {
	for _, c := range k {
		if (c >= 'A' && c <= 'Z') || c >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// stringValue decodes a string into a Go string as encoding/json would for a string
// field (escapes decoded, invalid UTF-8 replaced).
func (l *lexer) stringValue() (string, bool) {
	content, tok, esc, ok := l.str()
	if !ok {
		return "", false
	}
	if !esc && utf8.Valid(content) {
		return string(content), true
	}
	var s string
	if err := json.Unmarshal(tok, &s); err != nil {
		return "", false
	}
	return s, true
}

// flexValue decodes a string or number as flexString does.
func (l *lexer) flexValue() (string, bool) {
	switch c := l.next(); {
	case c == '"':
		content, tok, esc, ok := l.str()
		if !ok {
			return "", false
		}
		if !esc {
			return string(content), true // flexString keeps plain strings verbatim
		}
		var s string
		if err := json.Unmarshal(tok, &s); err != nil {
			return "", false
		}
		return s, true
	case c == '-' || (c >= '0' && c <= '9'):
		n, ok := l.number()
		return string(n), ok
	}
	return "", false
}

func (l *lexer) boolValue() (bool, bool) {
	switch l.next() {
	case 't':
		return true, l.literal("true")
	case 'f':
		return false, l.literal("false")
	}
	return false, false
}

// IsCompactJSON reports whether b is one valid JSON value without insignificant
// whitespace, i.e. json.Compact would return it unchanged. A false answer only means
// "ask json.Compact" (values nested deeper than the scanner follows are reported false).
func IsCompactJSON(b []byte) bool {
	l := lexer{b: b}
	if len(b) == 0 || !l.skip(0) || l.ws {
		return false
	}
	return l.i == len(b)
}
