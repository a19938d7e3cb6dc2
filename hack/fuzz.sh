#!/usr/bin/env bash
# Runs every Go fuzz target (func FuzzX in a *_test.go file) for FUZZTIME
# each, one target at a time, package by package, and exits non-zero when
# any of them fails. A failing input is written by `go test` under the
# package's testdata/fuzz/FuzzX/; commit it and it runs as a regression
# test in every `go test ./...`.
#
#   FUZZTIME   how long each target runs (default 20s; go test's -fuzztime,
#              so 1000x also works)
#   FUZZ       only targets whose "package-dir FuzzName" matches this
#              extended regexp (default: all)
#   FUZZPROCS  fuzzing workers per target (default: go test's, GOMAXPROCS)
#   GO         the go command (default go)
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-20s}
FUZZ=${FUZZ:-}
GO=${GO:-go}
parallel=()
if [ -n "${FUZZPROCS:-}" ]; then
	parallel=(-parallel "$FUZZPROCS")
fi

mapfile -t targets < <(grep -rEo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . |
	sed -E 's|^\./(.*)/[^/]*:func (Fuzz[A-Za-z0-9_]*)\($|\1 \2|' | sort -u)
if [ -n "$FUZZ" ]; then
	mapfile -t targets < <(printf '%s\n' "${targets[@]}" | grep -E -- "$FUZZ")
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz target matches${FUZZ:+ $FUZZ}" >&2
	exit 1
fi

echo "fuzz: ${#targets[@]} targets, $FUZZTIME each"
passed=()
failed=()
for t in "${targets[@]}"; do
	dir=${t% *}
	name=${t#* }
	echo "=== fuzz ./$dir $name ($FUZZTIME)"
	start=$SECONDS
	if "$GO" test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "${parallel[@]}" -timeout 30m "./$dir"; then
		passed+=("./$dir $name ($((SECONDS - start))s)")
	else
		failed+=("./$dir $name")
	fi
done

echo
echo "fuzz: ${#passed[@]} passed, ${#failed[@]} failed"
for p in "${passed[@]}"; do echo "  ok    $p"; done
for f in "${failed[@]}"; do echo "  FAIL  $f (failing input under ./${f% *}/testdata/fuzz/)"; done
[ ${#failed[@]} -eq 0 ]
