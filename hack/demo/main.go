// Command demo shows the whole product on a local control plane: a tenant
// and a WhatsApp channel provisioned by the operator, signed deliveries
// stored by the tenant's worker, one end-user erased on request, and the
// tenant deactivated and erased. `make demo` runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Getenv("KUBEBUILDER_ASSETS")); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}
