// Package erasure_test proves the 14-day promise against a real control
// plane: kube-apiserver and etcd from envtest, plus kube-controller-manager
// for what envtest lacks (namespace deletion, garbage collection, volume
// binding and protection), with the operator's manager driven by a fake
// clock and restarted at will.
package erasure_test
