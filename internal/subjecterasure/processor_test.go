package subjecterasure_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/store"
	"github.com/omniflowcrm/omniflow-operator/internal/store/sqlite"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

var (
	scheme  = testenv.Scheme()
	admin   client.Client
	restCfg *rest.Config
	ctx     = context.Background()
)

func TestMain(m *testing.M) {
	env, err := testenv.Start(scheme)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	restCfg, admin = env.Config, env.Client
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// Two end-users wrote to the business; the store holds both.
const (
	alice = "15550100001" // the one who asks to be forgotten
	bob   = "15550100002"
)

func seed(t *testing.T, st store.Store) {
	t.Helper()
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var b meta.Batch
	for i, who := range []string{alice, bob} {
		b.Contacts = append(b.Contacts, meta.Contact{Platform: meta.WhatsApp, Channel: "wa", Subject: who, WaID: who, Name: "Person " + who})
		for j := range 3 {
			id := fmt.Sprintf("wamid.%d.%d", i, j)
			b.Messages = append(b.Messages, meta.Message{
				Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: who, Direction: meta.Inbound,
				Type: "text", Text: "hello from " + who, Timestamp: at.Add(time.Duration(j) * time.Minute),
				Raw: []byte(`{"id":"` + id + `"}`),
			})
		}
	}
	if _, err := st.Commit(ctx, &b); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func exported(t *testing.T, st store.Store, who string) []store.Record {
	t.Helper()
	var out []store.Record
	err := st.Export(ctx, store.Filter{Subject: &store.Subject{Platform: meta.WhatsApp, ID: who}}, func(r store.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	return out
}

// workerClient acts as the tenant's worker ServiceAccount, with the Role the
// operator grants it.
func workerClient(t *testing.T, ns string, requests []platformv1.DeletionRequest) client.Client {
	t.Helper()
	c, err := client.New(workerConfig(t, ns, requests), client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// workerConfig applies the Role the operator grants the worker for requests and
// returns a config that acts as the worker's ServiceAccount.
func workerConfig(t *testing.T, ns string, requests []platformv1.DeletionRequest) *rest.Config {
	t.Helper()
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: strings.TrimPrefix(ns, "tenant-"), UID: "u1"}}
	role := controllers.DesiredWorkerRole(tn, controllers.WorkerSecretNames(nil, requests))
	if err := admin.Apply(ctx, role, client.FieldOwner("test"), client.ForceOwnership); err != nil {
		t.Fatalf("apply role: %v", err)
	}
	if err := admin.Apply(ctx, controllers.DesiredWorkerRoleBinding(tn), client.FieldOwner("test"), client.ForceOwnership); err != nil {
		t.Fatalf("apply role binding: %v", err)
	}
	cfg := rest.CopyConfig(restCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + controllers.WorkerName}
	return cfg
}

func setup(t *testing.T, ns string) {
	t.Helper()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: platformv1.SubjectKeySecretName, Namespace: ns},
			Data:       map[string][]byte{platformv1.SubjectKeySecretKey: []byte("0123456789abcdef0123456789abcdef")},
		},
	} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
}

// file creates a request as a user would and accepts it as the operator
// would (phase Pending, receivedAt).
func file(t *testing.T, ns, name, subject string, scope ...platformv1.DeletionScope) *platformv1.DeletionRequest {
	t.Helper()
	return fileOn(t, ns, name, subject, "", scope...)
}

// fileOn is file for a request limited to one channel.
func fileOn(t *testing.T, ns, name, subject, channel string, scope ...platformv1.DeletionScope) *platformv1.DeletionRequest {
	t.Helper()
	if err := admin.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-subject", Namespace: ns},
		Type:       platformv1.SubjectSecretType,
		StringData: map[string]string{"id": subject},
	}); err != nil {
		t.Fatal(err)
	}
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform: platformv1.PlatformWhatsApp, Scope: scope, Channel: channel,
			SubjectSecretRef: platformv1.SecretKeyRef{Name: name + "-subject", Key: "id"},
		},
	}
	if err := admin.Create(ctx, dr); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(dr.DeepCopy())
	received := metav1.NewTime(time.Date(2026, 5, 2, 9, 0, 0, 0, time.UTC))
	dr.Status.Phase, dr.Status.ReceivedAt = platformv1.DeletionPending, &received
	if err := admin.Status().Patch(ctx, dr, patch); err != nil {
		t.Fatal(err)
	}
	return dr
}

