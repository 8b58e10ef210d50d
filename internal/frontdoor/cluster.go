package frontdoor

import (
	"context"
	"fmt"
	"sort"

	"github.com/go-logr/logr"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/channels"
	"github.com/omniflowcrm/omniflow-operator/internal/meta"
)

// WorkerURL is the base URL of the worker Service the operator gives a tenant's namespace.
func WorkerURL(namespace string) string {
	return fmt.Sprintf("http://%s.%s.svc:%d", controllers.WorkerName, namespace, controllers.WebhookPort)
}

// Routable reports whether a MetaChannel's ids go to its tenant's worker: the operator's
// claim rule says it holds its id (status.heldID is its own claim), it is Ready for its
// current generation (a changed spec is not routed before the operator judged it: it
// could claim another tenant's id), it is not being deleted, and its tenant is known.
// A channel in Conflict, of a deactivated tenant, or whose Secrets are missing is not.
func Routable(mc *platformv1.MetaChannel) bool {
	if mc.DeletionTimestamp != nil || mc.Status.Tenant == "" {
		return false
	}
	claim := controllers.ChannelClaim(mc)
	if claim == "" || mc.Status.HeldID != claim {
		return false
	}
	c := apimeta.FindStatusCondition(mc.Status.Conditions, platformv1.ConditionReady)
	return c != nil && c.Status == metav1.ConditionTrue && c.ObservedGeneration == mc.Generation
}

// TenantsFrom builds the routes from the cluster's MetaChannels: the routable ones,
// grouped by namespace, each namespace's worker at WorkerURL. Should two routable
// channels still claim one id (the operator lets only one hold it; a cache can briefly
// lag), neither is routed: a part for that id is acknowledged and counted, never given
// to the wrong tenant.
func TenantsFrom(items []platformv1.MetaChannel) []Tenant {
	claims := map[string]int{}
	for i := range items {
		if Routable(&items[i]) {
			claims[controllers.ChannelClaim(&items[i])]++
		}
	}
	byNS := map[string]*Tenant{}
	tenantNS := map[string]string{} // tenant name -> the namespace routed for it
	for i := range items {
		mc := &items[i]
		if !Routable(mc) || claims[controllers.ChannelClaim(mc)] > 1 {
			continue
		}
		if ns, ok := tenantNS[mc.Status.Tenant]; ok && ns != mc.Namespace {
			continue // one tenant, one namespace: another namespace naming it is not its
		}
		tenantNS[mc.Status.Tenant] = mc.Namespace
		tn := byNS[mc.Namespace]
		if tn == nil {
			tn = &Tenant{Name: mc.Status.Tenant, Worker: WorkerURL(mc.Namespace)}
			byNS[mc.Namespace] = tn
		}
		tn.Channels = append(tn.Channels, routeChannel(mc))
	}
	out := make([]Tenant, 0, len(byNS))
	for _, tn := range byNS {
		out = append(out, *tn)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// OfApp keeps the channels whose appRef names app; app "" keeps every channel.
func OfApp(items []platformv1.MetaChannel, app string) []platformv1.MetaChannel {
	if app == "" {
		return items
	}
	var out []platformv1.MetaChannel
	for _, mc := range items {
		if mc.Spec.AppRef != nil && mc.Spec.AppRef.Name == app {
			out = append(out, mc)
		}
	}
	return out
}

func routeChannel(mc *platformv1.MetaChannel) RouteChannel {
	rc := RouteChannel{Platform: meta.Platform(mc.Spec.Platform)}
	switch {
	case mc.Spec.WhatsApp != nil:
		rc.WhatsApp = &channels.WhatsAppIDs{PhoneNumberID: channels.ID(mc.Spec.WhatsApp.PhoneNumberID), BusinessAccountID: channels.ID(mc.Spec.WhatsApp.BusinessAccountID)}
	case mc.Spec.Messenger != nil:
		rc.Messenger = &channels.MessengerIDs{PageID: channels.ID(mc.Spec.Messenger.PageID)}
	case mc.Spec.Instagram != nil:
		rc.Instagram = &channels.InstagramIDs{AccountID: channels.ID(mc.Spec.Instagram.AccountID)}
	}
	return rc
}

// ClusterSource fills a Table from a watch of every namespace's MetaChannels: a change
// the operator makes (a channel accepted, refused, its tenant deactivated) is in the
// table as soon as the watch delivers it, without a restart. It needs get, list and
// watch on metachannels cluster-wide, and reads nothing else: no Secret of any tenant.
type ClusterSource struct {
	RestConfig *rest.Config
	Table      *Table
	Log        logr.Logger
	// App, when set, routes only the channels whose spec.appRef names this
	// MetaApp: the front door the operator runs for that app.
	App string
}

// Run watches until ctx ends. The table is first filled once the initial list is in.
func (c *ClusterSource) Run(ctx context.Context) error {
	scheme := runtime.NewScheme()
	utilruntime.Must(platformv1.AddToScheme(scheme))
	ca, err := cache.New(c.RestConfig, cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields()})
	if err != nil {
		return fmt.Errorf("create MetaChannel cache: %w", err)
	}
	inf, err := ca.GetInformer(ctx, &platformv1.MetaChannel{})
	if err != nil {
		return fmt.Errorf("MetaChannel informer: %w", err)
	}
	changed := make(chan struct{}, 1)
	poke := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	}); err != nil {
		return fmt.Errorf("watch MetaChannels: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- ca.Start(ctx) }()
	if !ca.WaitForCacheSync(ctx) {
		select {
		case err := <-errc:
			return fmt.Errorf("MetaChannel cache: %w", err)
		default:
			return ctx.Err()
		}
	}
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-errc:
			return fmt.Errorf("MetaChannel cache: %w", err)
		case <-changed:
			var list platformv1.MetaChannelList
			if err := ca.List(ctx, &list); err != nil {
				return fmt.Errorf("list MetaChannels: %w", err)
			}
			tenants := TenantsFrom(OfApp(list.Items, c.App))
			if err := c.Table.Replace(tenants); err != nil {
				// TenantsFrom never routes an id twice; anything else is a bug to see.
				c.Log.Error(err, "Routes from the cluster refused; the previous routes stay")
				continue
			}
			c.Log.V(1).Info("Routes updated", "tenants", len(tenants))
		}
	}
}
