package health_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/healthtable"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
	"github.com/omniflowcrm/omniflow-operator/internal/workerreport"
)

const (
	timeout  = 30 * time.Second
	interval = 200 * time.Millisecond
	day      = 24 * time.Hour
)

var ctx = context.Background()

// reached records the rows of the table the operator was seen in.
type reached map[string]bool

// expect waits until obj, as the operator wrote it, is in the row key, and
// checks that the real kstatus library computes the row's health on it, with
// status.observedGeneration matching metadata.generation.
func (r reached) expect(t *testing.T, g Gomega, obj client.Object, key string) {
	t.Helper()
	_, ok := healthtable.Lookup(key)
	g.Expect(ok).To(BeTrue(), "no row %s in the table", key)
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
		g.Expect(healthtable.KeyOf(obj)).To(Equal(key))
		g.Expect(healthtable.Check(obj)).To(Succeed())
	}, timeout, interval).Should(Succeed(), "%s reaches %s", obj.GetName(), key)
	r[key] = true
}

func key(kind, phase string, ready metav1.ConditionStatus, reason string, atRisk bool) string {
	return healthtable.Row{Kind: kind, Phase: phase, Ready: ready, Reason: reason, AtRisk: atRisk}.Key()
}

// servedKey is the row of a served channel whose MediaFetching has the reason.
func servedKey(media string) string {
	return healthtable.Row{Kind: healthtable.MetaChannel, Ready: T, Reason: platformv1.ReasonChannelAccepted, Media: media}.Key()
}

func tenantKey(phase string, ready metav1.ConditionStatus, reason string, atRisk bool) string {
	return key(healthtable.Tenant, phase, ready, reason, atRisk)
}

func channelKey(ready metav1.ConditionStatus, reason string) string {
	return key(healthtable.MetaChannel, "", ready, reason, false)
}

func requestKey(phase platformv1.DeletionPhase, ready metav1.ConditionStatus, reason string, atRisk bool) string {
	return key(healthtable.DeletionRequest, string(phase), ready, reason, atRisk)
}

const (
	T = metav1.ConditionTrue
	F = metav1.ConditionFalse
)

func create(g Gomega, objs ...client.Object) {
	for _, o := range objs {
		g.Expect(k8s.Create(ctx, o)).To(Succeed())
	}
}

// touch asks for a reconcile (the fake clock moves, the API server does not).
func touch(g Gomega, obj client.Object) {
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(obj), obj)).To(Succeed())
	patch := client.MergeFrom(obj.DeepCopyObject().(client.Object))
	ann := obj.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[controllers.ReconcileAnnotation] = time.Now().Format(time.RFC3339Nano)
	obj.SetAnnotations(ann)
	g.Expect(k8s.Patch(ctx, obj, patch)).To(Succeed())
}

func setState(g Gomega, tn *platformv1.Tenant, state platformv1.TenantState) {
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(tn), tn)).To(Succeed())
	patch := client.MergeFrom(tn.DeepCopy())
	tn.Spec.State = state
	g.Expect(k8s.Patch(ctx, tn, patch)).To(Succeed())
}

func secret(ns, name string, data map[string]string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, StringData: data}
}

func channel(ns, name, phoneID, secretName string) *platformv1.MetaChannel {
	return &platformv1.MetaChannel{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.MetaChannelSpec{
			Platform:       platformv1.PlatformWhatsApp,
			WhatsApp:       &platformv1.WhatsAppChannel{PhoneNumberID: phoneID, BusinessAccountID: "777000"},
			AppSecretRef:   &platformv1.SecretKeyRef{Name: secretName, Key: "appSecret"},
			VerifyTokenRef: &platformv1.SecretKeyRef{Name: secretName, Key: "verifyToken"},
		},
	}
}

func request(g Gomega, ns, name string) *platformv1.DeletionRequest {
	subject := secret(ns, name+"-subject", map[string]string{"id": "15550100123"})
	subject.Type = platformv1.SubjectSecretType
	create(g, subject)
	return requestFor(g, ns, name, platformv1.SecretKeyRef{Name: subject.Name, Key: "id"}, "")
}

