package controllers

import (
	"reflect"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
}

// maxInterned bounds what the interner remembers. It only ever holds strings
// of the objects the cache selects (about 15 distinct ones per tenant), so it
// stays below this at 10,000 tenants; should it ever fill (tenants come and
// go over a long life), it starts over: objects keep the copies they share,
// and sharing resumes.
const maxInterned = 1 << 18

var cacheInterner = newInterner(maxInterned)

func newInterner(limit int) *interner {
	return &interner{max: limit, strs: map[string]string{}}
}

// str returns the shared copy of s. The caller holds mu.
func (in *interner) str(s string) string {
	if s == "" {
		return ""
	}
	if c, ok := in.strs[s]; ok {
		return c
	}
	if len(in.strs) >= in.max {
		in.strs = map[string]string{}
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
}

func (in *interner) walk(v reflect.Value) {
	switch v.Kind() {
	case reflect.String:
		if v.CanSet() {
			v.SetString(in.str(v.String()))
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
