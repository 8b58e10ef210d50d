package meta

import "encoding/json"

// WhatsApp account_update events that end a business's use of the app
// (meta-webhooks.md §6.5): it removed the partner app, or deleted its account.
const (
	EventPartnerAppUninstalled = "PARTNER_APP_UNINSTALLED"
	EventAccountDeleted        = "ACCOUNT_DELETED"
)

// AccountRemoval reports whether p is a WhatsApp account_update saying the business
// removed the app or deleted the account, with the event and the business account ids
// it names: entry.id and, when present, waba_info.waba_id (for PARTNER_APP_UNINSTALLED
// entry.id is the business portfolio, and the WABA is only in waba_info).
func AccountRemoval(p *Part) (event string, wabaIDs []string, ok bool) {
	if p.Platform != WhatsApp || p.Field != "account_update" {
		return "", nil, false
	}
	var v struct {
		Event    string `json:"event"`
		WabaInfo *struct {
			WabaID json.RawMessage `json:"waba_id"`
		} `json:"waba_info"`
	}
	if err := json.Unmarshal(p.Raw, &v); err != nil {
		return "", nil, false
	}
	if v.Event != EventPartnerAppUninstalled && v.Event != EventAccountDeleted {
		return "", nil, false
	}
	if p.EntryID != "" {
		wabaIDs = append(wabaIDs, p.EntryID)
	}
	if v.WabaInfo != nil && len(v.WabaInfo.WabaID) > 0 {
		// A string in Meta's examples; an integer is kept digit for digit.
		id := string(v.WabaInfo.WabaID)
		if id[0] == '"' && json.Unmarshal(v.WabaInfo.WabaID, &id) != nil {
			id = ""
		}
		if id != "" && id != "null" {
			wabaIDs = append(wabaIDs, id)
		}
	}
	return v.Event, wabaIDs, true
}
