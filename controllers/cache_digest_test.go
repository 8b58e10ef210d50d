package controllers

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// digestLive is a worker Deployment as the API server sends it after the
// operator applied its image and CPU request (the API server writes
// quantities in canonical form), with another manager's entry beside.
func digestLive(image, ownedBy string) *appsv1.Deployment {
	owned := `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"worker\"}":{".":{},"f:name":{},` +
		`"f:image":{},"f:resources":{"f:requests":{"f:cpu":{}}}}}}}}}`
	edited := `{}`
	if ownedBy != fieldOwner {
		// The image was edited by hand: kubectl took the field over.
		owned = `{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"worker\"}":{".":{},"f:name":{},` +
			`"f:resources":{"f:requests":{"f:cpu":{}}}}}}}}}`
		edited = `{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"worker\"}":{"f:image":{}}}}}}}`
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name: "omniflow-worker", Namespace: "tenant-a", Generation: 3,
			Labels: map[string]string{"app": "worker", "example.com/other": "kept"},
			ManagedFields: []metav1.ManagedFieldsEntry{
				{Manager: fieldOwner, Operation: metav1.ManagedFieldsOperationApply, APIVersion: "apps/v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(owned)},
				{Manager: "kubectl-edit", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "apps/v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(edited)},
			},
		},
		Spec: appsv1.DeploymentSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "worker", Image: image,
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m")}},
		}}}}},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 3, AvailableReplicas: 1},
	}
}

func digestDesired(image, cpu string) *appsv1ac.DeploymentApplyConfiguration {
	return appsv1ac.Deployment("omniflow-worker", "tenant-a").WithLabels(map[string]string{"app": "worker"}).
		WithSpec(appsv1ac.DeploymentSpec().WithTemplate(corev1ac.PodTemplateSpec().WithSpec(corev1ac.PodSpec().WithContainers(
			corev1ac.Container().WithName("worker").WithImage(image).
				WithResources(corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}))))))
}

// The cache's digest gives the verdict extracting from the full object
// gives: equal for the same fields (also for another spelling of the same
// quantity), different for a changed desired object and for a hand edit,
// whether the edit took the field over or only changed its value.
func TestCachedDigestComparesAsTheAppliedFields(t *testing.T) {
	t.Parallel()
	noExtract := func(*appsv1.Deployment, string) (*appsv1ac.DeploymentApplyConfiguration, error) {
		t.Error("a cached Deployment was extracted again; the digest should have answered")
		return nil, nil
	}
	for _, tc := range []struct {
		name      string
		live      *appsv1.Deployment
		desired   *appsv1ac.DeploymentApplyConfiguration
		asDesired bool
	}{
		{"unchanged", digestLive("img:v1", fieldOwner), digestDesired("img:v1", "500m"), true},
		{"the same quantity spelled otherwise", digestLive("img:v1", fieldOwner), digestDesired("img:v1", "0.5"), true},
		{"another quantity desired", digestLive("img:v1", fieldOwner), digestDesired("img:v1", "600m"), false},
		{"another image desired", digestLive("img:v1", fieldOwner), digestDesired("img:v2", "500m"), false},
		{"image edited by hand (kubectl edit takes the field)", digestLive("img:hand", "kubectl-edit"), digestDesired("img:v1", "500m"), false},
		{"image value changed under the operator's entry", digestLive("img:hand", fieldOwner), digestDesired("img:v1", "500m"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := appliedAsDesired(tc.live.DeepCopy(), tc.desired, appsv1ac.ExtractDeployment); got != tc.asDesired {
				t.Errorf("extracted from the full object: as desired = %v, want %v", got, tc.asDesired)
			}
			out, err := CacheTransform(tc.live.DeepCopy())
			if err != nil {
				t.Fatal(err)
			}
			cached := out.(*appsv1.Deployment)
			if _, ok := cachedDigest(cached); !ok {
				t.Fatalf("no digest on the cached Deployment: %+v", cached.ManagedFields)
			}
			if got := appliedAsDesired(cached, tc.desired, noExtract); got != tc.asDesired {
				t.Errorf("from the cache's digest: as desired = %v, want %v", got, tc.asDesired)
			}
		})
	}
}

// The cached Deployment keeps what its readers read (metadata, status) and
// nothing of its spec; passing the transform again changes nothing; and the
// digest entry is never mistaken for a field set.
func TestCacheTransformTrimsADigestedKind(t *testing.T) {
	t.Parallel()
	out, err := CacheTransform(digestLive("img:v1", fieldOwner))
	if err != nil {
		t.Fatal(err)
	}
	dep := out.(*appsv1.Deployment)
	if len(dep.Spec.Template.Spec.Containers) != 0 {
		t.Errorf("spec kept: %+v", dep.Spec)
	}
	if dep.Generation != 3 || dep.Status.AvailableReplicas != 1 || dep.Labels["example.com/other"] != "kept" {
		t.Errorf("metadata or status lost: %+v %+v", dep.ObjectMeta, dep.Status)
	}
	if len(dep.ManagedFields) != 1 || dep.ManagedFields[0].FieldsType != digestFieldsType {
		t.Errorf("managedFields = %+v, want only the digest entry", dep.ManagedFields)
	}
	first, _ := cachedDigest(dep)
	again, err := CacheTransform(dep)
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := cachedDigest(again.(*appsv1.Deployment)); d != first {
		t.Errorf("digest changed on a second pass: %s, then %s", first, d)
	}
	if _, err := appsv1ac.ExtractDeployment(dep, fieldOwner); err == nil {
		t.Errorf("the digest entry was read as a field set")
	}

	// A claim keeps the volume it is bound to and its phase.
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: DataClaimName, Namespace: "tenant-a"},
		Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: "pv-1", AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
	}
	out, err = CacheTransform(claim)
	if err != nil {
		t.Fatal(err)
	}
	if c := out.(*corev1.PersistentVolumeClaim); c.Spec.VolumeName != "pv-1" || c.Status.Phase != corev1.ClaimBound || c.Spec.AccessModes != nil {
		t.Errorf("claim cached as %+v %+v, want its volume name and status only", c.Spec, c.Status)
	}
}
