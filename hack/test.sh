#!/usr/bin/env bash
# The whole test suite: static checks, generated-code check, then every Go
# test against real servers. Run through `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export CI="${CI:-}"
bash hack/lint.sh
if [ -x hack/check-generate.sh ] || [ -f hack/check-generate.sh ]; then
  echo "== generated code is up to date"
  bash hack/check-generate.sh
fi
echo "== go test"
# -p 2: two packages at a time on two cores; real servers make tests I/O bound.
# The fault suite (faults/) runs afterwards, alone: it measures times from
# fault to fix, which other packages' load would only blur. -parallel 4:
# its scenarios mostly wait (for detection, back-off, scale-back), and four
# at a time keep the live pass near its longest scenario (saturation, about
# 3 minutes) instead of twice that at two.
go test -p 2 -timeout "${TEST_TIMEOUT:-30m}" -count=1 $(go list ./... | grep -v '/faults$') 2>&1 | tee /tmp/vigil-test.log
echo "== fault suite on the real node (short form; make faults runs the full one)"
faults_ok=true
FAULTS_REPORT=/tmp/vigil-faults-report.md go test -timeout 30m -count=1 -parallel 4 -v -run TestFaults ./faults >/tmp/vigil-faults.log 2>&1 || faults_ok=false
grep -aE '^\s*(--- |PASS|FAIL|ok )|(faults|scenarios)_linux_test.go' /tmp/vigil-faults.log || true
cat /tmp/vigil-faults-report.md 2>/dev/null || true
if ! $faults_ok; then
  echo "fault suite failed; the last 300 lines of /tmp/vigil-faults.log:"
  tail -300 /tmp/vigil-faults.log
  exit 1
fi
