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
REPS=3
BUILD=1
SHIM=
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=${2:?}; shift 2 ;;
    --shim) SHIM=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    *) echo "permulti.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/multiprog" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
SHIM=${SHIM:-$CR_BUILD/libconnroute.so}
command -v valgrind >/dev/null || { echo "permulti.sh: valgrind is needed" >&2; exit 1; }
CR_DIR=$(mktemp -d /tmp/cr-bench-permulti.XXXXXX)
CR_ME=permulti
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
N1=500
N2=1500
SLOW_MS=1
cr_start_upstream
cr_start_nginx
printf '[lane default]\nmax_conns_per_host = 4\n' >"$CR_DIR/limit.conf"

client_ir() {
  awk '/^totals:/ { s += $2 } END { printf "%.0f", s }' "$1"-01 "$1"-02
}

# one NAME PRELOAD CONFIG -> the marginal instructions per transfer of one run
one() {
  local name=$1 pre=$2 conf=$3 n a b
  for n in $N1 $N2; do
    rm -f "$CR_DIR/cg.$name.$n"-*
    env ${pre:+LD_PRELOAD=$pre} ${conf:+CONNROUTE_CONFIG=$conf} valgrind --tool=callgrind \
      --separate-threads=yes --callgrind-out-file="$CR_DIR/cg.$name.$n" \
      "$CR_BUILD/progs/multiprog" perform "http://127.0.0.1:$HTTP_PORT/slow" -n 1 -r "$n" \
      >"$CR_DIR/out" 2>"$CR_DIR/err" ||
      { echo "permulti.sh: $name failed: $(head -c 500 "$CR_DIR/err")" >&2; exit 1; }
    grep -q "rc 0 " "$CR_DIR/out" || { echo "permulti.sh: $name: $(cat "$CR_DIR/out")" >&2; exit 1; }
  done
  a=$(client_ir "$CR_DIR/cg.$name.$N1")
  b=$(client_ir "$CR_DIR/cg.$name.$N2")
  echo $(((b - a) / (N2 - N1)))
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }

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
  IR[$c]=$(median <"$CR_DIR/runs")
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
