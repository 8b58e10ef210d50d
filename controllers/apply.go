package controllers

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applyIfChanged server-side-applies desired unless the fields this operator
// already owns on the live object are equal to it. A no-op apply is still a
// write request; skipping it keeps an unchanged tenant at zero writes and
// the API server's load flat however often we resync.
//
// It reports whether the object was created.
func applyIfChanged[T client.Object, AC runtime.ApplyConfiguration](
	ctx context.Context, c client.Client, key client.ObjectKey, live T, desired AC,
	extract func(T, string) (AC, error),
) (created bool, err error) {
	err = c.Get(ctx, key, live)
	switch {
	case apierrors.IsNotFound(err):
		created = true
	case err != nil:
		return false, fmt.Errorf("get: %w", err)
	case live.GetDeletionTimestamp() != nil:
		// Being deleted (by hand, or by garbage collection): apply would only
		// touch a dying object; its deletion event brings us back to recreate it.
		return false, nil
	default:
		current, err := extract(live, fieldOwner)
		if err == nil && equality.Semantic.DeepEqual(current, desired) {
			return false, nil
		}
	}
	if err := c.Apply(ctx, desired, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply: %w", err)
	}
	return created, nil
}