// requestFor files a request naming any Secret and channel, as a user may.
func requestFor(g Gomega, ns, name string, subject platformv1.SecretKeyRef, channel string) *platformv1.DeletionRequest {
	dr := &platformv1.DeletionRequest{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: platformv1.DeletionRequestSpec{
			Platform:         platformv1.PlatformWhatsApp,
			SubjectSecretRef: subject,
			Channel:          channel,
		},
	}
	create(g, dr)
	return dr
}

// report plays the worker's part in a request's status, as the worker
// writes it: the phase and its own condition SubjectErased (Ready and the
// health conditions are the operator's to write).
func report(g Gomega, dr *platformv1.DeletionRequest, phase platformv1.DeletionPhase, erased metav1.ConditionStatus, reason string) {
	g.Eventually(func() error {
		if err := k8s.Get(ctx, client.ObjectKeyFromObject(dr), dr); err != nil {
			return err
		}
		patch := client.MergeFromWithOptions(dr.DeepCopy(), client.MergeFromWithOptimisticLock{})
		dr.Status.Phase = phase
		meta.SetStatusCondition(&dr.Status.Conditions, metav1.Condition{
			Type: platformv1.ConditionSubjectErased, Status: erased, Reason: reason, ObservedGeneration: dr.Generation,
		})
		return k8s.Status().Patch(ctx, dr, patch)
	}, timeout, interval).Should(Succeed())
}

// refuseToken plays the worker reporting that Meta refused a channel's token.
func refuseToken(g Gomega, ns, channel string) {
	at := metav1.NewTime(clock.Now())
	rep := workerreport.Media{ReportedAt: at, Channels: map[string]workerreport.MediaChannel{channel: {TokenRefusedAt: &at}}}
	g.Expect(testenv.ReportMedia(ctx, k8s, ns, rep)).To(Succeed())
}

// bindClaim gives the tenant's data claim a volume (Retain: erasure must
// delete it itself); kube-controller-manager binds them.
func bindClaim(g Gomega, ns, name string) {
	var pvc corev1.PersistentVolumeClaim
	g.Expect(k8s.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.DataClaimName}, &pvc)).To(Succeed())
	create(g, &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/omniflow-test/" + name}},
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: pvc.Name, UID: pvc.UID},
		},
	})
}

// blockNamespaceDeletion keeps the namespace Terminating (and so the
// erasure in progress) until release.
func blockNamespaceDeletion(g Gomega, ns string) (release func()) {
	free, err := testenv.BlockNamespaceDeletion(ctx, k8s, ns)
	g.Expect(err).NotTo(HaveOccurred())
	return func() { g.Expect(free()).To(Succeed()) }
}

// printed returns the cells `kubectl get` shows for an object: the API
// server's Table rendering of the CRD's printer columns.
func printed(g Gomega, path string) map[string]any {
	hc, err := rest.HTTPClientFor(restCfg)
	g.Expect(err).NotTo(HaveOccurred())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(restCfg.Host, "/")+path, nil)
	g.Expect(err).NotTo(HaveOccurred())
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := hc.Do(req)
	g.Expect(err).NotTo(HaveOccurred())
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(resp.Body)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(resp.StatusCode).To(Equal(http.StatusOK), string(body))
	var table metav1.Table
	g.Expect(json.Unmarshal(body, &table)).To(Succeed())
	g.Expect(table.Rows).To(HaveLen(1))
	out := map[string]any{}
	for i, c := range table.ColumnDefinitions {
		out[c.Name] = table.Rows[0].Cells[i]
	}
	return out
}

