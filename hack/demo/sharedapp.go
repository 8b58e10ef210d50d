package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/frontdoor"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

const (
	operatorNamespace = "omniflow-system"
	sharedApp         = "shared"
	sharedAppSecret   = "demo-shared-app-secret-not-for-production"
)

// sharedTenants are two businesses onboarded through the platform's one Meta app: a
// WhatsApp number each, in WhatsApp Business Accounts of their own.
var sharedTenants = []struct{ name, phone, waba string }{
	{"globex", "106540352240001", "102290129340001"},
	{"initech", "106540352240002", "102290129340002"},
}

// sharedAppWalkThrough shows two tenants behind one MetaApp: the operator runs the app's
// front door and gives each tenant's worker its forwarding key; one signed delivery
// carrying both tenants' messages leaves each tenant's export with exactly its own.
func sharedAppWalkThrough(ctx context.Context, env *testenv.Env, work string, step func(string, ...any)) error {
	c := env.Client
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "shared-meta-app", Namespace: operatorNamespace},
		StringData: map[string]string{"appSecret": sharedAppSecret, "verifyToken": verifyToken}}); err != nil {
		return fmt.Errorf("create the app's secret: %w", err)
	}
	app := &platformv1.MetaApp{ObjectMeta: metav1.ObjectMeta{Name: sharedApp}, Spec: platformv1.MetaAppSpec{AppID: "4242",
		AppSecretRef:   platformv1.SecretKeyRef{Name: "shared-meta-app", Key: "appSecret"},
		VerifyTokenRef: platformv1.SecretKeyRef{Name: "shared-meta-app", Key: "verifyToken"}}}
	if err := c.Create(ctx, app); err != nil {
		return fmt.Errorf("create the MetaApp: %w", err)
	}
	doorKey := types.NamespacedName{Namespace: operatorNamespace, Name: controllers.FrontDoorName(sharedApp)}
	var door appsv1.Deployment
	if err := wait(ctx, "the front door's Deployment", func() (bool, error) { return found(c.Get(ctx, doorKey, &door)) }); err != nil {
		return err
	}
	// What the Deployment controller and the kubelet would report once its pods run.
	if err := testenv.MarkAvailable(ctx, c, doorKey); err != nil {
		return err
	}
	if err := wait(ctx, "the MetaApp to be Ready", func() (bool, error) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(app), app); err != nil {
			return false, err
		}
		return apimeta.IsStatusConditionTrue(app.Status.Conditions, platformv1.ConditionReady), nil
	}); err != nil {
		return err
	}
	step("MetaApp %s Ready: front door %s/%s (%d replicas, PodDisruptionBudget, Service, Ingress); callback URL for Meta's dashboard: %s",
		sharedApp, operatorNamespace, doorKey.Name, ptr.Deref(door.Spec.Replicas, 1), app.Status.WebhookURL)

	// Two tenants, a channel each behind the app: no secrets of their own.
	var workers []*worker
	defer func() {
		for _, w := range workers {
			w.kill()
		}
	}()
	var dialAt []string
	for _, st := range sharedTenants {
		tn := &platformv1.Tenant{ObjectMeta: metav1.ObjectMeta{Name: st.name}, Spec: platformv1.TenantSpec{DisplayName: st.name}}
		if err := c.Create(ctx, tn); err != nil {
			return fmt.Errorf("create tenant %s: %w", st.name, err)
		}
		ns := tn.NamespaceName()
		if err := wait(ctx, "namespace "+ns, func() (bool, error) { return found(c.Get(ctx, types.NamespacedName{Name: ns}, &corev1.Namespace{})) }); err != nil {
			return err
		}
		ch := &platformv1.MetaChannel{ObjectMeta: metav1.ObjectMeta{Name: "whatsapp", Namespace: ns}, Spec: platformv1.MetaChannelSpec{
			Platform: platformv1.PlatformWhatsApp, WhatsApp: &platformv1.WhatsAppChannel{PhoneNumberID: st.phone, BusinessAccountID: st.waba},
			AppRef: &platformv1.MetaAppRef{Name: sharedApp}}}
		if err := c.Create(ctx, ch); err != nil {
			return fmt.Errorf("create channel of %s: %w", st.name, err)
		}
		if err := wait(ctx, "the channel of "+st.name+" to be Ready", func() (bool, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(ch), ch); err != nil {
				return false, err
			}
			return apimeta.IsStatusConditionTrue(ch.Status.Conditions, platformv1.ConditionReady), nil
		}); err != nil {
			return err
		}
		// The worker's Deployment, once it carries the forwarding key the operator wrote.
		var dep appsv1.Deployment
		if err := wait(ctx, "the worker of "+st.name+" to get its forwarding key", func() (bool, error) {
			if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: controllers.WorkerName}, &dep); err != nil {
				return false, err
			}
			return strings.Contains(strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "), "--forward-key-file"), nil
		}); err != nil {
			return err
		}
		w, err := startWorker(ctx, env, work, &dep)
		if err != nil {
			return err
		}
		workers = append(workers, w)
		dialAt = append(dialAt, "--worker-address="+strings.TrimPrefix(frontdoor.WorkerURL(ns), "http://")+"="+strings.TrimPrefix(w.base, "http://"))
	}
	step("Tenants %s and %s: a WhatsApp channel each behind MetaApp %s, Ready; each worker runs with the forwarding key the operator derived for it",
		sharedTenants[0].name, sharedTenants[1].name, sharedApp)

	// The front door as its Deployment says, as its ServiceAccount; the workers'
	// Service names resolve nowhere here, so they are dialed at their local ports.
	bin, err := build(ctx, work, "./cmd/frontdoor")
	if err != nil {
		return err
	}
	if err := c.Get(ctx, doorKey, &door); err != nil {
		return err
	}
	fd, err := runAs(ctx, env, work, bin, &door, dialAt...)
	if err != nil {
		return err
	}
	defer fd.kill()
	if err := wait(ctx, "the front door's routes", func() (bool, error) { return fd.get("/readyz") == http.StatusOK, nil }); err != nil {
		return err
	}
	step("front door running locally with its Deployment's arguments %q, as system:serviceaccount:%s:%s",
		door.Spec.Template.Spec.Containers[0].Args, operatorNamespace, door.Spec.Template.Spec.ServiceAccountName)

	// One delivery, as Meta sends it to the app's one URL: an entry of each business.
	mixed, err := meta.Combine(sharedDelivery(0, userA, "wamid.shared.globex"), sharedDelivery(1, userB, "wamid.shared.initech"))
	if err != nil {
		return err
	}
	path := "/apps/" + sharedApp + "/webhooks/meta"
	if code := fd.post(path, mixed, meta.Sign([]byte(sharedAppSecret), mixed)); code != http.StatusOK {
		return fmt.Errorf("the mixed delivery answered %d, want 200", code)
	}
	if code := fd.post(path, mixed, meta.Sign([]byte(appSecret), mixed)); code != http.StatusUnauthorized {
		return fmt.Errorf("a delivery signed with another app's secret answered %d, want 401", code)
	}
	var got []string
	for i, w := range workers {
		a, b, err := w.records(userA, userB)
		if err != nil {
			return err
		}
		// globex was sent end-user A's message, initech end-user B's.
		if own, other := []int{a, b}[i], []int{b, a}[i]; own == 0 || other != 0 {
			return fmt.Errorf("%s's export: end-user A %d records, B %d; want its own end-user's only", sharedTenants[i].name, a, b)
		}
		got = append(got, fmt.Sprintf("%s A %d, B %d records", sharedTenants[i].name, a, b))
	}
	step("one signed delivery with entries of both tenants: 200, each tenant's parts forwarded to its own worker; export: %s", strings.Join(got, "; "))
	return deletionCallback(ctx, c, fd, step)
}

