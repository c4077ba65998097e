#!/usr/bin/env bash
# bench/permulti: user-space instructions per multi transfer (callgrind) of a libcurl
# multi-interface client, with and without the shim, over HTTP to nginx on loopback
# (GET /slow, answered after 1 ms, as in bench/percost.sh).
#
#   bench/permulti.sh [--reps N] [--shim FILE] [--no-build]
#
# Client: tests/progs/multiprog perform (curl_multi_perform + curl_multi_poll), one thread,
# one persistent handle added to one persistent multi handle again for each transfer
# (-n 1 -r R). The figure is the marginal cost of a transfer: (instructions of a 1500-
# transfer run - those of a 500-transfer run) / 1000 in the client's own threads (main and
# worker), the median of N [3] runs. Clients: no shim; shim without a config (the default
# lane); shim with a lane that limits (max_conns_per_host = 4: a unit per transfer).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
B=${B:-build}
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CR_DIR=$(mktemp -d /tmp/cr-bench-permulti.XXXXXX)
CR_ME=permulti
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
cr_callgrind_init multiprog "$@"
N1=500
N2=1500
SLOW_MS=1
cr_start_upstream
cr_start_nginx
printf '[lane default]\nmax_conns_per_host = 4\n' >"$CR_DIR/limit.conf"

# one NAME PRELOAD CONFIG -> the marginal instructions per transfer of one run
one() {
  cr_cg_marginal "$1" "rc 0 " ${2:+LD_PRELOAD=$2} ${3:+CONNROUTE_CONFIG=$3} -- \
    "$CR_BUILD/progs/multiprog" perform "http://127.0.0.1:$HTTP_PORT/slow" -n 1 -r @N@
}

declare -A IR RUNS
for c in none shim shim-limit; do
  : >"$CR_DIR/runs"
  for r in $(seq 1 "$REPS"); do
    case $c in
      none) v=$(one "$c" "" "") ;;
      shim) v=$(one "$c" "$SHIM" "") ;;
      shim-limit) v=$(one "$c" "$SHIM" "$CR_DIR/limit.conf") ;;
    esac
    echo "$v" >>"$CR_DIR/runs"
    echo "  $c #$r: $v instructions/transfer" >&2
  done
  IR[$c]=$(cr_median <"$CR_DIR/runs")
  RUNS[$c]=$(sort -n "$CR_DIR/runs" | tr '\n' ' ' | sed 's/ $//')
done
echo "## bench/permulti — instructions per multi transfer (callgrind, 1 thread, nginx on loopback)"
echo
echo "multiprog perform, one handle re-added to one multi per transfer, marginal cost of a"
echo "transfer (runs of $N1 and $N2), the client's own threads, median of $REPS runs; GET /slow."
echo "Shim: \`${SHIM#"$ROOT"/}\`."
echo
echo "| proto | no shim | shim, no config | shim, max_conns_per_host = 4 |"
echo "|---|---:|---:|---:|"
printf '| http | %s [%s] | %s [%s] | %s [%s] |\n' "${IR[none]}" "${RUNS[none]}" "${IR[shim]}" \
  "${RUNS[shim]}" "${IR[shim-limit]}" "${RUNS[shim-limit]}"
echo
