// Package secretwatch watches one Secret by name, the only way the worker's Role lets
// it read Secrets (get, list and watch of named objects, never the namespace's list):
// a field selector on metadata.name.
package secretwatch

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
)

// Informer lists and watches the Secret namespace/name alone. Only the data is read:
// the managed fields are dropped from what is kept. The caller adds its handlers and
// its watch error handler, then runs it.
func Informer(cs kubernetes.Interface, namespace, name string) toolscache.SharedIndexInformer {
	byName := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
	}
	lw := toolscache.NewFilteredListWatchFromClient(cs.CoreV1().RESTClient(), "secrets", namespace, byName)
	inf := toolscache.NewSharedIndexInformer(lw, &corev1.Secret{}, 0, toolscache.Indexers{})
	_ = inf.SetTransform(func(obj any) (any, error) {
		if o, ok := obj.(metav1.Object); ok {
			o.SetManagedFields(nil)
		}
		return obj, nil
	})
	return inf
}