func get(t *testing.T, dr *platformv1.DeletionRequest) *platformv1.DeletionRequest {
	t.Helper()
	var got platformv1.DeletionRequest
	if err := admin.Get(ctx, client.ObjectKeyFromObject(dr), &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func TestOneSubjectIsErasedAndTheOtherKept(t *testing.T) {
	ns := "tenant-erase-one"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	aliceBefore, bobBefore := exported(t, st, alice), exported(t, st, bob)
	if len(aliceBefore) != 4 || len(bobBefore) != 4 {
		t.Fatalf("seeded %d and %d records, want 4 each", len(aliceBefore), len(bobBefore))
	}
	// Typed the way a support agent would.
	dr := file(t, ns, "ticket-9", "+1 555-010-0001")
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*dr}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC)),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatalf("process: %v", err)
	}
	got := get(t, dr)
	if got.Status.Phase != platformv1.DeletionCompleted {
		t.Fatalf("phase %q, want Completed (%v)", got.Status.Phase, got.Status.Conditions)
	}
	if e := got.Status.Erased; e == nil || e.Messages != 3 || e.Contacts != 1 {
		t.Fatalf("erased counts %+v, want 3 messages and 1 contact", e)
	}
	if got.Status.CompletedAt == nil || !got.Status.CompletedAt.Time.Equal(time.Date(2026, 5, 3, 12, 0, 0, 0, time.UTC)) {
		t.Fatalf("completedAt %v, want the clock's time", got.Status.CompletedAt)
	}
	if !strings.HasPrefix(got.Status.SubjectRef, "hmac-sha256:") || len(got.Status.ConfirmationCode) < 16 {
		t.Fatalf("subjectRef %q / confirmation code %q", got.Status.SubjectRef, got.Status.ConfirmationCode)
	}
	if !apimeta.IsStatusConditionTrue(got.Status.Conditions, platformv1.ConditionSubjectErased) {
		t.Fatalf("Ready not True: %v", got.Status.Conditions)
	}
	// Nothing personal in the status.
	raw := fmt.Sprintf("%+v", got.Status)
	for _, leak := range []string{alice, "5550100001", "Person", "hello"} {
		if strings.Contains(raw, leak) {
			t.Fatalf("status holds %q: %s", leak, raw)
		}
	}
	if left := exported(t, st, alice); len(left) != 0 {
		t.Fatalf("%d records of the erased subject remain: %v", len(left), left)
	}
	if kept := exported(t, st, bob); len(kept) != len(bobBefore) {
		t.Fatalf("the other subject has %d records, want %d", len(kept), len(bobBefore))
	}

	// The same person again: completes, with nothing left to erase, and the
	// same reference (the auditor can match the two).
	again := file(t, ns, "ticket-10", alice)
	p.Client = workerClient(t, ns, []platformv1.DeletionRequest{*again})
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	second := get(t, again)
	if second.Status.Phase != platformv1.DeletionCompleted || *second.Status.Erased != (platformv1.ErasedCounts{}) {
		t.Fatalf("repeat: phase %q counts %+v, want Completed with zero counts", second.Status.Phase, second.Status.Erased)
	}
	if second.Status.SubjectRef != got.Status.SubjectRef {
		t.Fatalf("the same person got two references: %q and %q", got.Status.SubjectRef, second.Status.SubjectRef)
	}
	if c := apimeta.FindStatusCondition(second.Status.Conditions, platformv1.ConditionSubjectErased); c == nil || !strings.Contains(c.Message, "no data linked") {
		t.Fatalf("a request that matched nothing must say so: %v", second.Status.Conditions)
	}
}

