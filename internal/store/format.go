package store

import (
	"bytes"
	"encoding/json"
)

// ExportSchemaVersion is the version of the export's JSON Lines format that every record
// carries as "schemaVersion" (docs/export-format.md). Version 1 had no version field and
// named a file's media kind "kind", the key that names the record kind: a decoder kept
// one of the two. Version 2 calls it "mediaKind". Version 3 adds the "lead" kind and
// new optional keys (message groupID and order, reaction name, file stickerID). Version 4
// adds what the store did with a file: state, failReason, storedSHA256, size (FileState).
const ExportSchemaVersion = 4

// upgraded returns the record's document in the current schema. File documents stored
// before version 2 carry the media kind under "kind"; it is renamed to "mediaKind" here
// rather than by rewriting every stored row, so that no migration has to touch them.
func (r Record) upgraded() []byte {
	if r.Kind != KindFile || !bytes.Contains(r.Doc, []byte(`"kind"`)) {
		return r.Doc
	}
	end, ok := topLevelKeyEnd(r.Doc, "kind")
	if !ok {
		return r.Doc
	}
	const old, renamed = `"kind"`, `"mediaKind"`
	if end < len(old) || string(r.Doc[end-len(old):end]) != old {
		return r.Doc // an escaped spelling of the key: not one our encoders write
	}
	out := make([]byte, 0, len(r.Doc)+len(renamed)-len(old))
	out = append(out, r.Doc[:end-len(old)]...)
	out = append(out, renamed...)
	return append(out, r.Doc[end:]...)
}

// topLevelKeyEnd returns the offset just past key where it is a key of doc's top-level
// object (not of a nested one, not inside a string value).
func topLevelKeyEnd(doc []byte, key string) (int, bool) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return 0, false
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return 0, false
		}
		if k, _ := t.(string); k == key {
			return int(dec.InputOffset()), true
		}
		var skip json.RawMessage // the value, whatever its nesting
		if err := dec.Decode(&skip); err != nil {
			return 0, false
		}
	}
	return 0, false
}
