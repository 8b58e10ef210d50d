// Command chart writes the parts of the Helm chart in charts/omniflow-operator
// that come from the kustomize configuration (CRDs, RBAC, admission policies,
// Service, Namespace, Prometheus objects), so that the two never disagree:
// `make chart` runs it, and a test fails when the committed chart is out of
// date. The Deployment template and values.yaml are written by hand; the tests
// render them with the real helm and compare with config/.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	root := "."
	if len(os.Args) > 1 {
		root = os.Args[1]
	}
	files, err := render(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chart:", err)
		os.Exit(1)
	}
	for name, data := range files {
		path := filepath.Join(root, chartDir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "chart:", err)
			os.Exit(1)
		}
	}
}
