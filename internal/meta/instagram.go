package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// igComment is the value of an Instagram "comments" or "live_comments" change
// (meta-webhooks.md §3.4): a comment on one of the account's posts, reels or lives.
type igComment struct {
	From *struct {
		ID       flexString `json:"id"`
		Username string     `json:"username"`
	} `json:"from"`
	ID        flexString `json:"id"`
	CommentID flexString `json:"comment_id"`
	Text      string     `json:"text"`
	ParentID  flexString `json:"parent_id"`
	Timestamp flexTime   `json:"timestamp"`
}

// parseIGComment stores a comment as a message of type "comment" from its author (a
// public comment is what a customer said to the business, often the first thing), with
// the commented media and the rest of Meta's value kept in Raw. A comment by the
// account itself (its reply under a post) is the business's, addressed to nobody in
// particular: acknowledged, not stored.
func parseIGComment(account string, raw json.RawMessage, entryTime time.Time, out *Parsed) error {
	var c igComment
	if err := json.Unmarshal(raw, &c); err != nil {
		return fmt.Errorf("instagram comment: %w", err)
	}
	id := string(c.ID)
	if id == "" {
		id = string(c.CommentID)
	}
	if id == "" || c.From == nil || c.From.ID == "" {
		return errors.New("instagram comment without id or author")
	}
	if string(c.From.ID) == account {
		out.Ignored = append(out.Ignored, "instagram.own_comment")
		return nil
	}
	b := &out.Batch
	b.Contacts = append(b.Contacts, Contact{Platform: Instagram, Subject: string(c.From.ID), Username: c.From.Username})
	b.Messages = append(b.Messages, Message{
		Platform: Instagram, ID: id, Subject: string(c.From.ID), Direction: Inbound, Type: "comment",
		Text: c.Text, Timestamp: firstTime(c.Timestamp.Time, entryTime), ReplyTo: string(c.ParentID), Raw: compact(raw),
	})
	return nil
}
