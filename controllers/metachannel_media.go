package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

// Shared files (media) are fetched by the tenant's worker, which has no access to
// MetaChannels' status or to Tenants: it writes what needs a human (a token Meta
// refused) and its counts under the key media of its report ConfigMap, and the
// operator turns them into each channel's MediaFetching condition, a Warning Event
// and a metric, and into the Tenant's status.files.

// EventMediaTokenRefused is the Warning Event of a channel whose access token Meta
// refused: once per refusal (a new refusal time is a new refusal).
const EventMediaTokenRefused = "MediaTokenRefused"

// EventMediaFetchResumed is the Normal Event of a channel whose refused token was
// replaced and used successfully.
const EventMediaFetchResumed = "MediaFetchResumed"

// mediaTokenRefused is 1 while Meta refuses a served channel's access token (as the
// worker last reported), else 0; absent for channels that are not served. Channel
// names are chosen by the platform team, never end-user data.
var mediaTokenRefused = prometheus.NewGaugeVec(prometheus.GaugeOpts{
	Name: "omniflow_metachannel_media_token_refused",
	Help: "1 while Meta refuses a served MetaChannel's access token (its media fetching is paused until the token Secret changes), else 0.",
}, []string{"namespace", "channel"})

// parseMediaReport decodes the report's media key; nil when it is absent or not a
// well-formed report: the worker's word is not trusted to write a status as it likes.
func parseMediaReport(doc string) *workerreport.Media {
	if doc == "" {
		return nil
	}
	var rep workerreport.Media
	dec := json.NewDecoder(bytes.NewReader([]byte(doc)))
	dec.DisallowUnknownFields()
	if dec.Decode(&rep) != nil || rep.ReportedAt.IsZero() ||
		rep.Pending < 0 || rep.Fetched < 0 || rep.Failed < 0 || rep.MetadataOnly < 0 || rep.Blobs < 0 || rep.Bytes < 0 {
		return nil
	}
	return &rep
}

// mediaCondition is a channel's MediaFetching condition from its spec and the
// worker's report (nil: none yet); nil when the channel is not served, where there
// is nothing to fetch for. A refusal counts only for a channel with a token: the
// report may predate a spec that dropped it.
func mediaCondition(ch *platformv1.MetaChannel, served bool, rep *workerreport.Media) *metav1.Condition {
	if !served {
		return nil
	}
	c := &metav1.Condition{Type: platformv1.ConditionMediaFetching, Status: metav1.ConditionTrue, ObservedGeneration: ch.Generation}
	tok := ch.Spec.AccessTokenRef
	var refusedAt *metav1.Time
	if rep != nil && tok != nil {
		refusedAt = rep.Channels[ch.Name].TokenRefusedAt
	}
	switch {
	case refusedAt != nil:
		c.Status, c.Reason = metav1.ConditionFalse, platformv1.ReasonMediaTokenRefused
		c.Message = fmt.Sprintf("Meta refused the access token at %s (HTTP 401/403); fetching is paused and files stay pending: "+
			"put a valid token in key %q of Secret %s (accessTokenRef); the worker uses it within seconds",
			refusedAt.UTC().Format(time.RFC3339), tok.Key, tok.Name)
	case ch.Spec.Platform != platformv1.PlatformWhatsApp:
		c.Reason = platformv1.ReasonMediaFetchedByURL
		c.Message = "attachments are downloaded from the URLs in the deliveries, no access token needed; Instagram story mentions are never fetched"
	case tok == nil:
		c.Status, c.Reason = metav1.ConditionFalse, platformv1.ReasonMediaMetadataOnly
		c.Message = "no accessTokenRef: WhatsApp media is recorded without its bytes (metadata only); set accessTokenRef to fetch new media"
	default:
		c.Reason = platformv1.ReasonMediaFetching
		c.Message = fmt.Sprintf("WhatsApp media is looked up and downloaded with the token in key %q of Secret %s", tok.Key, tok.Name)
	}
	return c
}

// mediaEvent is the Event a change of MediaFetching calls for: a Warning for each new
// refusal (the message carries the refusal time, so a later refusal differs), a
// Normal one when fetching resumes after a refusal; "" for none.
func mediaEvent(prev, cur *metav1.Condition) (eventType, reason string) {
	wasRefused := prev != nil && prev.Reason == platformv1.ReasonMediaTokenRefused
	switch {
	case cur == nil:
		return "", ""
	case cur.Reason == platformv1.ReasonMediaTokenRefused && (!wasRefused || prev.Message != cur.Message):
		return corev1.EventTypeWarning, EventMediaTokenRefused
	case wasRefused && cur.Status == metav1.ConditionTrue:
		return corev1.EventTypeNormal, EventMediaFetchResumed
	}
	return "", ""
}

// observeTokenRefused sets or drops a channel's series of mediaTokenRefused.
func observeTokenRefused(ns, name string, cur *metav1.Condition) {
	if cur == nil {
		mediaTokenRefused.DeleteLabelValues(ns, name)
		return
	}
	v := 0.0
	if cur.Reason == platformv1.ReasonMediaTokenRefused {
		v = 1
	}
	mediaTokenRefused.WithLabelValues(ns, name).Set(v)
}

// filesStatus is status.files from the report's media key. A report that is
// absent or malformed leaves what status showed: the last good report.
func filesStatus(doc string, last *platformv1.FilesStatus) *platformv1.FilesStatus {
	rep := parseMediaReport(doc)
	if rep == nil {
		return last
	}
	at := rep.ReportedAt
	return &platformv1.FilesStatus{
		ReportedAt: &at, Pending: rep.Pending, OldestPendingAt: rep.OldestPendingAt,
		Fetched: rep.Fetched, Failed: rep.Failed, MetadataOnly: rep.MetadataOnly,
		StoredContents: rep.Blobs, StoredBytes: rep.Bytes,
	}
}

// mediaChannelsChanged says whether a report update changes what channels show:
// the per-channel part, not the counts the worker rewrites as files come and go.
func mediaChannelsChanged(oldDoc, newDoc string) bool {
	channels := func(doc string) map[string]workerreport.MediaChannel {
		if rep := parseMediaReport(doc); rep != nil {
			return rep.Channels
		}
		return nil
	}
	o, n := channels(oldDoc), channels(newDoc)
	if len(o) != len(n) {
		return true
	}
	for name, a := range o {
		b, ok := n[name]
		if !ok || !a.TokenRefusedAt.Equal(b.TokenRefusedAt) || a.NoToken != b.NoToken {
			return true
		}
	}
	return false
}