// TestKstatusOfEveryStateTheOperatorWrites walks a tenant, its channels and
// deletion requests through their lives (the fake clock moves forward only)
// and computes kstatus on each state with the real library. The rows it
// cannot reach need other setups (a PostgreSQL server, a Gateway): the
// health of those is proven on built objects (internal/healthtable).
func TestKstatusOfEveryStateTheOperatorWrites(t *testing.T) {
	g := NewWithT(t)
	seen := reached{}
	t0 := clock.Now()

	// An active tenant, provisioned step by step.
	tn := &platformv1.Tenant{
		ObjectMeta: metav1.ObjectMeta{Name: "hk"},
		Spec:       platformv1.TenantSpec{Erasure: platformv1.ErasurePolicy{GracePeriod: &metav1.Duration{Duration: time.Hour}}},
	}
	create(g, tn)
	ns := tn.NamespaceName()
	seen.expect(t, g, tn, tenantKey("Provisioning", F, platformv1.ReasonClaimPending, false))
	bindClaim(g, ns, tn.Name)
	seen.expect(t, g, tn, tenantKey("Provisioning", F, platformv1.ReasonDeploymentUnavailable, false))
	g.Eventually(func() error { return testenv.MarkWorkerUp(ctx, k8s, ns) }, timeout, interval).Should(Succeed())
	seen.expect(t, g, tn, tenantKey("Active", T, platformv1.ReasonReconciled, false))

	// Channels: served, and every way of not being served.
	create(g,
		secret(ns, "meta-app", map[string]string{"appSecret": "s3cret", "verifyToken": "tok", "accessToken": "EAAG-test"}),
		secret(ns, "meta-nokey", map[string]string{"appSecret": "s3cret"}),
		secret(ns, "meta-empty", map[string]string{"appSecret": "s3cret", "verifyToken": ""}),
	)
	served := channel(ns, "wa", "1001", "meta-app")
	create(g, served)
	seen.expect(t, g, served, servedKey(platformv1.ReasonMediaMetadataOnly))
	// Its media, in every state: fetched with a token, refused, by URL.
	fetching := channel(ns, "wa-media", "1007", "meta-app")
	fetching.Spec.AccessTokenRef = &platformv1.SecretKeyRef{Name: "meta-app", Key: "accessToken"}
	page := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "ig", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformInstagram, Instagram: &platformv1.InstagramChannel{AccountID: "1008"},
			AppSecretRef: fetching.Spec.AppSecretRef, VerifyTokenRef: fetching.Spec.VerifyTokenRef}}
	create(g, fetching, page)
	seen.expect(t, g, fetching, servedKey(platformv1.ReasonMediaFetching))
	seen.expect(t, g, page, servedKey(platformv1.ReasonMediaFetchedByURL))
	refuseToken(g, ns, fetching.Name)
	seen.expect(t, g, fetching, servedKey(platformv1.ReasonMediaTokenRefused))
	g.Expect(printed(g, "/apis/platform.omniflowcrm.com/v1alpha1/namespaces/"+ns+"/metachannels/"+fetching.Name)["Media"]).
		To(Equal(platformv1.ReasonMediaTokenRefused), "kubectl get mch -o wide prints the MediaFetching reason")
	dup := channel(ns, "wa-dup", "1001", "meta-app")
	noSecret := channel(ns, "wa-nosecret", "1002", "meta-absent")
	noKey := channel(ns, "wa-nokey", "1003", "meta-nokey")
	empty := channel(ns, "wa-empty", "1004", "meta-empty")
	create(g, dup, noSecret, noKey, empty)
	seen.expect(t, g, dup, channelKey(F, platformv1.ReasonConflict))
	seen.expect(t, g, noSecret, channelKey(F, platformv1.ReasonSecretMissing))
	seen.expect(t, g, noKey, channelKey(F, platformv1.ReasonSecretKeyMissing))
	seen.expect(t, g, empty, channelKey(F, platformv1.ReasonSecretValueEmpty))

	// A namespace that is no tenant's, and one labelled for a missing Tenant.
	create(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hk-stray"}},
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hk-ghost", Labels: map[string]string{platformv1.LabelTenant: "ghost"}}})
	stray := channel("hk-stray", "wa", "1005", "meta-app")
	ghost := channel("hk-ghost", "wa", "1006", "meta-app")
	create(g, stray, ghost)
	seen.expect(t, g, stray, channelKey(F, platformv1.ReasonNotInTenantNamespace))
	seen.expect(t, g, ghost, channelKey(F, platformv1.ReasonTenantNotFound))
	strayRequest := request(g, "hk-stray", "stray")
	seen.expect(t, g, strayRequest, requestKey(platformv1.DeletionRefused, F, platformv1.ReasonNotATenantNamespace, false))

	// A tenant whose namespace is someone else's.
	conflicted := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "hk-conflict"}, Spec: platformv1.TenantSpec{Namespace: "hk-stray"}}
	create(g, conflicted)
	seen.expect(t, g, conflicted, tenantKey("Failed", F, platformv1.ReasonNamespaceConflict, false))

	// A tenant whose namespace is still going away.
	create(g, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hk-term", Labels: map[string]string{platformv1.LabelTenant: "hk-term"}}})
	releaseTerm := blockNamespaceDeletion(g, "hk-term")
	g.Expect(k8s.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "hk-term"}})).To(Succeed())
	terminating := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "hk-term"}, Spec: platformv1.TenantSpec{Namespace: "hk-term"}}
	create(g, terminating)
	seen.expect(t, g, terminating, tenantKey("Provisioning", F, platformv1.ReasonNamespaceTerminating, false))
	releaseTerm()

	// Deletion requests, the worker's part played by hand.
	pending := request(g, ns, "pending")
	running := request(g, ns, "running")
	done := request(g, ns, "done")
	failed := request(g, ns, "failed")
	for _, dr := range []*platformv1.DeletionRequest{pending, running, done, failed} {
		seen.expect(t, g, dr, requestKey(platformv1.DeletionPending, F, platformv1.ReasonPending, false))
	}
	report(g, running, platformv1.DeletionRunning, F, "Erasing")
	seen.expect(t, g, running, requestKey(platformv1.DeletionRunning, F, platformv1.ReasonPending, false))
	report(g, done, platformv1.DeletionCompleted, T, platformv1.ReasonCompleted)
	seen.expect(t, g, done, requestKey(platformv1.DeletionCompleted, T, platformv1.ReasonCompleted, false))
	report(g, failed, platformv1.DeletionFailed, F, "SubjectMissing")
	seen.expect(t, g, failed, requestKey(platformv1.DeletionFailed, F, platformv1.ReasonFailed, false))

	// Requests the operator refuses, and one waiting for its subject Secret.
	opaque := secret(ns, "opaque-subject", map[string]string{"id": "15550100123"})
	create(g, opaque)
	unknownChannel := requestFor(g, ns, "unknown-channel", platformv1.SecretKeyRef{Name: "pending-subject", Key: "id"}, "nope")
	notSubject := requestFor(g, ns, "not-subject", platformv1.SecretKeyRef{Name: opaque.Name, Key: "id"}, "")
	inUse := requestFor(g, ns, "in-use", platformv1.SecretKeyRef{Name: "meta-app", Key: "appSecret"}, "")
	missing := requestFor(g, ns, "missing", platformv1.SecretKeyRef{Name: "never-made", Key: "id"}, "")
	seen.expect(t, g, unknownChannel, requestKey(platformv1.DeletionRefused, F, platformv1.ReasonUnknownChannel, false))
	seen.expect(t, g, notSubject, requestKey(platformv1.DeletionRefused, F, platformv1.ReasonNotASubjectSecret, false))
	seen.expect(t, g, inUse, requestKey(platformv1.DeletionRefused, F, platformv1.ReasonSubjectSecretInUse, false))
	seen.expect(t, g, missing, requestKey("", F, platformv1.ReasonSubjectSecretMissing, false))

	// 27 days on, the unfinished request is at risk of its 30-day deadline.
	clock.SetTime(t0.Add(27*day + time.Minute))
	touch(g, pending)
	seen.expect(t, g, pending, requestKey(platformv1.DeletionPending, F, platformv1.ReasonPending, true))
	touch(g, missing)
	seen.expect(t, g, missing, requestKey(platformv1.DeletionRefused, F, platformv1.ReasonSubjectSecretMissing, false))
	g.Eventually(func() float64 { return atRiskNow(g, ns) }, timeout, interval).Should(Equal(1.0), "the at-risk gauge counts the request")
	deadline := printed(g, "/apis/platform.omniflowcrm.com/v1alpha1/namespaces/"+ns+"/deletionrequests/pending")["Deadline"]
	g.Expect(deadline).To(Equal(pending.Status.Deadline.UTC().Format(time.RFC3339)), "the Deadline column prints the deadline, not its age")

	// Deactivation: settled while the grace period runs.
	setState(g, tn, platformv1.TenantDeactivated)
	seen.expect(t, g, tn, tenantKey("Deactivated", T, platformv1.ReasonDeactivated, false))
	g.Expect(printed(g, "/apis/platform.omniflowcrm.com/v1alpha1/tenants/"+tn.Name)["Erasure-Deadline"]).
		To(Equal(tn.Status.ErasureDeadline.UTC().Format(time.RFC3339)), "the Erasure-Deadline column prints the deadline, not <invalid>")
	seen.expect(t, g, served, channelKey(F, platformv1.ReasonTenantDeactivated))
	late := request(g, ns, "late")
	seen.expect(t, g, late, requestKey(platformv1.DeletionPending, F, platformv1.ReasonTenantDeactivated, false))

	// Erasure, held up by a namespace that does not go.
	release := blockNamespaceDeletion(g, ns)
	clock.SetTime(tn.Status.ErasureScheduledAt.Add(time.Minute))
	touch(g, tn)
	seen.expect(t, g, tn, tenantKey("Erasing", F, "Erasing", false))
	setState(g, tn, platformv1.TenantActive)
	seen.expect(t, g, tn, tenantKey("Erasing", F, platformv1.ReasonReactivationRefused, false))
	setState(g, tn, platformv1.TenantDeactivated)
	clock.SetTime(tn.Status.ErasureDeadline.Add(-23 * time.Hour))
	touch(g, tn)
	seen.expect(t, g, tn, tenantKey("Erasing", F, "Erasing", true))

	// The API server refuses to reactivate an Erased tenant (CEL), but not
	// one whose erasure is still running: it ends Erased and refused.
	setState(g, tn, platformv1.TenantActive)
	release()
	seen.expect(t, g, tn, tenantKey("Erased", F, platformv1.ReasonReactivationRefused, false))
	setState(g, tn, platformv1.TenantDeactivated)
	seen.expect(t, g, tn, tenantKey("Erased", T, "Erased", false))

	// The namespace and its requests are gone: none is at risk any more.
	g.Eventually(func() float64 { return atRiskNow(g, ns) }, timeout, interval).Should(Equal(-1.0), "no series for a namespace without requests at risk")

	var missed []string
	for _, r := range healthtable.Rows {
		if !seen[r.Key()] && !metaAppRow(r) {
			missed = append(missed, r.Key())
		}
	}
	sort.Strings(missed)
	// What needs another setup (controllers/postgres and controllers/httproute
	// check theirs in health_test.go); a new row of the table must be reached
	// here or named here.
	g.Expect(missed).To(Equal([]string{
		tenantKey("Failed", F, platformv1.ReasonDatabaseConflict, false),           // controllers/postgres
		tenantKey("Failed", F, platformv1.ReasonStorageUnsupported, false),         // controllers/postgres
		tenantKey("Provisioning", F, platformv1.ReasonApplyFailed, false),          // an API server that refuses writes: not reached
		tenantKey("Provisioning", F, platformv1.ReasonDatabaseUnavailable, false),  // controllers/postgres
		tenantKey("Provisioning", F, platformv1.ReasonHTTPRouteNotAccepted, false), // controllers/httproute
		tenantKey("Provisioning", F, platformv1.ReasonHTTPRoutePending, false),     // controllers/httproute
		tenantKey("Provisioning", F, "Pending", false),                             // a first pass, gone before it can be read: not reached
	}), "TestKstatusOfEveryMetaAppState reaches the MetaApp rows")
}

