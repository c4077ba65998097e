#!/usr/bin/env bash
# bench/idle: server-side open connections over time after a burst, with and without the
# shim (issue 17, item 1: idle pooled connections are closed within idle_timeout).
#
#   bench/idle.sh [--threads N] [--idle-ms MS] [--no-build]
#
# tests/progs/curlconn burst: N [50] threads at once, each a new handle and one request to
# the test upstream; then the program stays alive and idle for MS [5000] ms while it asks
# the upstream's control port (a plain socket) every 250 ms how many connections are open.
# Runs: without the shim (curl_easy_cleanup closes each connection), and with it under
# CONNROUTE_CONFIG with `idle_timeout = 2s` (max_idle_per_host at its default, 8). The
# series are printed side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
THREADS=50
IDLE_MS=5000
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS=${2:?}; shift 2 ;;
    --idle-ms) IDLE_MS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
    *) echo "idle.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/curlconn" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CR_DIR=$(mktemp -d /tmp/cr-bench-idle.XXXXXX)
CR_ME=idle
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
cr_start_upstream
printf '[lane default]\nidle_timeout = 2s\n' >"$CR_DIR/idle.conf"

run() { # run OUT ENV...
  local out=$1
  shift
  curl -s --max-time 5 "http://127.0.0.1:$UP_CTL/reset" >/dev/null
  env "$@" "$CR_BUILD/progs/curlconn" burst "http://127.0.0.1:$UP_PORT/conn" "$THREADS" "$IDLE_MS" "$UP_CTL" >"$out" ||
    { echo "idle.sh: curlconn failed: $(head -c 300 "$out")" >&2; exit 1; }
  for _ in $(seq 1 100); do
    [ "$(curl -s --max-time 5 "http://127.0.0.1:$UP_CTL/stats" | awk '$1 == "open" { print $2 }')" = 0 ] && break
    sleep 0.05
  done
}
run "$CR_DIR/none" LD_PRELOAD=
run "$CR_DIR/shim" LD_PRELOAD="$CR_BUILD/libconnroute.so" CONNROUTE_CONFIG="$CR_DIR/idle.conf"

echo "## bench/idle — open connections after a burst of $THREADS new handles (test upstream)"
echo
echo "tests/progs/curlconn burst: $THREADS threads, a new handle and one request each, then the"
echo "program idles for $IDLE_MS ms; the server's open connections, every 250 ms from the end of"
echo "the burst. *shim*: idle_timeout = 2s, max_idle_per_host = 8 (default); the sweep runs on"
echo "connroute's background thread at most a second apart."
echo
echo "| ms after the burst | open, no shim | open, shim |"
echo "|---:|---:|---:|"
paste <(awk '/^open/ { sub("ms=", "", $2); sub("n=", "", $3); print $2, $3 }' "$CR_DIR/none") \
      <(awk '/^open/ { sub("n=", "", $3); print $3 }' "$CR_DIR/shim") |
  awk '{ printf "| %d | %s | %s |\n", $1, $2, $3 }'
echo
echo "Requests: $(grep '^burst' "$CR_DIR/none") without the shim, $(grep '^burst' "$CR_DIR/shim") with it."
echo
