package forward

import (
	"bytes"
	"testing"
)

func TestSignVerify(t *testing.T) {
	master := bytes.Repeat([]byte{7}, MinKeyBytes)
	ka, kb := TenantKey(master, "acme"), TenantKey(master, "globex")
	if bytes.Equal(ka, kb) {
		t.Fatal("two tenants share a key")
	}
	body := []byte(`{"object":"page","entry":[]}`)
	sig := Sign(ka, "acme", body)
	if err := Verify(ka, "acme", body, sig); err != nil {
		t.Fatalf("genuine: %v", err)
	}
	for name, tc := range map[string]struct {
		key    []byte
		tenant string
		body   []byte
		header string
	}{
		"other tenant's worker": {kb, "globex", body, sig},
		"tenant name swapped":   {ka, "globex", body, sig},
		"tampered body":         {ka, "acme", []byte(`{"object":"page","entry":[{}]}`), sig},
		"no header":             {ka, "acme", body, ""},
		"truncated":             {ka, "acme", body, sig[:len(sig)-2]},
		"no key":                {nil, "acme", body, Sign(nil, "acme", body)},
		"signed by the master":  {ka, "acme", body, Sign(master, "acme", body)},
	} {
		if err := Verify(tc.key, tc.tenant, tc.body, tc.header); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
