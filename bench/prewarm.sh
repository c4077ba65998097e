#!/usr/bin/env bash
# bench/prewarm: what warm pools (issue 6) save a program that opens a fresh TCP connection per
# request. build/progs/connlat (tests/progs/connlat.c) makes N connections one at a time
# (socket, connect, one HTTP request with Connection: close, close, a short gap) and reports
# the median and p99 of
#   connect()       the time connect() takes (blocking socket)
#   first request   connect + request + whole response: the time to the first answer on a new
#                   connection
# in three modes:
#   no shim   plain
#   cold      LD_PRELOAD=libconnroute.so, [lane default] without prewarm
#   warm      the same lane with prewarm = TARGET*POOL
# on three paths: loopback straight to build/upstream, and through build/progs/delayproxy at
# D ms one-way delay for each D of --delays (the proxy's kernel accepts at once, so connect()
# itself stays a loopback connect; a new connection's first bytes are held one round trip, as
# on a real path, so the saving shows in the first-request latency).
#
#   bench/prewarm.sh [--n N] [--pool N] [--delays "1 10"] [--no-build]
#
# N [300] measured connections per mode on loopback (N/3 through the proxy), POOL [4] warm
# sockets. Each run first makes one connect to the upstream's control port (it starts the
# refill thread, which only starts on a process's first routed connect) and sleeps 300 ms;
# gaps between connections: 2 ms on loopback, 2*D ms through the proxy (a warm connection
# must have been up for a round trip before it saves one). Prints a markdown table and the
# ratios. Loopback only; every process is stopped at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=300
POOL=4
DELAYS="1 10"
BUILD=1
usage() { sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N=${2:?}; shift 2 ;;
    --pool) POOL=${2:?}; shift 2 ;;
    --delays) DELAYS=${2:-}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage ;;
    *) echo "prewarm.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
case "$B" in /*) ;; *) B=$ROOT/$B ;; esac
[ "$BUILD" = 1 ] && make -s B="${B#"$ROOT"/}" all "${B#"$ROOT"/}/upstream" "${B#"$ROOT"/}/progs/connlat" \
  "${B#"$ROOT"/}/progs/delayproxy" >&2
for f in "$B/libconnroute.so" "$B/upstream" "$B/progs/connlat" "$B/progs/delayproxy"; do
  [ -e "$f" ] || { echo "prewarm.sh: $f missing" >&2; exit 1; }
done

export CR_BUILD=$B
CR_DIR=$(mktemp -d /tmp/cr-prewarm.XXXXXX)
export CR_DIR
CR_ME=prewarm.sh
CR_MAX_SECONDS=900
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

cr_start_upstream

printf '[lane default]\n' >"$CR_DIR/cold.conf"

# field NAME LINE: the value of NAME=... in a connlat line
field() { sed -n "s/.*[[:space:]]$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

# run MODE TARGET_PORT N GAP_US: one connlat line (exit status ignored: errors are counted)
run() {
  local mode=$1 port=$2 n=$3 gap=$4 env=()
  case $mode in
    none) ;;
    cold) env=(env "CONNROUTE_CONFIG=$CR_DIR/cold.conf" "LD_PRELOAD=$B/libconnroute.so") ;;
    warm)
      printf '[lane default]\nprewarm = 127.0.0.1:%s*%s\n' "$port" "$POOL" >"$CR_DIR/warm-$port.conf"
      env=(env "CONNROUTE_CONFIG=$CR_DIR/warm-$port.conf" "LD_PRELOAD=$B/libconnroute.so") ;;
  esac
  timeout 300 "${env[@]}" "$B/progs/connlat" --target "127.0.0.1:$port" --kick "127.0.0.1:$UP_CTL" \
    --path / --n "$n" --gap-us "$gap" || true
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
us() { awk -v a="$1" 'BEGIN { if (a >= 10000) printf "%.0f", a; else printf "%.1f", a }'; }

ROWS=()
RATIOS=()
ERRS=0
bench_path() {
  local label=$1 port=$2 n=$3 gap=$4 m line
  declare -A c50 c99 r50 r99
  for m in none cold warm; do
    line=$(run "$m" "$port" "$n" "$gap")
    echo "prewarm.sh: $label $m: $line" >&2
    local e
    e=$(field errors "$line")
    [ "${e:-1}" = 0 ] || ERRS=$((ERRS + 1))
    c50[$m]=$(field connect_p50_us "$line"); c99[$m]=$(field connect_p99_us "$line")
    r50[$m]=$(field req_p50_us "$line"); r99[$m]=$(field req_p99_us "$line")
    ROWS+=("| $label | $m | $(us "${c50[$m]:-0}") | $(us "${c99[$m]:-0}") | $(us "${r50[$m]:-0}") | $(us "${r99[$m]:-0}") | ${e:-?} |")
  done
  RATIOS+=("| $label | $(ratio "${c50[warm]}" "${c50[none]}") | $(ratio "${c50[warm]}" "${c50[cold]}") | $(ratio "${r50[warm]}" "${r50[none]}") | $(ratio "${r50[warm]}" "${r50[cold]}") | $(ratio "${r99[warm]}" "${r99[none]}") |")
}

bench_path loopback "$UP_PORT" "$N" 2000
for d in $DELAYS; do
  cr_start_delayproxy "$d" "$UP_PORT"
  bench_path "proxy ${d} ms" "$DP_PORT" $(( N / 3 > 10 ? N / 3 : 10 )) $(( 2000 * d ))
done

echo "## Warm pools (bench/prewarm.sh)"
echo
echo "connlat: one connection at a time, blocking connect(), one GET with Connection: close;"
echo "N=$N on loopback, $(( N / 3 > 10 ? N / 3 : 10 )) through the delay proxy; prewarm pool of $POOL. Times in µs."
echo
echo "| path | mode | connect p50 | connect p99 | first request p50 | first request p99 | errors |"
echo "|---|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
echo
echo "Ratios, warm over the others (below 1: warm is faster):"
echo
echo "| path | connect p50 warm/no shim | connect p50 warm/cold | first request p50 warm/no shim | first request p50 warm/cold | first request p99 warm/no shim |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "${RATIOS[@]}"
echo
echo "$(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
[ "$ERRS" = 0 ] || { echo "prewarm.sh: $ERRS run(s) had errors" >&2; exit 1; }
