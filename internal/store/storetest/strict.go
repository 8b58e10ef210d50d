package storetest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

// LineHeader is what every export line starts with (docs/export-format.md).
type LineHeader struct {
	Kind          string `json:"kind"`
	SchemaVersion int    `json:"schemaVersion"`
}

// One type per record kind: the header, then the kind's document fields.
type (
	ContactLine struct {
		LineHeader
		meta.Contact
	}
	MessageLine struct {
		LineHeader
		meta.Message
	}
	StatusLine struct {
		LineHeader
		meta.Status
	}
	ReceiptLine struct {
		LineHeader
		meta.Receipt
	}
	FileLine struct {
		LineHeader
		meta.File
		store.FileState
	}
	IdentityChangeLine struct {
		LineHeader
		meta.IdentityChange
	}
	LeadLine struct {
		LineHeader
		meta.Lead
	}
	ErasureLine struct {
		LineHeader
		store.Erasure
	}
)

// lineTypes maps each record kind of the current schema to its line type.
var lineTypes = map[string]reflect.Type{
	store.KindContact:        reflect.TypeFor[ContactLine](),
	store.KindMessage:        reflect.TypeFor[MessageLine](),
	store.KindStatus:         reflect.TypeFor[StatusLine](),
	store.KindReceipt:        reflect.TypeFor[ReceiptLine](),
	store.KindFile:           reflect.TypeFor[FileLine](),
	store.KindIdentityChange: reflect.TypeFor[IdentityChangeLine](),
	store.KindLead:           reflect.TypeFor[LeadLine](),
	store.KindErasure:        reflect.TypeFor[ErasureLine](),
}

// Kinds lists every record kind an export may contain.
func Kinds() []string {
	var kinds []string
	for _, tb := range store.Tables {
		kinds = append(kinds, tb.Kind)
	}
	return append(kinds, store.KindErasure)
}

// DecodeStrict decodes one export line as a consumer holding only the documented format
// would, and refuses what such a consumer could misread: a key that appears twice in one
// object (decoders keep one of them), a key the format does not define for the record's
// kind or spells in another case (encoding/json would match it anyway), an unknown kind
// or schema version, and anything after the object. It returns a pointer to the kind's
// line type (ContactLine, ...). Message "raw" values are Meta's own JSON and are not
// checked.
func DecodeStrict(line []byte) (any, error) {
	var h LineHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return nil, fmt.Errorf("export line: %w", err)
	}
	typ, ok := lineTypes[h.Kind]
	if !ok {
		return nil, fmt.Errorf("export line: unknown kind %q", h.Kind)
	}
	if h.SchemaVersion != store.ExportSchemaVersion {
		return nil, fmt.Errorf("export line: schemaVersion %d, want %d", h.SchemaVersion, store.ExportSchemaVersion)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	if err := checkValue(dec, typ, "$"); err != nil {
		return nil, fmt.Errorf("export %s line: %w", h.Kind, err)
	}
	if _, err := dec.Token(); err == nil {
		return nil, fmt.Errorf("export %s line: data after the record", h.Kind)
	}
	v := reflect.New(typ)
	dec = json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v.Interface()); err != nil {
		return nil, fmt.Errorf("export %s line: %w", h.Kind, err)
	}
	return v.Interface(), nil
}

var (
	rawType  = reflect.TypeFor[json.RawMessage]()
	timeType = reflect.TypeFor[time.Time]()
)

// checkValue reads one value from dec's token stream, checking every object in it
// against the fields of t: each key at most once and exactly as the format spells it.
func checkValue(dec *json.Decoder, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawType {
		var skip json.RawMessage
		return dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	switch tok {
	case json.Delim('{'):
		if t.Kind() != reflect.Struct || t == timeType {
			return fmt.Errorf("%s: an object where %s belongs", path, t)
		}
		fields := jsonFields(t)
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			k := kt.(string)
			if seen[strings.ToLower(k)] {
				return fmt.Errorf("%s: key %q appears twice", path, k)
			}
			seen[strings.ToLower(k)] = true
			ft, ok := fields[k]
			if !ok {
				return fmt.Errorf("%s: unknown key %q", path, k)
			}
			if err := checkValue(dec, ft, path+"."+k); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	case json.Delim('['):
		if t.Kind() != reflect.Slice {
			return fmt.Errorf("%s: an array where %s belongs", path, t)
		}
		for i := 0; dec.More(); i++ {
			if err := checkValue(dec, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token()
		return err
	}
	return nil // a scalar: its type is the Decode pass's to check
}

// jsonFields returns the JSON names of t's fields (those of embedded structs promoted)
// and their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

// DecodeExportStrict decodes every line of an export with DecodeStrict and returns the
// records by kind.
func DecodeExportStrict(out []byte) (map[string][]any, error) {
	byKind := map[string][]any{}
	for i, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
		if len(line) == 0 {
			if len(out) == 0 {
				break
			}
			return nil, errors.New("export: an empty line")
		}
		v, err := DecodeStrict(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		var h LineHeader
		_ = json.Unmarshal(line, &h) // DecodeStrict read it already
		byKind[h.Kind] = append(byKind[h.Kind], v)
	}
	return byKind, nil
}
