package clusterchannels

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
)

// reasonOffboarded: Meta said the channel's business removed the app or deleted its
// WhatsApp account.
const reasonOffboarded = "BusinessLeft"

// Offboard takes channel name out of service at once because Meta reported event
// (account_update PARTNER_APP_UNINSTALLED or ACCOUNT_DELETED) for its business account:
// its webhooks answer 404 and nothing more of it is stored. It stays out until its spec
// changes (a new generation: someone reconnected or reconfigured it) or it is created
// again, and an Event on the MetaChannel says why. The mark is kept in memory: a
// restarted worker serves the channel again until Meta's notice is redelivered or the
// operator marks it; Meta keeps sending nothing for an app that was removed.
func (w *Watcher) Offboard(name, event string) {
	w.cfg.Registry.Delete(name)
	w.offMu.Lock()
	w.offPending[name] = event
	w.offMu.Unlock()
	w.queue.Add(name)
}

// offboarded reports whether mc, as it stands, was taken out by Offboard. A pending
// notice is tied to mc's current object and generation here, and announced.
func (w *Watcher) offboarded(ctx context.Context, mc *platformv1.MetaChannel) bool {
	key := servedKey(mc)
	w.offMu.Lock()
	event, pending := w.offPending[mc.Name]
	if pending {
		delete(w.offPending, mc.Name)
		w.offKeys[mc.Name] = key
	}
	at, off := w.offKeys[mc.Name]
	if off && at != key {
		delete(w.offKeys, mc.Name) // changed since: serve it again
		off = false
	}
	w.offMu.Unlock()
	if pending {
		if err := w.announceOffboarding(ctx, mc, event); err != nil {
			// The channel is out of service either way; the log says why.
			w.cfg.Log.Error(err, "Event not recorded", "channel", mc.Name)
		}
	}
	return off
}

func (w *Watcher) forgetOffboarding(name string) {
	w.offMu.Lock()
	defer w.offMu.Unlock()
	delete(w.offPending, name)
	delete(w.offKeys, name)
}

// announceOffboarding records a Warning Event (events.k8s.io) on the MetaChannel. It
// names Meta's event and nothing else.
func (w *Watcher) announceOffboarding(ctx context.Context, mc *platformv1.MetaChannel, event string) error {
	host, _ := os.Hostname()
	if host == "" {
		host = "ingest-worker"
	}
	now := time.Now()
	ev := &eventsv1.Event{
		// Named as client-go names Events (generateName may not end in '.').
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", mc.Name, now.UnixNano()), Namespace: mc.Namespace},
		EventTime:  metav1.NewMicroTime(now),
		Regarding: corev1.ObjectReference{
			APIVersion: platformv1.GroupVersion.String(), Kind: "MetaChannel",
			Namespace: mc.Namespace, Name: mc.Name, UID: mc.UID, ResourceVersion: mc.ResourceVersion,
		},
		Type:                corev1.EventTypeWarning,
		Reason:              reasonOffboarded,
		Action:              "StopServing",
		ReportingController: "platform.omniflowcrm.com/ingest-worker",
		ReportingInstance:   host,
		Note: fmt.Sprintf("Meta reports %s for this channel's business account: the worker stopped serving its webhooks "+
			"(404, nothing stored) until the channel's spec changes", event),
	}
	if err := w.writer.Create(ctx, ev); err != nil {
		return fmt.Errorf("create event for metachannel %s: %w", mc.Name, err)
	}
	return nil
}