func TestARequestLeftRunningByACrashIsFinished(t *testing.T) {
	ns := "tenant-resume"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	dr := file(t, ns, "ticket-11", bob)
	// The previous worker marked it Running and died before erasing.
	patch := client.MergeFrom(dr.DeepCopy())
	dr.Status.Phase = platformv1.DeletionRunning
	if err := admin.Status().Patch(ctx, dr, patch); err != nil {
		t.Fatal(err)
	}
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*dr}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Now()),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, dr); got.Status.Phase != platformv1.DeletionCompleted || got.Status.Erased.Messages != 3 {
		t.Fatalf("phase %q erased %+v, want Completed with 3 messages", got.Status.Phase, got.Status.Erased)
	}
	if left := exported(t, st, bob); len(left) != 0 {
		t.Fatalf("%d records remain", len(left))
	}
}

func TestMissingSubjectFailsWithoutErasing(t *testing.T) {
	ns := "tenant-refuse"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	missing := file(t, ns, "no-subject", alice)
	if err := admin.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "no-subject-subject", Namespace: ns}}); err != nil {
		t.Fatal(err)
	}
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*missing}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Now()),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	got := get(t, missing)
	if got.Status.Phase != platformv1.DeletionFailed {
		t.Fatalf("phase %q, want Failed", got.Status.Phase)
	}
	if c := apimeta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionSubjectErased); c == nil || c.Reason != platformv1.ReasonSubjectSecretMissing {
		t.Fatalf("missing subject: %v", c)
	}
	if left := exported(t, st, alice); len(left) != 4 {
		t.Fatalf("a failed request erased data: %d records left of 4", len(left))
	}
}

// spec.scope and spec.channel limit what is erased: a request for Alice's messages on
// channel "wa" leaves her contact, her messages and file on another channel, and Bob.
func TestScopeAndChannelLimitTheErasure(t *testing.T) {
	ns := "tenant-scope"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	other := meta.Batch{
		Messages: []meta.Message{{Platform: meta.WhatsApp, Channel: "wa2", ID: "wamid.other", Subject: alice, Direction: meta.Inbound,
			Type: "image", Timestamp: time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC), Raw: []byte(`{"id":"wamid.other"}`)}},
		Files: []meta.File{{Platform: meta.WhatsApp, Channel: "wa2", MessageID: "wamid.other", Subject: alice, Kind: "image", MediaID: "9"}},
	}
	if _, err := st.Commit(ctx, &other); err != nil {
		t.Fatal(err)
	}
	bobBefore := exported(t, st, bob)
	dr := fileOn(t, ns, "only-messages", alice, "wa", platformv1.ScopeMessages)
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*dr}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Now()),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	got := get(t, dr)
	if got.Status.Phase != platformv1.DeletionCompleted || *got.Status.Erased != (platformv1.ErasedCounts{Messages: 3}) {
		t.Fatalf("phase %q erased %+v, want Completed with 3 messages only", got.Status.Phase, got.Status.Erased)
	}
	if c := apimeta.FindStatusCondition(got.Status.Conditions, platformv1.ConditionSubjectErased); c == nil || !strings.Contains(c.Message, "messages on channel wa are erased") {
		t.Fatalf("the condition must say what was erased: %v", c)
	}
	var kinds []string
	for _, r := range exported(t, st, alice) {
		var doc struct{ Channel, ID, MessageID string }
		if err := json.Unmarshal(r.Doc, &doc); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, r.Kind+"/"+doc.Channel+"/"+doc.ID+doc.MessageID)
	}
	slices.Sort(kinds)
	want := []string{"contact/wa/", "file/wa2/wamid.other", "message/wa2/wamid.other"}
	if !slices.Equal(kinds, want) {
		t.Fatalf("left of Alice: %v, want %v", kinds, want)
	}
	if kept := exported(t, st, bob); len(kept) != len(bobBefore) {
		t.Fatalf("Bob has %d records, want %d", len(kept), len(bobBefore))
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"+1 (650) 555-0100": "16505550100",
		" 16505550100 ":     "16505550100",
		"US.1349120865530":  "US.1349120865530",
	} {
		if got := subjecterasure.Normalize(platformv1.PlatformWhatsApp, in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	if got := subjecterasure.Normalize(platformv1.PlatformMessenger, " 2417 "); got != "2417" {
		t.Errorf("PSID: %q", got)
	}
}

// The operator accepts a request (Pending) a moment before its Tenant controller
// adds the subject Secret to the worker's Role: until then the worker's read is
// refused, and it waits quietly without failing the request or erasing anything.
func TestAcceptedRequestWaitsUntilTheRoleGrantsItsSubject(t *testing.T) {
	ns := "tenant-not-granted"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	dr := file(t, ns, "early", alice)
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, nil), Namespace: ns, Store: st, Clock: clocktesting.NewFakeClock(time.Now()),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatalf("a subject not granted yet is an error: %v", err)
	}
	if got := get(t, dr); got.Status.Phase != platformv1.DeletionPending || got.Status.Conditions != nil {
		t.Fatalf("status changed before the subject was readable: %+v", got.Status)
	}
	if left := exported(t, st, alice); len(left) != 4 {
		t.Fatalf("erased before the subject was readable: %d records left of 4", len(left))
	}
	p.Client = workerClient(t, ns, []platformv1.DeletionRequest{*dr})
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	if got := get(t, dr); got.Status.Phase != platformv1.DeletionCompleted {
		t.Fatalf("phase %q once granted, want Completed", got.Status.Phase)
	}
}

