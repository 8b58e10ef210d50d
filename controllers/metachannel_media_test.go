package controllers

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

func mediaDoc(t *testing.T, rep workerreport.Media) string {
	t.Helper()
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestMediaConditionTable(t *testing.T) {
	t.Parallel()
	at := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	tok := &platformv1.SecretKeyRef{Name: "meta-app", Key: "accessToken"}
	wa := func(token *platformv1.SecretKeyRef) *platformv1.MetaChannel {
		ch := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "wa", Generation: 3}}
		ch.Spec.Platform, ch.Spec.AccessTokenRef = platformv1.PlatformWhatsApp, token
		return ch
	}
	ig := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "wa"}}
	ig.Spec.Platform = platformv1.PlatformInstagram
	refused := &workerreport.Media{ReportedAt: at, Channels: map[string]workerreport.MediaChannel{"wa": {TokenRefusedAt: &at}}}
	otherRefused := &workerreport.Media{ReportedAt: at, Channels: map[string]workerreport.MediaChannel{"wa-2": {TokenRefusedAt: &at}}}
	tests := []struct {
		name   string
		ch     *platformv1.MetaChannel
		served bool
		rep    *workerreport.Media
		want   string // reason; "" for no condition
		status metav1.ConditionStatus
	}{
		{"not served: nothing to say", wa(tok), false, refused, "", ""},
		{"WhatsApp with a token, no report yet", wa(tok), true, nil, platformv1.ReasonMediaFetching, metav1.ConditionTrue},
		{"WhatsApp with a token refused", wa(tok), true, refused, platformv1.ReasonMediaTokenRefused, metav1.ConditionFalse},
		{"another channel's refusal is not this one's", wa(tok), true, otherRefused, platformv1.ReasonMediaFetching, metav1.ConditionTrue},
		{"WhatsApp without a token", wa(nil), true, nil, platformv1.ReasonMediaMetadataOnly, metav1.ConditionFalse},
		{"a refusal reported before the token was removed", wa(nil), true, refused, platformv1.ReasonMediaMetadataOnly, metav1.ConditionFalse},
		{"Instagram needs no token", ig, true, nil, platformv1.ReasonMediaFetchedByURL, metav1.ConditionTrue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := mediaCondition(tc.ch, tc.served, tc.rep)
			if tc.want == "" {
				if c != nil {
					t.Fatalf("condition %+v, want none", c)
				}
				return
			}
			if c == nil || c.Reason != tc.want || c.Status != tc.status || c.Type != platformv1.ConditionMediaFetching || c.ObservedGeneration != tc.ch.Generation {
				t.Fatalf("condition %+v, want %s %s", c, tc.status, tc.want)
			}
			if tc.want == platformv1.ReasonMediaTokenRefused &&
				(!strings.Contains(c.Message, `key "accessToken" of Secret meta-app`) || !strings.Contains(c.Message, "2026-06-01T08:00:00Z")) {
				t.Fatalf("message %q names neither the Secret key to fix nor the refusal time", c.Message)
			}
		})
	}
}

