package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	"github.com/omniflowcrm/omniflow-operator/internal/clusterkey"
	"github.com/omniflowcrm/omniflow-operator/internal/datakey"
)

// readKeyFile reads a tenant's key ring from a file holding its Secret's data as JSON,
// the values base64-encoded as Kubernetes shows them: the output of
// `kubectl get secret NAME -n NS -o jsonpath='{.data}'`, or the whole Secret
// (`-o json`). For an auditor or an offline copy (export), and for a worker without an
// API server (the benchmark). The key material is never logged.
func readKeyFile(path string) (*datakey.Ring, error) {
	b, err := os.ReadFile(path) //nolint:gosec // G304: a path the operator of the command names
	if err != nil {
		return nil, fmt.Errorf("--data-key-file: %w", err)
	}
	var whole struct {
		Data map[string][]byte `json:"data"`
	}
	data := map[string][]byte{}
	if err := json.Unmarshal(b, &whole); err == nil && len(whole.Data) > 0 {
		data = whole.Data
	} else if err := json.Unmarshal(b, &data); err != nil {
		return nil, fmt.Errorf("--data-key-file %s: want the key Secret's data as JSON (kubectl get secret NAME -o jsonpath='{.data}'): %w", path, err)
	}
	ring, err := datakey.Parse(data, nil)
	if err != nil {
		return nil, fmt.Errorf("--data-key-file %s: %w", path, err)
	}
	return ring, nil
}

// watchDataKey starts the watch of the tenant's data key Secret (namespace/name) and
// waits until it is loaded.
func watchDataKey(ctx context.Context, ref string, wait time.Duration, log logr.Logger) (*clusterkey.Watcher, error) {
	ns, name, err := clusterkey.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	rc, err := config.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	w, err := clusterkey.New(clusterkey.Config{RestConfig: rc, Namespace: ns, Name: name, Log: log})
	if err != nil {
		return nil, err
	}
	go func() { _ = w.Run(ctx) }()
	if err := w.WaitLoaded(ctx, wait); err != nil {
		return nil, err
	}
	return w, nil
}

// exportKeys is the key export opens the store with: the key file, else the Secret
// (in a worker's pod, $OMNIFLOW_DATA_KEY_SECRET names it), else none (a store kept in
// clear).
func exportKeys(ctx context.Context, keyFile, secret string, log logr.Logger) (datakey.Source, error) {
	switch {
	case keyFile != "" && secret != "":
		return nil, errors.New("--data-key-file and --data-key-secret: give one")
	case keyFile != "":
		ring, err := readKeyFile(keyFile)
		if err != nil {
			return nil, err
		}
		return datakey.Static{R: ring}, nil
	case secret != "":
		w, err := watchDataKey(ctx, secret, 30*time.Second, log)
		if err != nil {
			return nil, fmt.Errorf("--data-key-secret: key unavailable: %w", err)
		}
		return w, nil
	}
	return nil, nil
}
