#!/usr/bin/env bash
# Builds the test-environment binaries that Go modules under tools/ pin, into
#   ${VIGIL_CACHE:-$HOME/.cache/vigil}/bin/<tool>-<version>-<key>/
# where <key> is a hash of the files at the top of tools/<tool>/ (go.mod, go.sum,
# generated sources). A directory that already holds every binary is a cache
# hit and the go command is not run for that tool. internal/testenv computes
# the same key to find the binaries.
#
# Usage: hack/testenv/build.sh [tool...]      build (default: every tool)
#        hack/testenv/build.sh --key TOOL     print TOOL's cache key
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cache="${VIGIL_CACHE:-$HOME/.cache/vigil}/bin"

kube_version=v1.37.2

# tool_key prints the cache key of tools/$1: sha256 over "name\ncontent" of
# each regular file directly in the directory, in byte order of the names.
tool_key() {
	local dir="$root/tools/$1" f
	(
		cd "$dir"
		for f in $(LC_ALL=C ls -A | LC_ALL=C sort); do
			[ -f "$f" ] || continue
			printf '%s\n' "$f"
			cat "$f"
		done
	) | sha256sum | cut -c1-12
}

# build TOOL VERSION "BIN..." -- go build arguments...
# Builds into a temporary directory and renames it into place when every
# binary is there, so an interrupted build is never mistaken for a hit.
build() {
	local tool=$1 version=$2 bins=$3
	shift 3
	local dir="$cache/$tool-$version-$(tool_key "$tool")" b missing=""
	for b in $bins; do
		[ -f "$dir/$b" ] || missing="$missing $b"
	done
	if [ -z "$missing" ]; then
		echo "testenv-build: $tool $version: cached in $dir"
		return 0
	fi
	echo "testenv-build: $tool $version: building$missing into $dir"
	local tmp="$dir.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	local out="$tmp/"
	set -- $bins -- "$@"
	# One binary: name it; several: go build names each after its package.
	[ "$2" = "--" ] && out="$tmp/$1"
	while [ "$1" != "--" ]; do shift; done
	shift
	local TIMEFORMAT="testenv-build: $tool $version: built in %0Rs (CPU: %0Us user, %0Ss system)"
	if ! time (
		cd "$root/tools/$tool" || exit 1
		nice -n 10 go build -trimpath -o "$out" "$@" || exit 1
		if [ -n "${post_build:-}" ]; then "$post_build" "$tmp"; fi
	) 2>&1; then
		rm -rf "$tmp"
		echo "testenv-build: $tool $version: FAILED" >&2
		return 1
	fi
	rm -rf "$dir"
	mv "$tmp" "$dir"
}

build_etcd() {
	build etcd v3.7.3 "etcd" -ldflags='-s -w' go.etcd.io/etcd/server/v3
}

build_kube() {
	local v=$kube_version maj minor
	maj=${v#v}; maj=${maj%%.*}
	minor=${v#v*.}; minor=${minor%%.*}
	local x="-X k8s.io/component-base/version.gitVersion=$v"
	x="$x -X k8s.io/component-base/version.gitMajor=$maj -X k8s.io/component-base/version.gitMinor=$minor"
	x="$x -X k8s.io/component-base/version.gitTreeState=clean"
	x="$x -X k8s.io/client-go/pkg/version.gitVersion=$v"
	x="$x -X k8s.io/client-go/pkg/version.gitMajor=$maj -X k8s.io/client-go/pkg/version.gitMinor=$minor"
	post_build=kwok_stages build kube "$v" "kube-apiserver kube-controller-manager kube-scheduler kwok kwok-stages.yaml kubelet kube-proxy kubectl" \
		-ldflags="-s -w $x" \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		k8s.io/kubernetes/cmd/kubelet \
		k8s.io/kubernetes/cmd/kube-proxy \
		k8s.io/kubernetes/cmd/kubectl \
		sigs.k8s.io/kwok/cmd/kwok
}

# kwok_stages DIR writes DIR/kwok-stages.yaml: the Stage objects that kwok's
# module ships (nodes become Ready and keep a Lease; pods become Ready,
# complete and are deleted), read from the module cache as data.
kwok_stages() {
	local src f
	src="$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage"
	for f in node/fast/node-initialize.yaml \
		node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
		pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
		echo "---"
		cat "$src/$f"
	done >"$1/kwok-stages.yaml"
}

build_victorialogs() {
	build victorialogs v1.52.1 "victoria-logs" -ldflags='-s -w' \
		github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs
}

# The real node's runtime (internal/testenv/node.go): runc with seccomp
# (CGO, libseccomp from Debian; its Makefile's libpathrs tag needs a Rust
# library and is left out), containerd and ctr, the runc shim (static,
# no_grpc), and the CNI plugins the node's bridge network uses.
build_runc() {
	CGO_ENABLED=1 build runc v1.5.3 "runc" -tags 'seccomp urfave_cli_no_docs' \
		-ldflags='-s -w -X main.version=1.5.3' github.com/opencontainers/runc
}

build_containerd() {
	post_build=containerd_shim build containerd v2.4.2 "containerd ctr containerd-shim-runc-v2" \
		-tags 'no_btrfs urfave_cli_no_docs' -ldflags='-s -w' \
		github.com/containerd/containerd/v2/cmd/containerd \
		github.com/containerd/containerd/v2/cmd/ctr
}

# containerd_shim DIR builds the runc shim into DIR, static as containerd's
# own release builds it.
containerd_shim() {
	CGO_ENABLED=0 nice -n 10 go build -trimpath -tags 'no_grpc no_btrfs urfave_cli_no_docs' -ldflags='-s -w' \
		-o "$1/containerd-shim-runc-v2" github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
}

build_cni() {
	build cni v1.10.0 "bridge host-local loopback portmap" -ldflags='-s -w' \
		github.com/containernetworking/plugins/plugins/main/bridge \
		github.com/containernetworking/plugins/plugins/ipam/host-local \
		github.com/containernetworking/plugins/plugins/main/loopback \
		github.com/containernetworking/plugins/plugins/meta/portmap
}

# helm, for the deploy tests that install the chart on the real node as
# users do (helm install/upgrade/uninstall); a module of its own so that the
# Helm CLI's dependencies stay out of Vigil's go.mod.
build_helm() {
	build helm v3.22.0 "helm" \
		-ldflags='-s -w -X helm.sh/helm/v3/internal/version.version=v3.22.0 -X helm.sh/helm/v3/internal/version.gitTreeState=clean' \
		helm.sh/helm/v3/cmd/helm
}

# staticcheck, run by hack/lint.sh from `make lint` and `make test`.
build_staticcheck() {
	build staticcheck v0.8.2 "staticcheck" -ldflags='-s -w' honnef.co/go/tools/cmd/staticcheck
}

build_otelcol() {
	build otelcol v0.165.0 "otelcol" -ldflags='-s -w' .
}

if [ "${1:-}" = "--key" ]; then
	tool_key "$2"
	exit 0
fi

mkdir -p "$cache"
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(etcd victorialogs otelcol cni runc containerd kube helm staticcheck)
total=$SECONDS
for t in "${tools[@]}"; do
	declare -F "build_$t" >/dev/null || { echo "testenv-build: unknown tool $t (etcd victorialogs otelcol cni runc containerd kube helm staticcheck)" >&2; exit 2; }
	"build_$t"
done
echo "testenv-build: done in $((SECONDS - total))s"
