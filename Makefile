# Omniflow operator. `make help` lists the targets.

IMG ?= ghcr.io/omniflowcrm/omniflow-operator:dev
# The tools are Go tools pinned in go.mod: nothing is downloaded but modules.
CONTROLLER_GEN ?= go tool controller-gen
LOCALBIN ?= $(CURDIR)/bin
KUSTOMIZE ?= $(LOCALBIN)/kustomize
KUBECTL ?= kubectl
CONTAINER_TOOL ?= docker
GO_TEST_FLAGS ?= -race -count=1

SHELL = /usr/bin/env bash -o pipefail
.SHELLFLAGS = -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "\nUsage:\n  make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate the CRDs and the operator's RBAC role from the Go markers, and the API reference (docs/api-reference.md) from the CRDs.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./..." output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	go run ./hack/apidocs

.PHONY: generate
generate: ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run go fmt.
	go fmt ./...

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: ## Run golangci-lint with .golangci.yml (builds the pinned release the first time).
	@bin="$${GOLANGCI_LINT:-$$(hack/setup-golangci-lint.sh)}"; \
	"$$bin" run ./...

.PHONY: envtest
envtest: ## Build (first time only) kube-apiserver, etcd and kube-controller-manager for the tests; prints their directory.
	@hack/setup-envtest.sh

.PHONY: helm
helm: ## Build (first time only) the helm binary the chart tests run; prints its path.
	@hack/setup-helm.sh

.PHONY: postgres
postgres: ## Start (installing it the first time) the tests' own PostgreSQL server; prints its DSN. `hack/setup-postgres.sh stop` stops it.
	@hack/setup-postgres.sh

.PHONY: test
test: manifests generate fmt vet ## Run all tests against a real API server and PostgreSQL server, the chart through helm (builds/installs them the first time).
	@assets="$${KUBEBUILDER_ASSETS:-$$(hack/setup-envtest.sh)}"; \
	echo "KUBEBUILDER_ASSETS=$$assets"; \
	HELM_BIN="$${HELM_BIN:-$$(hack/setup-helm.sh)}"; \
	echo "HELM_BIN=$$HELM_BIN"; \
	export HELM_BIN; \
	OMNIFLOW_TEST_POSTGRES_DSN="$${OMNIFLOW_TEST_POSTGRES_DSN:-$$(hack/setup-postgres.sh)}"; \
	export OMNIFLOW_TEST_POSTGRES_DSN; \
	KUBEBUILDER_ASSETS="$$assets" go test $(GO_TEST_FLAGS) ./...

.PHONY: demo
demo: ## The whole product on a local control plane, step by step (builds the envtest binaries the first time).
	@assets="$${KUBEBUILDER_ASSETS:-$$(hack/setup-envtest.sh)}"; \
	KUBEBUILDER_ASSETS="$$assets" go run ./hack/demo

.PHONY: chart
chart: manifests ## Regenerate the parts of the Helm chart (charts/omniflow-operator) that come from config/.
	go run ./hack/chart

.PHONY: bench
bench: ## Load-benchmark the ingest worker against a verify-only baseline, through the front door against directly, with media deliveries against text, and its fetch throughput against a plain download, side by side (not part of make test).
	hack/bench.sh

.PHONY: bench-erasure
bench-erasure: ## Erasure at scale on both backends: one person vs one delete, ingest p99 under erasure and retention, tenant erasure, query plans (not part of make test).
	@OMNIFLOW_TEST_POSTGRES_DSN="$${OMNIFLOW_TEST_POSTGRES_DSN:-$$(hack/setup-postgres.sh)}"; \
	export OMNIFLOW_TEST_POSTGRES_DSN; \
	go run ./hack/bench-erasure $(BENCH_ERASURE_FLAGS)

.PHONY: bench-operator
bench-operator: ## Measure the operator at scale: N Tenants (TENANTS, default 1000) on a real API server with an audit log, the manager as a process (not part of make test).
	@assets="$${KUBEBUILDER_ASSETS:-$$(hack/setup-envtest.sh)}"; \
	KUBEBUILDER_ASSETS="$$assets" go run ./hack/benchoperator --tenants=$${TENANTS:-1000} --window=$${WINDOW:-120s} --manager-args="$${MANAGER_ARGS:-}" --manager-env="$${MANAGER_ENV:-}"

##@ Build

.PHONY: build
build: manifests generate fmt vet ## Build the manager, ingest-worker and frontdoor binaries into bin/.
	CGO_ENABLED=0 go build -o bin/manager ./cmd/manager
	@if [ -d cmd/ingest-worker ]; then CGO_ENABLED=0 go build -o bin/ingest-worker ./cmd/ingest-worker; fi
	CGO_ENABLED=0 go build -o bin/frontdoor ./cmd/frontdoor

.PHONY: run
run: manifests generate fmt vet ## Run the operator against the cluster of your current kubeconfig.
	go run ./cmd/manager --metrics-bind-address=:8080 --metrics-secure=false --health-probe-bind-address=:8081

.PHONY: docker-build
docker-build: ## Build the image holding both binaries (needs a container engine).
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the image.
	$(CONTAINER_TOOL) push $(IMG)

##@ Deployment

ifndef ignore-not-found
  ignore-not-found = false
endif

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRDs into the cluster of your current kubeconfig.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRDs. This deletes every Tenant and with them all tenant data: think twice.
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: install $(KUSTOMIZE) ## Deploy the operator with image IMG (installs the CRDs first).
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator. The CRDs, and so the Tenants and their data, stay.
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

##@ Tools

$(KUSTOMIZE): go.mod
	GOBIN=$(LOCALBIN) go install sigs.k8s.io/kustomize/kustomize/v5

.PHONY: kustomize
kustomize: $(KUSTOMIZE) ## Build kustomize (the version pinned in go.mod) into bin/.