// metaAppRow: the rows TestKstatusOfEveryMetaAppState reaches.
func metaAppRow(r healthtable.Row) bool {
	return r.Kind == healthtable.MetaApp || r.Reason == platformv1.ReasonMetaAppNotFound || r.Reason == platformv1.ReasonMetaAppNotReady
}

// The MetaApp rows, and the rows of a channel behind a MetaApp.
func TestKstatusOfEveryMetaAppState(t *testing.T) {
	g := NewWithT(t)
	seen := reached{}
	tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: "hk-app"}}
	create(g, tn)
	ns := tn.NamespaceName()
	g.Eventually(func() error { return k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}) }, timeout, interval).Should(Succeed())
	ch := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "page", Namespace: ns},
		Spec: platformv1.MetaChannelSpec{Platform: platformv1.PlatformMessenger, Messenger: &platformv1.MessengerChannel{PageID: "990001"},
			AppRef: &platformv1.MetaAppRef{Name: "hk"}}}
	create(g, ch)
	seen.expect(t, g, ch, channelKey(F, platformv1.ReasonMetaAppNotFound))

	app := &platformv1.MetaApp{ObjectMeta: metav1.ObjectMeta{Name: "hk"}, Spec: platformv1.MetaAppSpec{AppID: "1",
		AppSecretRef: platformv1.SecretKeyRef{Name: "hk-app", Key: "appSecret"}, VerifyTokenRef: platformv1.SecretKeyRef{Name: "hk-app", Key: "verifyToken"}}}
	create(g, app)
	appKey := func(ready metav1.ConditionStatus, reason string) string {
		return key(healthtable.MetaApp, "", ready, reason, false)
	}
	seen.expect(t, g, app, appKey(F, platformv1.ReasonSecretMissing))
	seen.expect(t, g, ch, channelKey(F, platformv1.ReasonMetaAppNotReady))
	s := secret(operatorNamespace, "hk-app", map[string]string{"appSecret": "s3cret"})
	create(g, s)
	touch(g, app)
	seen.expect(t, g, app, appKey(F, platformv1.ReasonSecretKeyMissing))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
	s.StringData = map[string]string{"verifyToken": " "}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	touch(g, app)
	seen.expect(t, g, app, appKey(F, platformv1.ReasonSecretValueEmpty))
	g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(s), s)).To(Succeed())
	s.StringData = map[string]string{"verifyToken": "tok"}
	g.Expect(k8s.Update(ctx, s)).To(Succeed())
	touch(g, app)
	seen.expect(t, g, app, appKey(F, platformv1.ReasonFrontDoorUnavailable))

	// No Deployment controller here: play the front door's availability.
	dep := &appsv1.Deployment{}
	depKey := client.ObjectKey{Namespace: operatorNamespace, Name: controllers.FrontDoorName("hk")}
	g.Expect(k8s.Get(ctx, depKey, dep)).To(Succeed())
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 2, AvailableReplicas: 2}
	g.Expect(k8s.Status().Update(ctx, dep)).To(Succeed())
	seen.expect(t, g, app, appKey(T, platformv1.ReasonFrontDoorAvailable))
	seen.expect(t, g, ch, servedKey(platformv1.ReasonMediaFetchedByURL))

	var missed []string
	for _, r := range healthtable.Rows {
		if metaAppRow(r) && !seen[r.Key()] {
			missed = append(missed, r.Key())
		}
	}
	g.Expect(missed).To(BeEmpty())

	// Deleting the app lets garbage collection remove its front door.
	g.Expect(k8s.Delete(ctx, app)).To(Succeed())
	for _, o := range []client.Object{&appsv1.Deployment{}, &corev1.Service{}, &corev1.ServiceAccount{}, &policyv1.PodDisruptionBudget{}, &networkingv1.Ingress{}} {
		g.Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, depKey, o)) }, 3*timeout, interval).Should(BeTrue(), "%T removed", o)
	}
	for _, o := range []client.Object{&rbacv1.ClusterRole{}, &rbacv1.ClusterRoleBinding{}} {
		g.Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: depKey.Name}, o)) }, 3*timeout, interval).Should(BeTrue(), "%T removed", o)
	}
}

// atRiskNow reads omniflow_deletion_requests_at_risk{namespace} from the
// operator's registry; -1 when there is no such series.
func atRiskNow(g Gomega, ns string) float64 {
	v, found, err := testenv.MetricValue("omniflow_deletion_requests_at_risk", "namespace", ns)
	g.Expect(err).NotTo(HaveOccurred())
	if !found {
		return -1
	}
	return v
}
