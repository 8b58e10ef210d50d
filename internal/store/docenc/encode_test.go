package docenc

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// docSamples returns the records of every parser fixture plus hand-made edge cases.
func docSamples(t testing.TB) (msgs []meta.Message, files []meta.File, contacts []meta.Contact) {
	for _, dir := range []string{"fixtures", "extra"} {
		paths, _ := filepath.Glob(filepath.Join("..", "..", "meta", "testdata", dir, "*.json"))
		for _, p := range paths {
			body, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := meta.ParseDelivery(body)
			if err != nil {
				continue
			}
			parsed.Batch.SetChannel("acme-" + filepath.Base(p))
			msgs = append(msgs, parsed.Batch.Messages...)
			files = append(files, parsed.Batch.Files...)
			contacts = append(contacts, parsed.Batch.Contacts...)
		}
	}
	if len(msgs) < 10 || len(files) < 3 || len(contacts) < 5 {
		t.Fatalf("fixtures gave %d messages, %d files, %d contacts", len(msgs), len(files), len(contacts))
	}
	odd := "caf\u00e9 <&> \"q\" \\ \n\r\t\b\f\x01\x7f \u2028\u2029 \xff\xfe \U0001F600"
	ts := time.Date(2026, 6, 10, 14, 0, 0, 123456789, time.UTC)
	msgs = append(msgs,
		meta.Message{Platform: meta.WhatsApp, Channel: odd, ID: odd, Subject: odd, SubjectAlt: odd, Direction: meta.Inbound, Type: odd, Text: odd, Timestamp: ts, ReplyTo: odd, Forwarded: true, GroupID: odd, Raw: []byte(`{"a" : [1, 2,
 "x y"] }`)},
		meta.Message{Platform: meta.Messenger, ID: "m", Subject: "s", Timestamp: ts.In(time.FixedZone("X", 3600))},
		meta.Message{Platform: meta.Messenger, ID: "m", Subject: "s", Timestamp: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)},
		meta.Message{Platform: meta.Messenger, ID: "m", Subject: "s", Raw: []byte(`{"bad"`)},
		meta.Message{},
	)
	files = append(files, meta.File{Platform: meta.Instagram, MessageID: odd, Index: -3, Subject: odd, SubjectAlt: odd, Kind: odd,
		MediaID: odd, URL: "https://x/y?a=1&b=<2>", MIMEType: odd, SHA256: odd, Caption: odd, Filename: odd, Voice: true, Animated: true, NoFetch: true, StickerID: odd}, meta.File{})
	contacts = append(contacts, meta.Contact{Platform: meta.WhatsApp, Channel: odd, Subject: odd, WaID: odd, UserID: odd, ParentUserID: odd, Username: odd, Name: odd}, meta.Contact{})
	return msgs, files, contacts
}

func checkDoc(t testing.TB, v any) {
	t.Helper()
	want, werr := Marshal(v)
	got, gerr := Encode(v)
	if (werr == nil) != (gerr == nil) || !bytes.Equal(got, want) {
		t.Fatalf("Encode(%+v)\n got %s (%v)\nwant %s (%v)", v, got, gerr, want, werr)
	}
}

// The hand-written encoders write exactly what encoding/json writes.
func TestDocEncodersMatch(t *testing.T) {
	msgs, files, contacts := docSamples(t)
	handled := 0
	for i := range msgs {
		checkDoc(t, &msgs[i])
		if _, ok := encodeMessage(&msgs[i]); ok {
			handled++
		}
	}
	for i := range files {
		checkDoc(t, &files[i])
	}
	for i := range contacts {
		checkDoc(t, &contacts[i])
	}
	if handled < 8 {
		t.Errorf("only %d messages took the hand-written encoder", handled)
	}
}

func FuzzDocEncodersMatch(f *testing.F) {
	f.Add("Ana Souza", "Hi! Is my order #4471 shipped yet?", []byte(`{"id":"x"}`), int64(1781100000), true)
	f.Add("caf\u00e9 \xff", "\u2028<&>\x00", []byte(" [1, {\"a\" : null}] "), int64(-5), false)
	f.Fuzz(func(t *testing.T, s, text string, raw []byte, ts int64, b bool) {
		var tm time.Time
		if ts != 0 {
			tm = time.Unix(ts, ts%1000*1e6).UTC()
		}
		checkDoc(t, &meta.Message{Platform: meta.WhatsApp, Channel: s, ID: s, Subject: s, SubjectAlt: text, Direction: meta.Inbound,
			Type: s, Text: text, Timestamp: tm, ReplyTo: text, Forwarded: b, GroupID: s, Raw: raw})
		checkDoc(t, &meta.File{Platform: meta.WhatsApp, MessageID: s, Index: int(ts), Subject: text, Kind: s, Caption: text, Voice: b, StickerID: s})
		checkDoc(t, &meta.Contact{Platform: meta.WhatsApp, Channel: s, Subject: text, Name: text, Username: s})
	})
}