func TestMediaEventOncePerRefusal(t *testing.T) {
	t.Parallel()
	cond := func(reason, msg string) *metav1.Condition {
		st := metav1.ConditionTrue
		if reason == platformv1.ReasonMediaTokenRefused || reason == platformv1.ReasonMediaMetadataOnly {
			st = metav1.ConditionFalse
		}
		return &metav1.Condition{Type: platformv1.ConditionMediaFetching, Status: st, Reason: reason, Message: msg}
	}
	refusedA, refusedB := cond(platformv1.ReasonMediaTokenRefused, "at A"), cond(platformv1.ReasonMediaTokenRefused, "at B")
	fetching := cond(platformv1.ReasonMediaFetching, "")
	tests := []struct {
		name      string
		prev, cur *metav1.Condition
		want      string
	}{
		{"first refusal", fetching, refusedA, EventMediaTokenRefused},
		{"refused on the first look", nil, refusedA, EventMediaTokenRefused},
		{"the same refusal seen again", refusedA, refusedA, ""},
		{"a new refusal after a new token", refusedA, refusedB, EventMediaTokenRefused},
		{"fetching again", refusedA, fetching, EventMediaFetchResumed},
		{"token removed after a refusal", refusedA, cond(platformv1.ReasonMediaMetadataOnly, ""), ""},
		{"no longer served", refusedA, nil, ""},
		{"steady", fetching, fetching, ""},
	}
	for _, tc := range tests {
		if _, got := mediaEvent(tc.prev, tc.cur); got != tc.want {
			t.Errorf("%s: event %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestFilesStatusKeepsTheLastGoodReport(t *testing.T) {
	t.Parallel()
	at := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	good := mediaDoc(t, workerreport.Media{ReportedAt: at, Pending: 2, OldestPendingAt: &at, Fetched: 7, Failed: 1, MetadataOnly: 4, Blobs: 6, Bytes: 4096})
	st := filesStatus(good, nil)
	want := platformv1.FilesStatus{ReportedAt: &at, Pending: 2, OldestPendingAt: &at, Fetched: 7, Failed: 1, MetadataOnly: 4, StoredContents: 6, StoredBytes: 4096}
	if st == nil || !st.ReportedAt.Equal(want.ReportedAt) || !st.OldestPendingAt.Equal(want.OldestPendingAt) ||
		st.Pending != 2 || st.Fetched != 7 || st.Failed != 1 || st.MetadataOnly != 4 || st.StoredContents != 6 || st.StoredBytes != 4096 {
		t.Fatalf("filesStatus = %+v, want %+v", st, want)
	}
	for _, bad := range []string{
		"", "{", `{"reportedAt":"2026-06-01T08:00:00Z","pending":-1}`, `{"pending":3}`,
		`{"reportedAt":"2026-06-01T08:00:00Z","phoneNumber":"15550100123"}`,
	} {
		if got := filesStatus(bad, st); got != st {
			t.Errorf("report %q replaced the last good status with %+v", bad, got)
		}
	}
}

func TestMediaChannelsChangedIgnoresCounts(t *testing.T) {
	t.Parallel()
	at := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	later := metav1.NewTime(at.Add(time.Minute))
	base := workerreport.Media{ReportedAt: at, Channels: map[string]workerreport.MediaChannel{"wa": {TokenRefusedAt: &at}}}
	counts := base
	counts.Pending, counts.ReportedAt = 40, later
	again := base
	again.Channels = map[string]workerreport.MediaChannel{"wa": {TokenRefusedAt: &later}}
	cleared := base
	cleared.Channels = nil
	b := mediaDoc(t, base)
	for _, tc := range []struct {
		name string
		doc  string
		want bool
	}{
		{"counts only", mediaDoc(t, counts), false},
		{"a new refusal", mediaDoc(t, again), true},
		{"refusal cleared", mediaDoc(t, cleared), true},
		{"report gone", "", true},
	} {
		if got := mediaChannelsChanged(b, tc.doc); got != tc.want {
			t.Errorf("%s: changed = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestErasedFilesAreRecordedOnTheStorageStepOnly(t *testing.T) {
	t.Parallel()
	at := metav1.NewTime(time.Date(2026, 6, 1, 8, 0, 0, 0, time.UTC))
	tn := &platformv1.Tenant{}
	tn.Status.Files = &platformv1.FilesStatus{Fetched: 12, StoredContents: 10, StoredBytes: 1 << 20}
	recordStep(tn, stepStopIngest, at.Time, "stopped")
	recordStep(tn, stepDeleteStorage, at.Time, "gone")
	recordErasedFiles(tn)
	if tn.Status.Files != nil {
		t.Fatalf("status.files = %+v after the store was erased, want none", tn.Status.Files)
	}
	recordErasedFiles(tn) // a second pass keeps the record
	for _, rec := range tn.Status.Erasure {
		switch rec.Name {
		case string(stepDeleteStorage):
			if rec.Files == nil || *rec.Files != 12 || rec.FileBytes == nil || *rec.FileBytes != 1<<20 {
				t.Fatalf("DeleteStorage record %+v, want 12 files and 1 MiB", rec)
			}
		default:
			if rec.Files != nil || rec.FileBytes != nil {
				t.Fatalf("%s record %+v counts files it did not erase", rec.Name, rec)
			}
		}
	}
}
