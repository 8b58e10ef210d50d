#!/usr/bin/env bash
# Builds the envtest control-plane binaries (kube-apiserver, etcd and
# kube-controller-manager) from the Go module proxy, because release tarballs
# cannot be downloaded here. Prints the directory to use as KUBEBUILDER_ASSETS.
#
# Each binary is built inside a small wrapper module that requires the upstream
# module and replaces every sibling/staging module that upstream's go.mod points
# at a local path with the published version of the same release: `go install
# pkg@version` refuses modules with such replace directives.
#
# Environment:
#   ENVTEST_K8S_VERSION   kube-apiserver/kube-controller-manager version (default 1.37.2)
#   ENVTEST_ETCD_VERSION  etcd version (default 3.6.16)
#   ENVTEST_ASSETS_ROOT   cache root (default ~/.local/share/kubebuilder-envtest/k8s,
#                         the directory controller-runtime's setup-envtest uses)
set -euo pipefail

K8S_VERSION="${ENVTEST_K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ENVTEST_ETCD_VERSION:-3.6.16}"
ROOT="${ENVTEST_ASSETS_ROOT:-${XDG_DATA_HOME:-$HOME/.local/share}/kubebuilder-envtest/k8s}"
OS="$(go env GOOS)"
ARCH="$(go env GOARCH)"
DEST="$ROOT/${K8S_VERSION}-${OS}-${ARCH}"
STAGING_VERSION="v0.${K8S_VERSION#*.}"   # 1.37.2 -> v0.37.2

log() { echo "setup-envtest: $*" >&2; }

# local_replaces GOMOD VERSION: prints "mod=mod@VERSION" for every local-path
# replace directive in GOMOD.
local_replaces() {
	local gomod="$1" version="$2"
	# Lines look like: "	k8s.io/api => ./staging/src/k8s.io/api" or
	# "replace go.etcd.io/etcd/api/v3 => ../api".
	# etcd also "replaces" modules it must never depend on with a path named
	# FORBIDDEN_DEPENDENCY: those are guards, not siblings, so leave them out.
	grep -v FORBIDDEN_DEPENDENCY "$gomod" |
		sed -nE 's#^[[:space:]]*(replace[[:space:]]+)?([^[:space:]]+)[[:space:]]+=>[[:space:]]+\.\.?/.*#\2#p' |
		while read -r mod; do echo "$mod=$mod@$version"; done
}

# build_in_wrapper NAME MODULE VERSION REPLACE_VERSION LDFLAGS PKG...
build_in_wrapper() {
	local name="$1" module="$2" version="$3" replace_version="$4" ldflags="$5"
	shift 5
	local work
	work="$(mktemp -d)"
	trap 'rm -rf "$work"' RETURN
	log "building $name from $module@$version (this takes a while the first time)"
	local gomod
	gomod="$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
	[ -f "$gomod" ] || { log "cannot find go.mod of $module@$version"; return 1; }
	(
		cd "$work"
		go mod init "envtest-build/$name" >/dev/null 2>&1
		go mod edit -require="$module@$version"
		while read -r r; do go mod edit -replace="$r"; done < <(local_replaces "$gomod" "$replace_version")
		{
			echo "//go:build tools"
			echo "package tools"
			for p in "$@"; do echo "import _ \"$p\""; done
		} >tools.go
		GOFLAGS=-mod=mod go mod tidy >/dev/null
		for p in "$@"; do
			CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$DEST/$(basename "$p" | sed 's#^v3$#etcd#')" "$p"
		done
	)
}

mkdir -p "$DEST"

k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	k8s_ldflags+=" -X $pkg.gitVersion=v${K8S_VERSION} -X $pkg.gitMajor=${K8S_VERSION%%.*}"
	minor="${K8S_VERSION#*.}"
	k8s_ldflags+=" -X $pkg.gitMinor=${minor%%.*} -X $pkg.gitTreeState=clean"
done

need_k8s=()
for bin in kube-apiserver kube-controller-manager; do
	[ -x "$DEST/$bin" ] || need_k8s+=("k8s.io/kubernetes/cmd/$bin")
done
if [ "${#need_k8s[@]}" -gt 0 ]; then
	build_in_wrapper kubernetes k8s.io/kubernetes "v${K8S_VERSION}" "$STAGING_VERSION" "$k8s_ldflags" "${need_k8s[@]}"
fi

if [ ! -x "$DEST/etcd" ]; then
	etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=v${ETCD_VERSION}"
	build_in_wrapper etcd go.etcd.io/etcd/server/v3 "v${ETCD_VERSION}" "v${ETCD_VERSION}" "$etcd_ldflags" go.etcd.io/etcd/server/v3
fi

echo "$DEST"
