package testenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// MountedArgs plays the kubelet for one container of a pod template in namespace ns,
// so that a test or the demo can run the real binary as the operator configured it:
// the Secrets its volumes hold (secret and projected volumes) are written under root
// at their mount paths, and the container's arguments are returned with the path of
// every --*-file=PATH flag moved under root.
func MountedArgs(ctx context.Context, c client.Client, ns string, pod *corev1.PodSpec, container *corev1.Container, root string) ([]string, error) {
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	write := func(mount, secret string, items []corev1.KeyToPath) error {
		var s corev1.Secret
		if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: secret}, &s); err != nil {
			return fmt.Errorf("secret %s of mount %s: %w", secret, mount, err)
		}
		if items == nil {
			for k := range s.Data {
				items = append(items, corev1.KeyToPath{Key: k, Path: k})
			}
		}
		for _, it := range items {
			p := filepath.Join(root, mount, it.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
				return err
			}
			if err := os.WriteFile(p, s.Data[it.Key], 0o600); err != nil {
				return err
			}
		}
		return nil
	}
	for _, m := range container.VolumeMounts {
		v := volumes[m.Name]
		var err error
		switch {
		case v.Secret != nil:
			err = write(m.MountPath, v.Secret.SecretName, v.Secret.Items)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && err == nil {
					err = write(m.MountPath, src.Secret.Name, src.Secret.Items)
				}
			}
		}
		if err != nil {
			return nil, err
		}
	}
	args := append([]string{}, container.Args...)
	for i, a := range args {
		if flag, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(flag, "--") && strings.HasSuffix(flag, "-file") {
			args[i] = flag + "=" + filepath.Join(root, val)
		}
	}
	return args, nil
}
