#!/usr/bin/env bash
# Builds golangci-lint from the Go module proxy (release tarballs cannot be
# downloaded here), once, into a cache directory, and prints its path.
# `make lint` runs it with .golangci.yml.
#
# `go install module/cmd@version` outside any module builds golangci-lint
# against its own go.mod, so its dependencies never enter this repository's
# go.mod.
#
# Environment:
#   GOLANGCI_LINT_VERSION   release to build (default v2.15.0)
#   GOLANGCI_LINT_TOOLS_ROOT cache root (default ~/.local/share/omniflow-tools)
set -euo pipefail

VERSION="${GOLANGCI_LINT_VERSION:-v2.15.0}"
ROOT="${GOLANGCI_LINT_TOOLS_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/omniflow-tools}"
DEST="$ROOT/golangci-lint-${VERSION}-$(go env GOOS)-$(go env GOARCH)"

if [ ! -x "$DEST/golangci-lint" ]; then
	echo "setup-golangci-lint: building golangci-lint ${VERSION} (this takes a few minutes the first time)" >&2
	mkdir -p "$DEST"
	# Build into a temporary directory and move into place, so that an
	# interrupted build never leaves a broken cached binary. Outside any
	# module, so that this repository's go.mod plays no part.
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	cd "$tmp"
	GOFLAGS= GOBIN="$tmp/bin" go install "github.com/golangci/golangci-lint/v2/cmd/golangci-lint@${VERSION}"
	mv "$tmp/bin/golangci-lint" "$DEST/golangci-lint"
fi

echo "$DEST/golangci-lint"