// deletionCallback: a Facebook user removes the shared app and Meta calls its
// data-deletion URL; each tenant's worker files its own request under one code, and
// the status page at the app's URL reports both.
func deletionCallback(ctx context.Context, c client.Client, fd *proc, step func(string, ...any)) error {
	signed := meta.SignSignedRequest([]byte(sharedAppSecret), []byte(`{"algorithm":"HMAC-SHA256","issued_at":1781100000,"user_id":"10160012345678901"}`))
	resp, err := http.PostForm(fd.base+"/apps/"+sharedApp+"/meta/data-deletion", url.Values{meta.SignedRequestField: {signed}})
	if err != nil {
		return err
	}
	var answer struct {
		URL  string `json:"url"`
		Code string `json:"confirmation_code"`
	}
	err = json.NewDecoder(resp.Body).Decode(&answer)
	_ = resp.Body.Close()
	if err != nil {
		return fmt.Errorf("the data-deletion callback's answer (%d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || answer.Code == "" {
		return fmt.Errorf("the data-deletion callback answered %d, want 200 with a code", resp.StatusCode)
	}
	for _, st := range sharedTenants {
		var drs platformv1.DeletionRequestList
		if err := c.List(ctx, &drs, client.InNamespace("tenant-"+st.name)); err != nil {
			return err
		}
		if len(drs.Items) != 1 || drs.Items[0].Status.ConfirmationCode != answer.Code || drs.Items[0].Spec.Source != platformv1.SourceMetaCallback {
			return fmt.Errorf("tenant %s holds %d deletion requests, want one MetaCallback request with code %s", st.name, len(drs.Items), answer.Code)
		}
	}
	var page string
	if err := wait(ctx, "both parts of the request to complete", func() (bool, error) {
		r, err := http.Get(answer.URL)
		if err != nil {
			return false, err
		}
		b, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		page = string(b)
		return err == nil && strings.Contains(page, "Status: Completed"), err
	}); err != nil {
		return fmt.Errorf("%w; last status page:\n%s", err, page)
	}
	var summary []string
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, "Status: ") || strings.HasPrefix(line, "Part ") {
			summary = append(summary, line)
		}
	}
	step("Meta's data-deletion callback at the app's URL: one code %s, a MetaCallback DeletionRequest filed by each tenant's worker; its status page %s: %s",
		answer.Code, strings.TrimPrefix(answer.URL, fd.base), strings.Join(summary, "; "))
	return nil
}

// sharedDelivery is a delivery to sharedTenants[i]'s number from user.
func sharedDelivery(i int, user, id string) []byte {
	st := sharedTenants[i]
	return []byte(fmt.Sprintf(`{"object":"whatsapp_business_account","entry":[{"id":%q,"changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"1555000000%d","phone_number_id":%q},"contacts":[{"profile":{"name":"Demo user"},"wa_id":%q}],"messages":[{"from":%q,"id":%q,"timestamp":"1781100000","type":"text","text":{"body":"hello through the shared app"}}]}}]}]}`,
		st.waba, i, st.phone, user, user, id))
}
