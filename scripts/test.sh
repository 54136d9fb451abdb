#!/usr/bin/env bash
# Install what the test suite needs, run it with trial, and end with a plain
# "N passed, N failed" line. Exit status is non-zero on any failure.
#
#   scripts/test.sh                 # whole suite
#   scripts/test.sh tests.sip       # one package
set -uo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v sipp >/dev/null 2>&1 || need_apt+=(sip-tester)
command -v espeak-ng >/dev/null 2>&1 || need_apt+=(espeak-ng)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing ${need_apt[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1; } ||
      echo "warning: could not install ${need_apt[*]}; tests needing them will skip (or fail when CI=true)"
  else
    echo "warning: ${need_apt[*]} missing and cannot apt-get install here; tests needing them will skip (or fail when CI=true)"
  fi
fi

python -m pip install -q -e '.[test]' || { echo "pip install failed"; echo "0 passed, 1 failed"; exit 1; }

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(tests)
jobs=${TRIAL_JOBS:-2}
log=$(mktemp)
python -m twisted.trial --temp-directory="${TMPDIR:-/tmp}/siprec-trial-$$" -j "$jobs" "${targets[@]}" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^(PASSED|FAILED) \(' "$log" | tail -n 1)
count() { echo "$summary" | grep -oE "$1=[0-9]+" | cut -d= -f2 | head -n1; }
passed=$(count successes); passed=${passed:-0}
failed=$(( $(count failures || true)+0 + $(count errors || true)+0 + $(count unexpectedSuccesses || true)+0 ))
if [ -z "$summary" ]; then failed=$((failed + 1)); fi
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
rm -f "$log"
echo "$passed passed, $failed failed"
[ "$status" -eq 0 ] && [ "$failed" -eq 0 ]
