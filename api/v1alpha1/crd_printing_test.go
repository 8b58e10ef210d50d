package v1alpha1_test

import (
	"os"
	"path/filepath"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

// Short names of kinds that clusters commonly run: Kubernetes itself,
// Istio, Argo CD, Flux, cert-manager, Knative, the Prometheus Operator.
// kubectl resolves a short name to whichever CRD it meets first.
var commonShortNames = map[string]string{
	"po": "Pod", "svc": "Service", "deploy": "Deployment", "ds": "DaemonSet", "rs": "ReplicaSet",
	"sts": "StatefulSet", "cm": "ConfigMap", "ns": "Namespace", "no": "Node", "pv": "PersistentVolume",
	"pvc": "PersistentVolumeClaim", "sa": "ServiceAccount", "ep": "Endpoints", "ev": "Event",
	"ing": "Ingress", "netpol": "NetworkPolicy", "pdb": "PodDisruptionBudget", "hpa": "HorizontalPodAutoscaler",
	"crd": "CustomResourceDefinition", "crds": "CustomResourceDefinition", "cj": "CronJob", "csr": "CertificateSigningRequest",
	"rc": "ReplicationController", "limits": "LimitRange", "quota": "ResourceQuota", "pc": "PriorityClass", "sc": "StorageClass",
	"dr": "Istio DestinationRule", "vs": "Istio VirtualService", "gw": "Istio Gateway", "se": "Istio ServiceEntry",
	"pa": "Istio PeerAuthentication", "ra": "Istio RequestAuthentication", "ap": "Istio AuthorizationPolicy",
	"we": "Istio WorkloadEntry", "wg": "Istio WorkloadGroup", "ef": "Istio EnvoyFilter", "tm": "Istio Telemetry",
	"app": "Argo CD Application", "apps": "Argo CD Application", "appproj": "Argo CD AppProject", "appset": "Argo CD ApplicationSet",
	"ks": "Flux Kustomization", "hr": "Flux HelmRelease", "gitrepo": "Flux GitRepository", "helmrepo": "Flux HelmRepository",
	"cert": "cert-manager Certificate", "certs": "cert-manager Certificate", "cr": "cert-manager CertificateRequest",
	"ksvc": "Knative Service", "kroute": "Knative Route", "kcfg": "Knative Configuration", "rev": "Knative Revision",
	"smon": "Prometheus Operator ServiceMonitor", "pmon": "Prometheus Operator PodMonitor", "prom": "Prometheus",
}

// Printer columns print: a date column shows an age, which kubectl cannot
// show for a future time (it prints <invalid>), so only past times may be
// dates; short names collide with no common kind; all kinds share the
// category omniflow.
func TestPrinterColumnsPrintAndShortNamesAreOurs(t *testing.T) {
	pastTimes := map[string]bool{".metadata.creationTimestamp": true, ".status.completedAt": true}
	files, err := filepath.Glob(filepath.Join("..", "..", "config", "crd", "bases", "*.yaml"))
	if err != nil || len(files) != 4 {
		t.Fatalf("want the 4 generated CRDs, got %v (%v)", files, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var crd apiextensionsv1.CustomResourceDefinition
		if err := yaml.UnmarshalStrict(data, &crd); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, v := range crd.Spec.Versions {
			for _, c := range v.AdditionalPrinterColumns {
				if c.Type == "date" && !pastTimes[c.JSONPath] {
					t.Errorf("%s: column %s (%s) is a date: a future time prints <invalid>", crd.Name, c.Name, c.JSONPath)
				}
			}
		}
		for _, s := range crd.Spec.Names.ShortNames {
			if kind, ok := commonShortNames[s]; ok {
				t.Errorf("%s: short name %s is %s's", crd.Name, s, kind)
			}
		}
		if len(crd.Spec.Names.Categories) != 1 || crd.Spec.Names.Categories[0] != "omniflow" {
			t.Errorf("%s: categories %v, want [omniflow]", crd.Name, crd.Spec.Names.Categories)
		}
	}
}
