#!/usr/bin/env bash
# bench/percost: user-space instructions per request (callgrind) of a libcurl client, with
# and without the shim, over HTTP and HTTPS to nginx on loopback.
#
#   bench/percost.sh [--reps N] [--shim FILE] [--no-build]
#
# Clients (tests/progs/curlprog, 1 thread), GET /slow: nginx answers after 1 ms (it
# proxies to the test upstream's /delay/1), so libcurl always waits for the answer in poll.
# Against an instant answer, whether it is already there at libcurl's first read varies
# from run to run and moves a run's count by up to 2,000 instructions; with the wait the
# runs agree to a few instructions.
#   persistent, no shim    --mode persistent: one handle reused for every request (the
#                          hand-tuned client: the limit)
#   persistent, shim       the same under LD_PRELOAD (no config)
#   new handle, shim       --mode fresh (init/setopt/perform/cleanup per request) under
#                          LD_PRELOAD
# Each figure is the marginal cost of a request: (instructions of a 1500-request run -
# those of a 500-request run) / 1000, counted by callgrind in the client's own threads (its
# main and worker threads; connroute's background thread, which wakes once a second
# whatever the request rate, is left out), the median of N [3] runs of each (all runs
# printed). Callgrind counts instructions, not time: the figures do not swing with the
# machine's load the way req/s do.
# Goals (docs/INTERNALS.md, "libcurl lanes"): persistent under the shim <= 1.02x itself
# without; the new-handle client under the shim <= 1.05x the persistent client without.
# --shim FILE measures another build of the shim (e.g. an older one, for a before/after).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
usage() { sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
B=${B:-build}
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CR_DIR=$(mktemp -d /tmp/cr-bench-percost.XXXXXX)
CR_ME=percost
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
cr_callgrind_init curlprog "$@"
CR_CG_PREFIX=()
[ "${CR_PIN:-0}" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] && CR_CG_PREFIX=(taskset -c 1)
N1=500
N2=1500

SLOW_MS=1
cr_start_upstream
cr_start_nginx
CA_FILE=$CR_DIR/nginx/cert.pem

# one NAME PRELOAD MODE URL -> prints the marginal instructions per request of one run
one() {
  cr_cg_marginal "$1" "ok=@N@ " ${2:+LD_PRELOAD=$2} -- "$CR_BUILD/progs/curlprog" --mode "$3" \
    --threads 1 --requests @N@ --quiet --cacert "$CA_FILE" "$4"
}

declare -A IR RUNS
CLIENTS=(pers-none pers-shim fresh-shim)
for proto in http https; do
  if [ "$proto" = http ]; then u="http://127.0.0.1:$HTTP_PORT/slow"; else u="https://localhost:$HTTPS_PORT/slow"; fi
  for c in "${CLIENTS[@]}"; do
    : >"$CR_DIR/runs"
    for r in $(seq 1 "$REPS"); do
      case $c in
        pers-none) v=$(one "$proto-$c" "" persistent "$u") ;;
        pers-shim) v=$(one "$proto-$c" "$SHIM" persistent "$u") ;;
        fresh-shim) v=$(one "$proto-$c" "$SHIM" fresh "$u") ;;
      esac
      echo "$v" >>"$CR_DIR/runs"
      echo "  $proto $c #$r: $v instructions/request" >&2
    done
    IR[$proto,$c]=$(cr_median <"$CR_DIR/runs")
    RUNS[$proto,$c]=$(sort -n "$CR_DIR/runs" | tr '\n' ' ' | sed 's/ $//')
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a / b }'; }
goal() { awk -v r="$1" -v g="$2" 'BEGIN { print (r <= g) ? "met" : "MISSED" }'; }
echo "## bench/percost — instructions per request (callgrind, 1 thread, nginx on loopback)"
echo
echo "curlprog, marginal cost of a request (runs of $N1 and $N2 requests), the client's own"
echo "threads, median of $REPS runs (all runs in brackets); GET /slow, answered after 1 ms."
echo "Shim: \`${SHIM#"$ROOT"/}\`, no config."
echo
echo "| proto | persistent, no shim | persistent, shim | new handle per request, shim |"
echo "|---|---:|---:|---:|"
for proto in http https; do
  printf '| %s | %s [%s] | %s [%s] | %s [%s] |\n' "$proto" \
    "${IR[$proto,pers-none]}" "${RUNS[$proto,pers-none]}" "${IR[$proto,pers-shim]}" "${RUNS[$proto,pers-shim]}" \
    "${IR[$proto,fresh-shim]}" "${RUNS[$proto,fresh-shim]}"
done
echo
echo "| proto | persistent: shim / no shim | goal <= 1.02 | new handle with shim / persistent without | goal <= 1.05 |"
echo "|---|---:|---|---:|---|"
for proto in http https; do
  r1=$(ratio "${IR[$proto,pers-shim]}" "${IR[$proto,pers-none]}")
  r2=$(ratio "${IR[$proto,fresh-shim]}" "${IR[$proto,pers-none]}")
  printf '| %s | %sx | %s | %sx | %s |\n' "$proto" "$r1" "$(goal "$r1" 1.02)" "$r2" "$(goal "$r2" 1.05)"
done
echo
