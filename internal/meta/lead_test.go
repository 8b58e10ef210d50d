package meta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A notification token never shows in any printer, logger or encoder a record may be
// handed to; only an explicit string conversion gives its value.
func TestSecretNeverPrints(t *testing.T) {
	t.Parallel()
	const tok = "NMT-SECRET-unit"
	l := Lead{Platform: Messenger, ID: "optin:1", Subject: "psid", Event: LeadOptin, Token: tok, HasToken: true}
	js, err := json.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	tokJSON, _ := json.Marshal(l.Token)
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("x", "lead", l, "token", l.Token)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("x", "lead", l, "token", l.Token)
	for _, s := range []string{
		fmt.Sprint(l), fmt.Sprintf("%v %+v %#v %s %q %x", l, l, l, l.Token, l.Token, l.Token), fmt.Sprintf("%#v", l.Token),
		string(js), string(tokJSON), logs.String(),
	} {
		if strings.Contains(s, tok) {
			t.Errorf("the token shows in %s", s)
		}
	}
	if !bytes.Contains(js, []byte(`"hasToken":true`)) {
		t.Errorf("the document does not say a token exists: %s", js)
	}
	if string(l.Token) != tok {
		t.Error("the value is lost")
	}
}

// Generated ids differ when any field of the item does and not when only its
// whitespace does (a redelivery is the same item).
func TestGeneratedIDCoversEveryField(t *testing.T) {
	t.Parallel()
	a := GeneratedID("postback", Messenger, []byte(`{"sender":{"id":"1"},"timestamp":5,"postback":{"title":"A","payload":"P"}}`))
	same := GeneratedID("postback", Messenger, []byte(`{ "sender": {"id":"1"}, "timestamp":5, "postback": {"title":"A","payload":"P"} }`))
	for _, other := range []string{
		GeneratedID("postback", Messenger, []byte(`{"sender":{"id":"1"},"timestamp":5,"postback":{"title":"B","payload":"P"}}`)),
		GeneratedID("postback", Messenger, []byte(`{"sender":{"id":"1"},"timestamp":5,"postback":{"title":"A","payload":"P","referral":{"ref":"x"}}}`)),
		GeneratedID("postback", Instagram, []byte(`{"sender":{"id":"1"},"timestamp":5,"postback":{"title":"A","payload":"P"}}`)),
	} {
		if other == a {
			t.Errorf("two different events share id %s", a)
		}
	}
	if same != a {
		t.Errorf("a redelivery with other whitespace got another id: %s vs %s", same, a)
	}
}
