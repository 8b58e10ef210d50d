package subjecterasure_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	. "github.com/onsi/gomega"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/internal/subjecterasure"
)

// lists counts the non-watch reads of the namespace's DeletionRequests collection.
type lists struct {
	mu sync.Mutex
	n  int
}

func (l *lists) wrap(path string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodGet && req.URL.Path == path && !strings.Contains(req.URL.RawQuery, "watch=") {
				l.mu.Lock()
				l.n++
				l.mu.Unlock()
			}
			return rt.RoundTrip(req)
		})
	}
}

func (l *lists) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The worker watches its namespace's DeletionRequests: a request the operator accepts is
// carried out within seconds, without the worker listing the requests again and again.
// A request accepted before the Role names its subject waits (nothing erased, status
// untouched) and is carried out within seconds once the grant arrives, with no change on
// the request to announce it.
func TestRunCarriesOutRequestsAsTheyArriveWithoutPolling(t *testing.T) {
	g := NewWithT(t)
	ns := "tenant-watch"
	setup(t, ns)
	st := openStore(t)
	seed(t, st)
	counted := &lists{}
	cfg := workerConfig(t, ns, nil)
	cfg.WrapTransport = counted.wrap("/apis/" + platformv1.GroupVersion.String() + "/namespaces/" + ns + "/deletionrequests")
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	p := &subjecterasure.Processor{
		Client: c, RestConfig: cfg, Namespace: ns, Store: st, Clock: clock.RealClock{}, Log: testr.New(t),
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	// Filed after the worker started, granted at once: done within seconds.
	first := file(t, ns, "watched", bob)
	workerConfig(t, ns, []platformv1.DeletionRequest{*first})
	g.Eventually(func() platformv1.DeletionPhase { return get(t, first).Status.Phase }, 10*time.Second, 50*time.Millisecond).
		Should(Equal(platformv1.DeletionCompleted))
	g.Expect(exported(t, st, bob)).To(BeEmpty())

	// Accepted before the Role names its subject: it waits.
	early := file(t, ns, "not-granted-yet", alice)
	g.Consistently(func() *platformv1.DeletionRequest { return get(t, early) }, 2*time.Second, 100*time.Millisecond).
		Should(HaveField("Status.Phase", platformv1.DeletionPending))
	g.Expect(get(t, early).Status.Conditions).To(BeEmpty(), "the worker wrote nothing while it could not read the subject")
	g.Expect(exported(t, st, alice)).To(HaveLen(4), "nothing erased before the subject was readable")
	workerConfig(t, ns, []platformv1.DeletionRequest{*first, *early})
	granted := time.Now()
	g.Eventually(func() platformv1.DeletionPhase { return get(t, early).Status.Phase }, 30*time.Second, 100*time.Millisecond).
		Should(Equal(platformv1.DeletionCompleted))
	t.Logf("carried out %s after the grant", time.Since(granted).Round(time.Millisecond))
	g.Expect(exported(t, st, alice)).To(BeEmpty())

	// One list to start the watch at most (none where the API server streams the
	// initial state through the watch); everything else came through the watch.
	g.Expect(counted.count()).To(BeNumerically("<=", 1), "DeletionRequests listed outside the watch")
}
