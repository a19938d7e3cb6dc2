#!/usr/bin/env bash
# Proves that `make test-unit` (go test -short) needs neither root nor a test
# server: every package's test binary is built as usual, then run with
# -test.short as the unprivileged user nobody, with CI=true (so a test that
# reached for a missing server or for root would fail, not skip), in a mount
# namespace where the test servers' binaries and the tool cache are hidden.
# Needs root to set that up (unshare, setpriv): `make test-unit-unprivileged`
# (arguments: package patterns, default ./...).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out=$(mktemp -d /tmp/vigil-unit.XXXXXX)
chmod 755 "$out"
trap 'rm -rf "$out"' EXIT
pkgs=$(go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}} {{.Dir}}{{end}}' "${@:-./...}")
echo "test-unit-unprivileged: building $(echo "$pkgs" | wc -l) test binaries"
while read -r pkg dir; do
	go test -short -c -o "$out/$(echo "$pkg" | tr / _).test" "$pkg"
done <<<"$pkgs"
# Hide every test server (an empty file over each binary) and the tool cache.
hide=""
for b in prometheus prometheus-alertmanager prometheus-node-exporter haproxy redis-server redis-cli psql; do
	p=$(command -v "$b" 2>/dev/null) && hide="$hide mount --bind $out/empty $p;"
done
: >"$out/empty"
fail=0
while read -r pkg dir; do
	bin="$out/$(echo "$pkg" | tr / _).test"
	# shellcheck disable=SC2016
	if unshare --mount --propagation private sh -c "$hide mount -t tmpfs none ${VIGIL_CACHE:-$HOME/.cache/vigil}; cd '$dir' && exec setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin HOME=/nonexistent TMPDIR=/tmp CI=true '$bin' -test.short -test.timeout=10m" >"$out/log" 2>&1; then
		echo "ok    $pkg"
	else
		echo "FAIL  $pkg"; tail -30 "$out/log"; fail=1
	fi
done <<<"$pkgs"
[ "$fail" = 0 ] && echo "test-unit-unprivileged: every package passes -short as nobody, without test servers, with CI=true"
exit "$fail"
