// Command apidocs writes docs/api-reference.md, the API reference of every
// kind, from the CRDs that controller-gen generates from the Go types in
// api/v1alpha1 (config/crd/bases). The CRD schemas carry exactly what the API
// server enforces and what `kubectl explain` prints (the doc comments,
// defaults, enums, patterns, bounds, CEL rules, printer columns and short
// names), so the reference cannot say more or less than the cluster does.
// `make manifests` runs it after controller-gen, and a test fails when the
// committed reference is stale.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	crds := flag.String("crds", "config/crd/bases", "directory of the generated CRDs")
	out := flag.String("out", "docs/api-reference.md", "file the reference is written to")
	flag.Parse()
	data, err := renderDir(*crds)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
	if err := os.WriteFile(*out, data, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "apidocs:", err)
		os.Exit(1)
	}
}
