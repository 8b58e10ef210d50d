package meta

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// routeVariants are WhatsApp change values where the routing scan must find the phone
// number id as encoding/json does, or hand the body to Split.
var routeVariants = []string{
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":123}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"1\u0032\u0033"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":""}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":null}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":true}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":null}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":"x"}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"metadata":{"phone_number_id":"3"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2","phone_number_id":"3"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"Metadata":{"PHONE_NUMBER_ID":"2"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"Phone_Number_ID":"2"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"messages":"x"}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"statuses":{}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"errors":null,"contacts":[1,"x",null]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"statuses","value":{"metadata":{"phone_number_id":"2"},"statuses":[{"id":"w","status":"read"}]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"account_update","value":{"event":"PARTNER_APP_UNINSTALLED","waba_info":{"waba_id":"3"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"},"messages":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"}} }]},{"id":"4","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"5"}}}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":[]}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages"}]}]}`,
	`{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"metadata":{"phone_number_id":"2"}}}]}]}trailing`,
}

// routeInputs are every delivery in testdata, the fast path's and the scan's variants
// and the benchmark's bodies.
func routeInputs(t testing.TB) [][]byte {
	files, err := filepath.Glob(filepath.Join("testdata", "*", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	var in [][]byte
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, b)
	}
	for _, v := range append(append([]string(nil), fastVariants...), routeVariants...) {
		in = append(in, []byte(v))
	}
	return append(in, benchBody(1), benchBody(10))
}

// checkRoutingMatches fails unless SplitRouting fails when Split does, and otherwise
// yields parts that route and re-wrap exactly as Split's. It reports whether the scan
// itself took the body (rather than handing it to Split).
func checkRoutingMatches(t testing.TB, body []byte) bool {
	t.Helper()
	want, werr := Split(body)
	got, entries, gerr := SplitRouting(body)
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("Split error %v, SplitRouting error %v: %q", werr, gerr, body)
	}
	if len(got) != len(want) {
		t.Fatalf("%d parts, Split has %d: %q", len(got), len(want), body)
	}
	for i := range want {
		g, w := &got[i], &want[i]
		if g.Object != w.Object || g.Platform != w.Platform || g.EntryID != w.EntryID || !g.EntryTime.Equal(w.EntryTime) ||
			g.EntryTime.Location() != w.EntryTime.Location() || g.Field != w.Field || g.AccountID != w.AccountID ||
			!bytes.Equal(g.Raw, w.Raw) || !bytes.Equal(g.entryT, w.entryT) || g.Kind() != w.Kind() {
			t.Fatalf("part %d differs:\nrouting %+v\nsplit   %+v\nbody %q", i, g, w, body)
		}
		gev, gids, gok := AccountRemoval(g)
		wev, wids, wok := AccountRemoval(w)
		if gev != wev || gok != wok || !slices.Equal(gids, wids) {
			t.Fatalf("part %d: account removal %q %q, Split's %q %q", i, gev, gids, wev, wids)
		}
	}
	if len(want) > 0 {
		ge, gerr := Envelope(got)
		we, werr := Envelope(want)
		if (gerr == nil) != (werr == nil) || !bytes.Equal(ge, we) {
			t.Fatalf("envelope differs: %s / %s", ge, we)
		}
	}
	_, _, scanned := fastSplitFor(body, true)
	if entries != nil && !scanned {
		t.Fatalf("entries %q from a body the scan did not take: %q", entries, body)
	}
	if entries != nil && len(want) > 0 {
		// The entries alone, and joined with another delivery's, split into the same
		// parts.
		checkJoined(t, want[0].Object, [][]byte{entries}, want)
		other, oentries, err := SplitRouting(benchBody(2))
		if err != nil || oentries == nil {
			t.Fatalf("bench body: %v", err)
		}
		checkJoined(t, want[0].Object, [][]byte{entries, oentries, entries}, append(append(append([]Part(nil), want...), other...), want...))
	}
	return scanned
}

// checkJoined fails unless JoinEntries(object, entries) splits into parts like want
// (other deliveries' parts of another object come out with this object).
func checkJoined(t testing.TB, object string, entries [][]byte, want []Part) {
	t.Helper()
	joined := JoinEntries(object, entries)
	got, err := Split(joined)
	if err != nil || len(got) != len(want) {
		t.Fatalf("joined delivery: %d parts (%v), want %d: %s", len(got), err, len(want), joined)
	}
	for i := range want {
		g, w := &got[i], &want[i]
		if g.Object != object || g.EntryID != w.EntryID || !g.EntryTime.Equal(w.EntryTime) || g.Field != w.Field ||
			!bytes.Equal(g.Raw, w.Raw) || !bytes.Equal(g.entryT, w.entryT) ||
			(w.Object == object && (g.AccountID != w.AccountID || g.Platform != w.Platform)) {
			t.Fatalf("joined part %d differs:\njoined %+v\nwant   %+v\n%s", i, g, w, joined)
		}
	}
}

func TestSplitRoutingMatchesSplit(t *testing.T) {
	inputs := routeInputs(t)
	scanned := 0
	for _, body := range inputs {
		if checkRoutingMatches(t, body) {
			scanned++
		}
	}
	if scanned < len(inputs)/2 {
		t.Errorf("the scan took only %d of %d inputs", scanned, len(inputs))
	}
	// The bench's and the usual WhatsApp deliveries take the scan, with the number found.
	for _, body := range [][]byte{benchBody(1), benchBody(10), []byte(routeVariants[0]), []byte(routeVariants[1])} {
		parts, _, ok := fastSplitFor(body, true)
		if !ok || len(parts) != 1 || parts[0].AccountID == parts[0].EntryID {
			t.Errorf("scan not taken, or no phone number id, for %.80q", body)
		}
	}
	// Where encoding/json could read the id otherwise (or fail), Split decides.
	for _, v := range routeVariants[3:13] {
		if _, _, ok := fastSplitFor([]byte(v), true); ok {
			t.Errorf("the scan took %q", v)
		}
	}
	// Random mutations of every input: flipped, dropped and doubled bytes, and
	// JSON-significant characters put anywhere.
	rng := rand.New(rand.NewPCG(14, 1))
	const significant = `{}[]:,"\ 0-.eE1nulltruefalse`
	for range 20 {
		for _, body := range inputs {
			m := bytes.Clone(body)
			for range 1 + rng.IntN(3) {
				if len(m) == 0 {
					break
				}
				i := rng.IntN(len(m))
				switch rng.IntN(4) {
				case 0:
					m[i] ^= byte(1 << rng.IntN(8))
				case 1:
					m = append(m[:i], m[i+1:]...)
				case 2:
					m = append(m[:i], append([]byte{m[i]}, m[i:]...)...)
				default:
					m[i] = significant[rng.IntN(len(significant))]
				}
			}
			checkRoutingMatches(t, m)
		}
	}
	// A routing part is not for parsing.
	parts, _, _ := SplitRouting(benchBody(1))
	if _, err := parts[0].Parse(); err == nil {
		t.Error("a SplitRouting part parsed")
	}
}

// FuzzSplitRoutingMatchesSplit: SplitRouting fails exactly when Split does and otherwise
// routes and re-wraps every part as Split's.
func FuzzSplitRoutingMatchesSplit(f *testing.F) {
	for _, b := range routeInputs(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkRoutingMatches(t, body)
	})
}

func BenchmarkSplitRouting(b *testing.B) {
	body := benchBody(1)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := SplitRouting(body); err != nil {
			b.Fatal(err)
		}
	}
}
