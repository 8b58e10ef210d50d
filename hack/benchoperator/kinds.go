package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	platformv1 "github.com/omniflowcrm/omniflow-operator/api/v1alpha1"
	"github.com/omniflowcrm/omniflow-operator/controllers"
	"github.com/omniflowcrm/omniflow-operator/internal/testenv"
)

// kindCost is what one cached kind costs in memory: the live heap of its
// objects decoded as the cache decodes them, before and after the cache's
// transform.
type kindCost struct {
	kind        string
	objects     int
	raw, cached uint64 // bytes
}

// cachedKinds are the kinds in the operator's cache with the selector the
// cache lists them with (controllers.CacheOptions); Secrets are cached as
// metadata only.
func cachedKinds() []struct {
	gvk      schema.GroupVersionKind
	selector labels.Selector
	metadata bool
} {
	managed := labels.SelectorFromSet(labels.Set{platformv1.LabelManagedBy: platformv1.ManagedByValue})
	tenantLabelled, _ := labels.Parse(platformv1.LabelTenant)
	type k = struct {
		gvk      schema.GroupVersionKind
		selector labels.Selector
		metadata bool
	}
	out := []k{
		{platformv1.GroupVersion.WithKind("Tenant"), labels.Everything(), false},
		{schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, tenantLabelled, false},
		{schema.GroupVersionKind{Version: "v1", Kind: "Secret"}, tenantLabelled, true},
	}
	for _, gvk := range namespacedKinds {
		if gvk.Kind != "Secret" {
			out = append(out, k{gvk, managed, false})
		}
	}
	return out
}

func measureKinds(ctx context.Context, c client.Client) ([]kindCost, error) {
	scheme := testenv.Scheme()
	var out []kindCost
	for _, k := range cachedKinds() {
		listGVK := k.gvk.GroupVersion().WithKind(k.gvk.Kind + "List")
		newList := func() (client.ObjectList, error) {
			if k.metadata {
				l := &metav1.PartialObjectMetadataList{}
				l.SetGroupVersionKind(listGVK)
				return l, nil
			}
			o, err := scheme.New(listGVK)
			if err != nil {
				return nil, err
			}
			return o.(client.ObjectList), nil
		}
		list, err := newList()
		if err != nil {
			return nil, err
		}
		if err := c.List(ctx, list, client.MatchingLabelsSelector{Selector: k.selector}); err != nil {
			return nil, fmt.Errorf("list %s: %w", k.gvk.Kind, err)
		}
		data, err := json.Marshal(list)
		if err != nil {
			return nil, err
		}
		// Several copies, so that the figure stands out of the noise of
		// the process's other allocations.
		const copies = 4
		decode := func(transform bool) (uint64, int, error) {
			var n int
			var decodeErr error
			cost := liveHeap(func() any {
				var lists []client.ObjectList
				for range copies {
					l, err := newList()
					if err != nil {
						decodeErr = err
						return nil
					}
					if err := json.Unmarshal(data, l); err != nil {
						decodeErr = err
						return nil
					}
					n = meta.LenList(l)
					if transform {
						decodeErr = meta.EachListItem(l, func(o kruntime.Object) error {
							_, err := controllers.CacheTransform(o)
							return err
						})
					}
					lists = append(lists, l)
				}
				return lists
			})
			return cost / copies, n, decodeErr
		}
		raw, n, err := decode(false)
		if err != nil {
			return nil, err
		}
		cached, _, err := decode(true)
		if err != nil {
			return nil, err
		}
		out = append(out, kindCost{kind: k.gvk.Kind, objects: n, raw: raw, cached: cached})
	}
	return out, nil
}

// liveHeap is the heap that what build returns keeps alive.
func liveHeap(build func() any) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	v := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(v)
	if after.HeapAlloc < before.HeapAlloc {
		return 0
	}
	return after.HeapAlloc - before.HeapAlloc
}

func printKinds(costs []kindCost) {
	fmt.Println()
	fmt.Println("| cached kind | objects | heap as listed | heap as cached (transform) | per object cached |")
	fmt.Println("|---|---|---|---|---|")
	for _, k := range costs {
		per := uint64(0)
		if k.objects > 0 {
			per = k.cached / uint64(k.objects)
		}
		fmt.Printf("| %s | %d | %.1f MiB | %.1f MiB | %.1f KiB |\n", k.kind, k.objects,
			float64(k.raw)/(1<<20), float64(k.cached)/(1<<20), float64(per)/1024)
	}
}
