package controllers

import (
	"crypto/sha256"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"unsafe"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// interner hands out one shared copy of each string the cache meets. The
// objects of 10,000 tenants repeat the same label keys and values, the same
// owner's kind and API version, the same namespace name and owner uid on
// every object of a tenant, the same verbs, image and paths in every tenant's
// Role and Deployment: decoded from the API server, each object carries its
// own copy of all of them. Sharing one copy saves about a third of what the
// cache holds (docs/operator-scale.md). It is safe because the cache never
// hands out its objects (reads deep-copy them, event handlers only read) and
// strings are immutable.
type interner struct {
	mu   sync.Mutex
	max  int
	strs map[string]string
	// metas holds the shared label maps and owner reference lists, by
	// content (metaKey).
	metas map[string]any
}

// maxInterned bounds what the interner remembers. It only ever holds strings
// of the objects the cache selects (about 15 distinct ones per tenant), so it
// stays below this at 10,000 tenants; should it ever fill (tenants come and
// go over a long life), it starts over: objects keep the copies they share,
// and sharing resumes.
const maxInterned = 1 << 18

var cacheInterner = newInterner(maxInterned)

func newInterner(limit int) *interner {
	return &interner{max: limit, strs: map[string]string{}, metas: map[string]any{}}
}

// str returns the shared copy of s. The caller holds mu.
func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := in.strs[s]; ok {
		return c
	}
	if len(in.strs)+len(in.metas) >= in.max {
		in.strs, in.metas = map[string]string{}, map[string]any{}
	}
	in.strs[s] = s
	return s
}

var (
	objectMetaType = reflect.TypeFor[metav1.ObjectMeta]()
)

// object replaces every repeated string of the object obj points to by its
// shared copy: metadata (name, namespace, labels, annotations, finalizers,
// owner references, managedFields and their field sets) and spec and status
// alike (a Role's verbs, a worker's image and environment names, a pod
// template's labels). What is unique to one object and never repeats (its
// uid and resourceVersion) is left alone, so as not to fill the interner.
// Unexported fields (timestamps, quantities) and maps of other than strings
// are left as they are.
func (in *interner) object(obj any) {
	v := reflect.ValueOf(obj)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.walk(v.Elem())
	if o, ok := obj.(metav1.Object); ok {
		in.shareMeta(o)
	}
}

// shareMeta makes o share its labels and owner references with the cached
// objects that have the same: every object of a tenant's worker carries
// the same labels and the same owner reference (the Tenant), and a Go map
// of a few entries costs about 300 bytes before its strings. Safe for the
// reason strings are: the cache never changes its objects in place, and
// its reads return deep copies. The caller holds mu.
func (in *interner) shareMeta(o metav1.Object) {
	if l := o.GetLabels(); len(l) > 0 {
		if c := shared(in, metaKey('l', l, nil), l); reflect.ValueOf(c).UnsafePointer() != reflect.ValueOf(l).UnsafePointer() {
			o.SetLabels(c)
		}
	}
	if refs := o.GetOwnerReferences(); len(refs) > 0 {
		if c := shared(in, metaKey('o', nil, refs), refs); &c[0] != &refs[0] {
			o.SetOwnerReferences(c)
		}
	}
}

// same reports whether a and b are one copy (not merely equal strings).
func same(a, b string) bool {
	// Only the two pointers are compared; nothing is read or written through them.
	return len(a) == len(b) && (len(a) == 0 || unsafe.StringData(a) == unsafe.StringData(b)) //nolint:gosec // G103: pointer identity only, no access through unsafe
}

// shared returns the value remembered under key, or remembers v.
func shared[T any](in *interner, key string, v T) T {
	if c, ok := in.metas[key].(T); ok {
		return c
	}
	if len(in.strs)+len(in.metas) >= in.max {
		in.strs, in.metas = map[string]string{}, map[string]any{}
	}
	in.metas[key] = v
	return v
}

// metaKey identifies a label map or an owner reference list by content: the
// SHA-256 of its full spelling (NUL cannot occur in a label or a name), so
// that what the interner remembers per tenant is 32 bytes, not the spelling.
func metaKey(kind byte, labels map[string]string, refs []metav1.OwnerReference) string {
	b := sha256.New()
	b.Write([]byte{kind})
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.Write([]byte("\x00" + k + "\x00" + labels[k]))
	}
	for _, r := range refs {
		b.Write([]byte("\x00" + r.APIVersion + "\x00" + r.Kind + "\x00" + r.Name + "\x00" + string(r.UID) + "\x00" +
			strconv.FormatBool(ptr.Deref(r.Controller, false)) + strconv.FormatBool(r.Controller != nil) +
			strconv.FormatBool(ptr.Deref(r.BlockOwnerDeletion, false)) + strconv.FormatBool(r.BlockOwnerDeletion != nil)))
	}
	return string(b.Sum(nil))
}

func (in *interner) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		// Written only when it is not the shared copy already: an object passed
		// again (client-go may transform an object twice) is read, never
		// written, while readers of the cache may be reading it.
		if c := in.str(v.String()); v.CanSet() && !same(c, v.String()) {
			v.SetString(c)
		}
	case reflect.Pointer:
		if !v.IsNil() {
			in.walk(v.Elem())
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || (t == objectMetaType && (f.Name == "UID" || f.Name == "ResourceVersion")) {
				continue
			}
			in.walk(v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			// Bytes: a ConfigMap's binary data, a managedFields entry's
			// field set. The operator's apply entry would repeat from tenant
			// to tenant but for the owner's uid it names: not worth a copy.
			return
		}
		for i := range v.Len() {
			in.walk(v.Index(i))
		}
	case reflect.Map:
		t := v.Type()
		if v.IsNil() || !v.CanSet() || t.Key().Kind() != reflect.String || t.Elem().Kind() != reflect.String {
			return
		}
		interned := true
		for iter := v.MapRange(); iter.Next() && interned; {
			k, e := iter.Key().String(), iter.Value().String()
			interned = same(in.str(k), k) && same(in.str(e), e)
		}
		if interned {
			return // an object passed again: left as it is (see above)
		}
		// Map entries cannot be changed in place: build the map again.
		m := reflect.MakeMapWithSize(t, v.Len())
		iter := v.MapRange()
		for iter.Next() {
			k, e := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
			k.SetString(in.str(iter.Key().String()))
			e.SetString(in.str(iter.Value().String()))
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	}
}
