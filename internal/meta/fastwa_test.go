package meta

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// fastVariants are shapes the fast path must get exactly right (or hand over).
var fastVariants = []string{
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"value":{"metadata":{"phone_number_id":"123"},"contacts":[{"profile":{"name":"Jos\u00e9 \ud83d\ude00"},"wa_id":"447700001234"}],"messages":[{"from":"447700001234","id":"wamid.A","timestamp":"1781100000","type":"text","text":{"body":"caf\u00e9 & <b> \"q\" \\ \n"}}]},"field":"messages"}]}]}`,
	"{ \"object\" : \"whatsapp_business_account\" ,\n \"entry\" : [ { \"id\" : 109 , \"time\" : 1781100000123 , \"changes\" : [ { \"field\" : \"messages\" , \"value\" : { \"metadata\" : { \"phone_number_id\" : 123 } , \"messages\" : [ { \"from\" : 4477 , \"id\" : \"wamid.B\" , \"type\" : \"text\" , \"text\" : { \"body\" : \"a  b\" } } ] } } ] } ] }\n",
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123"},"contacts":[{"profile":{"name":"N","username":"u"},"user_id":"US.1","wa_id":"44"}],"messages":[{"from":"44","from_user_id":"US.1","id":"wamid.C","timestamp":"1781100000","type":"image","context":{"id":"wamid.prev","forwarded":true},"image":{"id":123,"mime_type":"image/jpeg","sha256":"abc","caption":"cap","url":"https://x/y?a=1&b=2"}},{"from":"44","id":"wamid.D","timestamp":"1781100001","type":"audio","audio":{"id":"9","voice":true,"mime_type":"audio/ogg"}},{"from":"44","id":"wamid.E","timestamp":"1781100002","type":"document","document":{"id":"8","filename":"f.pdf"},"text":{"body":"ignored"}},{"from":"44","id":"wamid.F","timestamp":"1781100003","type":"sticker","sticker":{"id":"7","animated":false}},{"from":"44","id":"wamid.G","type":"video","video":{"id":"6"},"context":{"frequently_forwarded":true}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.H","timestamp":"1781100000","type":"text","text":{"body":"\xff\xfe invalid utf8"}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123"},"messages":[{"from":"44","id":"wamid.I","timestamp":"1781100000","type":"text","text":{"body":"x"},"Text":{"body":"y"}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.J","timestamp":"1781100000","type":"text","text":{"body":"x"},"text":{"body":"y"}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.K","timestamp":"1781100000","type":"text"}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.L","timestamp":"bad","type":"text","text":{"body":"x"}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"","id":"wamid.M","type":"text","text":{"body":"x"}}]}}]},{"id":"2","changes":[{"field":"account_update","value":{"event":"X"}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.N","timestamp":1781100000123,"type":"text","text":{"body":"x","extra":[1,2.5e3,-0,{"a":null},true,false]}}],"unknown":{"deep":[[[]]]}}}]}],"extra":null}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.O","type":"text","text":{"body":"x"}}]}}]}]} x`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.P","type":"text","text":{"body":"x"}}]}}]}]`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messages":[{"from":"44","id":"wamid.Q","type":"text","text":{"body":"x\u2028y\u0001"}}],"contacts":[{"wa_id":"44","profile":{"name":"a\u0000b"}}]}}]}]}`,
	`{"entry":[],"object":"page"}`,
	`{"object":"page","entry":[{"id":"1","time":1781100000123,"messaging":[{"sender":{"id":"2"},"message":{"mid":"m","text":"hi"}}],"standby":[{"sender":{"id":"3"}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"statuses":[{"id":"wamid.S","status":"read","timestamp":"1781100000","recipient_id":"44"}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"123"},"contacts":[{"wa_id":"44"}],"messages":[{"from":"44","id":"wamid.R1","timestamp":"soon","type":"text","text":{"body":"x"}},{"from":"44","id":"wamid.R2","timestamp":"1781100000","type":"text","text":{"body":"y"}}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"contacts":[{"profile":{"name":"N"}},{"wa_id":"44"}],"messages":[{"from":"44","id":"wamid.R3","type":"text","text":{"body":"x"}},{"from":"44","type":"text","text":{"body":"y"}}]}}]}]}`,
	`[]`, `null`, `{}`, `{"object":""}`, `{"object":5}`, `{"object":"x","entry":{}}`,
}

func fastInputs(t testing.TB) [][]byte {
	var in [][]byte
	for _, c := range fixtureCases() {
		in = append(in, readFixture(t, c.file))
	}
	for _, v := range fastVariants {
		in = append(in, []byte(v))
	}
	return append(in, benchBody(1), benchBody(10))
}

// checkFastMatches fails if the fast path accepts body and disagrees with encoding/json.
func checkFastMatches(t testing.TB, body []byte) bool {
	fast, ok := fastSplit(body)
	if !ok {
		return false
	}
	slow, err := slowSplit(body)
	if err != nil {
		t.Fatalf("fast path accepted a body encoding/json refuses (%v): %q", err, body)
	}
	if len(fast) != len(slow) {
		t.Fatalf("%d parts, want %d: %q", len(fast), len(slow), body)
	}
	for i := range slow {
		f, s := fast[i], slow[i]
		if f.Object != s.Object || f.Platform != s.Platform || f.EntryID != s.EntryID || !f.EntryTime.Equal(s.EntryTime) ||
			f.EntryTime.Location() != s.EntryTime.Location() || f.Field != s.Field || f.AccountID != s.AccountID ||
			!bytes.Equal(f.Raw, s.Raw) || !bytes.Equal(f.entryT, s.entryT) {
			t.Fatalf("part %d differs:\nfast %+v\nslow %+v\nbody %q", i, f, s, body)
		}
		fp, ferr := f.Parse()
		sp, serr := s.Parse()
		if (ferr == nil) != (serr == nil) || !reflect.DeepEqual(fp, sp) {
			t.Fatalf("part %d parses differently:\nfast %+v %v\nslow %+v %v\nbody %q", i, fp, ferr, sp, serr, body)
		}
		fe, ferr := f.Envelope()
		se, serr := s.Envelope()
		if (ferr == nil) != (serr == nil) || !bytes.Equal(fe, se) {
			t.Fatalf("part %d envelope differs: %s / %s", i, fe, se)
		}
	}
	return true
}

func TestFastPathMatches(t *testing.T) {
	fastFixtures := 0
	for _, body := range fastInputs(t) {
		if checkFastMatches(t, body) {
			fastFixtures++
		}
	}
	// The common shapes must actually take the fast path, or the benchmark measures nothing.
	for _, body := range [][]byte{benchBody(1), benchBody(10), []byte(fastVariants[0]), []byte(fastVariants[1]), []byte(fastVariants[2])} {
		parts, ok := fastSplit(body)
		if !ok || len(parts) != 1 || parts[0].fast == nil {
			t.Errorf("fast path not taken for %.80q", body)
		}
	}
	if fastFixtures < 10 {
		t.Errorf("only %d inputs took the fast path", fastFixtures)
	}
	// A change with an invalid item is the slow path's to report: the fast path must
	// neither drop the item silently nor fail the change.
	for _, v := range fastVariants {
		if !strings.Contains(v, "wamid.R") {
			continue
		}
		parts, ok := fastSplit([]byte(v))
		if ok && parts[0].fast != nil {
			t.Errorf("fast path took a change with an invalid item: %q", v)
		}
		got, err := ParseDelivery([]byte(v))
		if err != nil || len(got.Batch.Messages) != 1 || len(got.Invalid) == 0 {
			t.Errorf("change with invalid items: %d messages, %d invalid, %v", len(got.Batch.Messages), len(got.Invalid), err)
		}
	}
	// Duplicate, case-folded and null keys leave the body to encoding/json.
	for _, v := range []string{fastVariants[4], fastVariants[5]} {
		if parts, ok := fastSplit([]byte(v)); ok && parts[0].fast != nil {
			t.Errorf("fast path took %q", v)
		}
	}
}

// FuzzFastPathMatches: whenever the fast path accepts a body, it yields exactly the parts
// and records encoding/json does.
func FuzzFastPathMatches(f *testing.F) {
	addFixtureSeeds(f)
	for _, v := range fastVariants {
		f.Add([]byte(v))
	}
	f.Add(benchBody(3))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkFastMatches(t, body)
	})
}

func TestIsCompactJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{`{"a":[1,2.5e-3,true,false,null,"x y\u00e9"]}`, true},
		{`"s"`, true}, {`0`, true}, {`-0.5E+7`, true},
		{``, false}, {` {}`, false}, {`{} `, false}, {`{"a": 1}`, false}, {`[1,
2]`, false},
		{`{"a":1}{}`, false}, {`{"a"}`, false}, {`01`, false}, {`"\x"`, false}, {"\"a\x01\"", false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), false},
	} {
		if got := IsCompactJSON([]byte(c.in)); got != c.want {
			t.Errorf("IsCompactJSON(%q) = %v, want %v", c.in, got, c.want)
		}
		if c.want {
			var buf bytes.Buffer
			if err := json.Compact(&buf, []byte(c.in)); err != nil || buf.String() != c.in {
				t.Errorf("json.Compact(%q) = %q, %v", c.in, buf.String(), err)
			}
		}
	}
}

// FuzzIsCompactJSON: a true answer always means json.Compact leaves the bytes unchanged.
func FuzzIsCompactJSON(f *testing.F) {
	f.Add([]byte(`{"a":[1,"x"]}`))
	f.Add([]byte(`{"a" : 1}`))
	f.Add([]byte("\"\xff\""))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !IsCompactJSON(b) {
			return
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, b); err != nil || !bytes.Equal(buf.Bytes(), b) {
			t.Fatalf("IsCompactJSON(%q) but json.Compact gives %q, %v", b, buf.Bytes(), err)
		}
	})
}
