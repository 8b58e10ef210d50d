package controllers_test

import (
	"context"
	"testing"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/events"

	"github.com/omniflowcrm/omniflow-operator/controllers"
)

// notesAbout lists the notes of the Events regarding the ConfigMap name,
// with the series count of each (1 for a single Event).
func notesAbout(g Gomega, name string) map[string]int32 {
	var evs eventsv1.EventList
	g.Expect(k8s.List(context.Background(), &evs)).To(Succeed())
	out := map[string]int32{}
	for _, e := range evs.Items {
		if e.Regarding.Kind == "ConfigMap" && e.Regarding.Name == name {
			out[e.Note] = 1
			if e.Series != nil {
				out[e.Note] = e.Series.Count
			}
		}
	}
	return out
}

func TestWarningsWithDifferentNotesAreNeverFoldedIntoOneEvent(t *testing.T) {
	g := NewWithT(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, err := kubernetes.NewForConfig(restCfg)
	g.Expect(err).NotTo(HaveOccurred())
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	b.StartRecordingToSink(ctx.Done())
	defer b.Shutdown()
	raw := b.NewRecorder(scheme, "events-test")

	newCM := func(name string) *corev1.ConfigMap {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
		g.Expect(k8s.Create(ctx, cm)).To(Succeed())
		return cm
	}

	// The premise: the plain recorder keeps the first note and counts the
	// second Warning as a repetition of it.
	folded := newCM("events-folded")
	raw.Eventf(folded, nil, corev1.EventTypeWarning, "StepFailed", "Erase", "step one failed")
	g.Eventually(func(g Gomega) { g.Expect(notesAbout(g, folded.Name)).To(HaveLen(1)) }, timeout, interval).Should(Succeed())
	raw.Eventf(folded, nil, corev1.EventTypeWarning, "StepFailed", "Erase", "step two failed")
	g.Eventually(func(g Gomega) {
		g.Expect(notesAbout(g, folded.Name)).To(Equal(map[string]int32{"step one failed": 2}))
	}, timeout, interval).Should(Succeed())

	// The operator's recorder: each distinct Warning is its own Event; a true
	// repetition still joins a series.
	distinct := newCM("events-distinct")
	rec := controllers.DistinctWarnings(raw)
	rec.Eventf(distinct, nil, corev1.EventTypeWarning, "StepFailed", "Erase", "step %s failed", "one")
	g.Eventually(func(g Gomega) { g.Expect(notesAbout(g, distinct.Name)).To(HaveLen(1)) }, timeout, interval).Should(Succeed())
	rec.Eventf(distinct, nil, corev1.EventTypeWarning, "StepFailed", "Erase", "step %s failed", "two")
	rec.Eventf(distinct, nil, corev1.EventTypeWarning, "StepFailed", "Erase", "step %s failed", "two")
	g.Eventually(func(g Gomega) {
		g.Expect(notesAbout(g, distinct.Name)).To(Equal(map[string]int32{"step one failed": 1, "step two failed": 2}))
	}, timeout, interval).Should(Succeed())
}
