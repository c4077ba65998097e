#!/usr/bin/env bash
# Runs every test of a built tree (called by `make test`): the public header
# in C99 and C++11, the engine's unit tests, and the integration tests that
# run unmodified programs under LD_PRELOAD against a local test server.
# Prints one closing line "N passed, N failed" for the whole run.
set -uo pipefail
B=${1:-build}
export CR_BUILD=$(cd "$B" && pwd)
# Sanitizer builds: leaks reported inside third-party libraries (Criterion's runner) are
# suppressed by name; leak checking stays on for connroute's own code.
export LSAN_OPTIONS="suppressions=$(pwd)/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
pass=0 fail=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

failed() { # one failed check: counted, and named again in the closing lines
  echo "$1"; echo "$1" >>"$log/failures"; fail=$((fail+1))
}

header() {
  local ok=1
  cc -std=c99 -pedantic -Wall -Wextra -Werror -Wshadow -Iinclude -c tests/header/use_header.c -o "$log/h.o" || ok=0
  ${CXX:-g++} -std=c++11 -pedantic -Wall -Wextra -Werror -Wshadow -Iinclude -x c++ -c tests/header/use_header.c -o "$log/hxx.o" || ok=0
  if [ $ok = 1 ]; then echo "header: C99 and C++11 clean"; pass=$((pass+1)); else failed "header: FAILED"; fi
}

criterion() { # name binary args...
  local name=$1; shift
  echo "== $name"
  "$@" 2>&1 | tee "$log/$name.out"
  local rc=${PIPESTATUS[0]}
  local line
  line=$(grep -a 'Synthesis:' "$log/$name.out" | tail -n1)
  local t p
  t=$(sed -n 's/.*Tested: \([0-9]*\).*/\1/p' <<<"$line")
  p=$(sed -n 's/.*Passing: \([0-9]*\).*/\1/p' <<<"$line")
  if [ -z "$t" ]; then failed "$name: no result (exit $rc)"; return; fi
  pass=$((pass+p)); fail=$((fail+t-p))
  # the names of failed tests are repeated in the closing lines: a CI log
  # that keeps only its tail still says which test failed
  grep -a -E -A1 '^\[FAIL\]|Assertion Failed|CRASH' "$log/$name.out" \
    | sed "s/^/$name: /" >>"$log/failures"
  [ "$rc" -eq 0 ] || [ "$t" -ne "$p" ] || failed "$name: exit $rc"
}

header
if bash scripts/check-layers.sh; then pass=$((pass+1)); else failed "layers: FAILED"; fi
# Style (.clang-format), when clang-format is installed: `make format` fixes it.
if command -v clang-format >/dev/null; then
  if make --no-print-directory -s format-check; then pass=$((pass+1)); else failed "format: FAILED (run make format)"; fi
fi
if bash scripts/check-docs.sh "$B"; then pass=$((pass+1)); else failed "docs: FAILED"; fi
criterion unit "$B/unit_tests" --jobs 2
criterion integration "$B/integration_tests" --jobs 2

echo "== engine unit tests under ASan + UBSan"
if make --no-print-directory -s SAN=address build-address/unit_tests && \
   build-address/unit_tests --jobs 2 > "$log/asan.out" 2>&1; then
  tail -n1 "$log/asan.out"; pass=$((pass+1))
else
  cat "$log/asan.out"
  grep -a -E -A1 '^\[FAIL\]|Assertion Failed|CRASH|ERROR: [A-Za-z]*Sanitizer|runtime error' "$log/asan.out" \
    | head -n 20 | sed "s/^/asan: /" >>"$log/failures"
  failed "asan: FAILED"
fi

echo "== threads under ThreadSanitizer"
if make --no-print-directory -s tsan; then pass=$((pass+1)); else failed "tsan: FAILED"; fi

echo "== fuzzing (bounded: 10 s per harness)"
if make --no-print-directory -s fuzz-ci B="$B"; then pass=$((pass+1)); else failed "fuzz: FAILED"; fi

echo
if [ -s "$log/failures" ]; then
  echo "failed tests (repeated from above):"
  head -n 40 "$log/failures"
fi
echo "tests: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
