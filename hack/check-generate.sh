#!/usr/bin/env bash
# Regenerates every generated file and fails if the result differs from
# what is committed (CI runs it from `make test`). Generators that need a
# tool which is missing are skipped with a message, except under CI=true,
# where hack/install-deps.sh has installed them.
set -euo pipefail
cd "$(dirname "$0")/.."

# A snapshot of the work tree, so that uncommitted work of a developer is
# not mistaken for generator output (CI's fresh clone is clean).
snapshot() { { git status --porcelain --untracked-files=all; git diff; } | sha256sum; }
before=$(snapshot)

fail=0
skip() {
  if [ "${CI:-}" = true ]; then
    echo "check-generate: $1, and CI=true requires it" >&2
    fail=1
  else
    echo "check-generate: skipping: $1"
  fi
}

# eBPF objects (bpf2go through `go tool`, clang for the C under bpf/).
if command -v clang >/dev/null 2>&1; then
  echo "check-generate: go generate ./collectors/ebpf/..."
  go generate ./collectors/ebpf/...
else
  skip "clang is not installed (apt-get install clang llvm libbpf-dev), so the eBPF objects cannot be regenerated"
fi

# Dashboards JSON (pure Go), then the Helm chart's copy of it.
echo "check-generate: go generate ./dashboards/... ./deploy/..."
go generate ./dashboards/... ./deploy/...

# The actuator table in docs/healing.md, from the actuators' Doc and Params.
echo "check-generate: go generate ./healing/..."
go generate ./healing/...

[ "$fail" = 0 ] || exit 1
if [ "$(snapshot)" != "$before" ]; then
  echo "check-generate: generated files differ from the committed ones; run 'make generate' and commit:" >&2
  git status --porcelain --untracked-files=all >&2
  git --no-pager diff --stat >&2 || true
  exit 1
fi
echo "check-generate: generated files are up to date"
