#!/usr/bin/env bash
# Builds the helm v3 binary from the Go module proxy (release tarballs cannot
# be downloaded here), once, into a cache directory, and prints its path. The
# chart test (hack/chart) runs `helm lint` and `helm template` with it.
#
# `go install module/cmd@version` builds helm against its own go.mod, so
# helm's Kubernetes libraries never enter this repository's go.mod.
#
# Environment:
#   HELM_VERSION     helm release to build (default v3.22.0)
#   HELM_TOOLS_ROOT  cache root (default ~/.local/share/omniflow-tools)
set -euo pipefail

VERSION="${HELM_VERSION:-v3.22.0}"
ROOT="${HELM_TOOLS_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/omniflow-tools}"
DEST="$ROOT/helm-${VERSION}-$(go env GOOS)-$(go env GOARCH)"

if [ ! -x "$DEST/helm" ]; then
	echo "setup-helm: building helm ${VERSION} (this takes a while the first time)" >&2
	mkdir -p "$DEST"
	# Build into a temporary directory and move into place, so that an
	# interrupted build never leaves a broken cached binary. Outside any
	# module, so that this repository's go.mod plays no part.
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	cd "$tmp"
	# Like helm's Makefile: the Kubernetes version `helm template` and `helm
	# lint` assume is that of the client-go helm is built with (else 1.20,
	# which fails charts that require a later one).
	gomod="$(GOFLAGS= go mod download -json "helm.sh/helm/v3@${VERSION}" | sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
	k8s="$(sed -nE 's#^[[:space:]]*k8s.io/client-go v0\.([0-9]+)\..*#\1#p' "$gomod")"
	[ -n "$k8s" ] || { echo "setup-helm: no k8s.io/client-go in $gomod" >&2; exit 1; }
	ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=${VERSION} -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
	for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
		ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s"
	done
	GOFLAGS= GOBIN="$tmp/bin" CGO_ENABLED=0 go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@${VERSION}"
	mv "$tmp/bin/helm" "$DEST/helm"
fi

echo "$DEST/helm"