// A Files erasure tells the privacy officer how many files and how many stored bytes
// went: two of Alice's messages carry the same image (stored once); each file counts its
// bytes, and the one shared copy is gone from the store afterwards.
func TestFilesErasureReportsFilesAndBytes(t *testing.T) {
	ns := "tenant-erase-files"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	at := time.Date(2026, 5, 1, 11, 0, 0, 0, time.UTC)
	var b meta.Batch
	for _, id := range []string{"wamid.img.1", "wamid.img.2"} {
		b.Messages = append(b.Messages, meta.Message{Platform: meta.WhatsApp, Channel: "wa", ID: id, Subject: alice,
			Direction: meta.Inbound, Type: "image", Timestamp: at, Raw: []byte(`{"id":"` + id + `"}`)})
		b.Files = append(b.Files, meta.File{Platform: meta.WhatsApp, Channel: "wa", MessageID: id, Subject: alice, Kind: "image", MediaID: "m-" + id})
	}
	if _, err := st.Commit(ctx, &b); err != nil {
		t.Fatal(err)
	}
	image := []byte(strings.Repeat("alice's shared image ", 100))
	for _, id := range []string{"wamid.img.1", "wamid.img.2"} {
		key := store.FileKey{Platform: meta.WhatsApp, MessageID: id}
		if _, err := st.StoreFileBytes(ctx, key, strings.NewReader(string(image)), 1<<20, "image/jpeg"); err != nil {
			t.Fatalf("store bytes of %s: %v", id, err)
		}
	}
	dr := fileOn(t, ns, "files-only", alice, "", platformv1.ScopeFiles)
	p := &subjecterasure.Processor{
		Client: workerClient(t, ns, []platformv1.DeletionRequest{*dr}), Namespace: ns, Store: st,
		Clock: clocktesting.NewFakeClock(time.Now()),
	}
	if err := p.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	got := get(t, dr)
	want := platformv1.ErasedCounts{Files: 2, FileBytes: 2 * int64(len(image))}
	if got.Status.Phase != platformv1.DeletionCompleted || got.Status.Erased == nil || *got.Status.Erased != want {
		t.Fatalf("phase %q erased %+v, want Completed with %+v", got.Status.Phase, got.Status.Erased, want)
	}
	stats, err := st.FileStats(ctx, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if stats.Blobs != 0 || stats.Bytes != 0 {
		t.Fatalf("after the erasure the store still holds %d contents (%d bytes)", stats.Blobs, stats.Bytes)
	}
}
