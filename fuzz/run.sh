#!/usr/bin/env bash
# Runs every libFuzzer harness for a bounded time (make fuzz, make fuzz-ci).
#
#   fuzz/run.sh BUILD_DIR SECONDS
#
# For each harness fuzz/fuzz_NAME.c (built as BUILD_DIR/fuzz/fuzz_NAME by the Makefile):
#   1. every input of fuzz/regress/NAME/ is run once (findings that must stay fixed);
#   2. libFuzzer runs for SECONDS with the seed corpus fuzz/corpus/NAME (read only) and a
#      working corpus BUILD_DIR/fuzz/corpus-NAME (kept between runs, so coverage carries
#      over), the dictionary fuzz/NAME.dict if present, -timeout=10 s per input and
#      -rss_limit_mb=2048; a crash, leak, timeout or violated invariant is written to
#      BUILD_DIR/fuzz/artifacts-NAME/ and fails the run.
# Prints one line per harness: executions, corpus size, findings. Exit 0 when none.
set -uo pipefail
B=${1:-build}
SECS=${2:-60}
case $SECS in ''|*[!0-9]*) echo "fuzz/run.sh: SECONDS must be a number" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
fail=0
for src in fuzz/fuzz_*.c; do
  name=$(basename "$src" .c); t=${name#fuzz_}
  bin=$B/fuzz/$name
  [ -x "$bin" ] || { echo "fuzz: $bin missing (make fuzz builds it)" >&2; fail=1; continue; }
  work=$B/fuzz/corpus-$t art=$B/fuzz/artifacts-$t log=$B/fuzz/$t.log
  mkdir -p "$work" "$art"
  if [ -d "fuzz/regress/$t" ] && [ -n "$(ls -A "fuzz/regress/$t")" ]; then
    if ! "$bin" "fuzz/regress/$t"/* >"$B/fuzz/$t.regress.log" 2>&1; then
      echo "fuzz: $t: a regression input fails again (see fuzz/README.md, Findings):"
      grep -a -m3 'invariant\|ERROR\|runtime error' "$B/fuzz/$t.regress.log" | cat -v | sed 's/^/  /'
      fail=1
      continue
    fi
  fi
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=(-dict="fuzz/$t.dict")
  timeout $((SECS + 120)) "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 "${dict[@]}" -artifact_prefix="$art/" "$work" "fuzz/corpus/$t" \
    >"$log" 2>&1
  rc=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
  files=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then
    echo "fuzz: $t: ${execs:-?} executions in $SECS s (${rate:-?}/s), working corpus $files inputs, no findings"
  else
    echo "fuzz: $t: FINDING after ${execs:-?} executions (exit $rc); artifacts in $art:"
    grep -a -m5 'invariant\|ERROR:\|SUMMARY\|runtime error' "$log" | cat -v | sed 's/^/  /'
    ls "$art" | sed 's/^/  /'
    fail=1
  fi
done
exit $fail
