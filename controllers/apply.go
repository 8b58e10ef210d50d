package controllers

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// applyIfChanged server-side-applies desired unless the fields this operator
// already owns on the live object are equal to it. A no-op apply is still a
// write request; skipping it keeps an unchanged tenant at zero writes and
// the API server's load flat however often we resync.
//
// Equal means the same digest (appliedDigest: the JSON of the apply
// configurations, quantities in canonical form). For a live object read from
// the cache, the digest of the fields it owns was taken by the cache's
// transform from the full object and the object trimmed (cache_digest.go);
// any other live object (a kind not registered in digestedKinds) is
// extracted here, with extract, the same way. A field edited by hand is no
// longer the operator's, or no longer its value: the digests differ and the
// object is applied again.
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
	case appliedAsDesired(live, desired, extract):
		return false, nil
	}
	if err := c.Apply(ctx, desired, client.FieldOwner(fieldOwner), client.ForceOwnership); err != nil {
		return false, fmt.Errorf("apply: %w", err)
	}
	return created, nil
}

// appliedAsDesired reports whether the fields the operator owns on live are
// desired. Whatever cannot be read counts as different: an apply too many
// is safe, one skipped would leave a hand edit in place.
func appliedAsDesired[T client.Object, AC any](live T, desired AC, extract func(T, string) (AC, error)) bool {
	want, err := appliedDigest(desired)
	if err != nil {
		return false
	}
	if got, ok := cachedDigest(live); ok {
		return got == want
	}
	current, err := extract(live, fieldOwner)
	if err != nil {
		return false
	}
	got, err := appliedDigest(current)
	return err == nil && got == want
}
