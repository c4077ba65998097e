#!/usr/bin/env bash
# bench/isolation: critical latency while batch work saturates a slow endpoint of the same
# upstream, with one shared connection limit vs lanes.
#
#   bench/isolation.sh [--duration S] [--critical N] [--batch N] [--critical-pause-ms N]
#                      [--delay-ms MS] [--no-build]
#
# Client: tests/progs/payments (unmodified libcurl, new handle per request, its own limit
# off), N critical threads (GET /, paced by --critical-pause-ms [1]) and --batch threads
# [16] (GET /slow: nginx -> build/upstream /delay/50), over HTTPS to nginx on loopback, or
# through build/progs/delayproxy with --delay-ms MS one-way delay each way.
# Four runs of S seconds [10], all under connroute:
#   shared  a single-lane config "[lane default] max_conns_per_host = 8": critical and batch
#           share one pool and one limit (queue_timeout: the default lane's 5 s)
#   lanes   examples/payments.conf (+ the [threads] rules): critical and batch lanes
# each without batch load (unloaded) and with it (loaded). Reported: critical p50/p95/p99,
# the loaded/unloaded p99 ratio per config. Goal: lanes <= 1.2x unloaded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=10
CRIT=4
BATCH=16
PAUSE=1
DELAY=0
BUILD=1
GOAL=1.2
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2:?}; shift 2 ;;
    --critical) CRIT=${2:?}; shift 2 ;;
    --batch) BATCH=${2:?}; shift 2 ;;
    --critical-pause-ms) PAUSE=${2:?}; shift 2 ;;
    --delay-ms) DELAY=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage ;;
    *) echo "isolation.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/payments" "$B/progs/delayproxy" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CR_DIR=$(mktemp -d /tmp/cr-bench-isolation.XXXXXX)
CR_ME=isolation
CR_MAX_SECONDS=$((DURATION * 4 + 300))
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

cr_start_upstream
cr_start_nginx
CA_FILE=$CR_DIR/nginx/cert.pem
PORT=$HTTPS_PORT
VIA="direct to nginx"
if [ "$DELAY" != 0 ]; then
  cr_start_delayproxy "$DELAY" "$HTTPS_PORT"
  PORT=$DP_PORT
  VIA="through delayproxy, ${DELAY} ms one-way each way"
fi
cr_payments_conf "$ROOT/examples/payments.conf"
printf '[lane default]\nmax_conns_per_host = 8\n' >"$CR_DIR/shared.conf"
"$CR_BUILD/connroute" check "$CR_DIR/shared.conf" >/dev/null
"$CR_BUILD/connroute" check "$PAYMENTS_CONF" >/dev/null

declare -A P50 P95 P99 CRPS BRPS ERRS
run() { # run CONFNAME CONF BATCH
  local name=$1 conf=$2 nb=$3 out line
  out=$CR_DIR/$name-$nb.out
  timeout $((DURATION + 60)) "$CR_BUILD/connroute" run --config "$conf" -- "$CR_BUILD/progs/payments" \
    --critical "$CRIT" --batch "$nb" --critical-pause-ms "$PAUSE" --duration-ms $((DURATION * 1000)) \
    --cacert "$CA_FILE" "https://localhost:$PORT" >"$out" 2>"$CR_DIR/err" || true
  line=$(grep '^class=critical' "$out" || true)
  [ -n "$line" ] || { echo "isolation.sh: $name batch=$nb printed no result:" >&2; head -c 2000 "$CR_DIR/err" >&2; exit 1; }
  echo "  $name batch=$nb: $(tr '\n' ' ' <"$out")" >&2
  P50[$name,$nb]=$(cr_field p50_ms <<<"$line")
  P95[$name,$nb]=$(cr_field p95_ms <<<"$line")
  P99[$name,$nb]=$(cr_field p99_ms <<<"$line")
  CRPS[$name,$nb]=$(cr_field rps <<<"$line")
  BRPS[$name,$nb]=$(grep '^class=batch' "$out" | cr_field rps || true)
  ERRS[$name,$nb]=$(grep '^total ' "$out" | cr_field errors)
}

echo "bench/isolation: $CRIT critical (pause ${PAUSE} ms) + $BATCH batch threads, ${DURATION}s per run, $VIA" >&2
for name in shared lanes; do
  conf=$CR_DIR/shared.conf
  [ "$name" = lanes ] && conf=$PAYMENTS_CONF
  run "$name" "$conf" 0
  run "$name" "$conf" "$BATCH"
done

echo "## bench/isolation — $VIA"
echo
echo "$CRIT critical threads (GET /, ${PAUSE} ms pause between requests) and $BATCH batch threads"
echo "(GET /slow = ${SLOW_MS} ms upstream), tests/progs/payments under connroute, new handle per request,"
echo "HTTPS to nginx, ${DURATION} s per run. *shared*: one lane, max_conns_per_host = 8 for"
echo "everyone; *lanes*: examples/payments.conf (critical 100, batch 10) with thread-name rules."
[ -n "$PAYMENTS_CONF_NOTE" ] && echo "$PAYMENTS_CONF_NOTE"
echo
echo "| config | batch threads | critical p50 ms | p95 ms | p99 ms | critical req/s | batch req/s | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
for name in shared lanes; do
  for nb in 0 "$BATCH"; do
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$nb" "${P50[$name,$nb]}" "${P95[$name,$nb]}" \
      "${P99[$name,$nb]}" "${CRPS[$name,$nb]}" "${BRPS[$name,$nb]:--}" "${ERRS[$name,$nb]}"
  done
done
echo
echo "| config | critical p99 loaded / unloaded | goal (lanes <= ${GOAL}x) |"
echo "|---|---:|---|"
for name in shared lanes; do
  r=$(cr_ratio "${P99[$name,$BATCH]}" "${P99[$name,0]}")
  v=-
  if [ "$name" = lanes ]; then
    if awk -v r="$r" -v g="$GOAL" 'BEGIN { exit !(r != "n/a" && r + 0 <= g) }'; then v=met; else v=MISSED; fi
  fi
  printf '| %s | %sx | %s |\n' "$name" "$r" "$v"
done
r=$(cr_ratio "${P99[shared,$BATCH]}" "${P99[lanes,$BATCH]}")
echo
echo "Loaded critical p99, shared / lanes: ${r}x."
echo
