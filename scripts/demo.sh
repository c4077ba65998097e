#!/usr/bin/env bash
# `make demo`: the seed article's before/after table, reproduced with an UNMODIFIED libcurl
# program (tests/progs/payments.c) against nginx over TLS on loopback.
#
#   scripts/demo.sh [BUILD_DIR]
#
# The program: C critical threads (GET /, answered at once by nginx) and B batch threads
# (GET /slow, which nginx proxies over kept-alive connections to build/upstream's /delay/50),
# a new curl handle per request, and one static shared connection limit (--shared-limit N,
# a semaphore around every perform: one tuned transport's MaxConnsPerHost).
#   before: the program alone, shared limit N.
#   after:  the same program under `connroute run --config examples/payments.conf`, its own
#           limit off: the thread names (critical-*, batch-*) pick the routing keys through
#           the config's [threads] rules, and each lane has its own pool and limit.
# Same threads, same duration. Then the table, and a CDF of critical latency as an SVG
# ($BUILD_DIR/demo/latency.svg; raw latencies beside it).
#
# Environment: DEMO_SECONDS [15] per run, DEMO_CRITICAL [4], DEMO_BATCH [16],
# DEMO_SHARED_LIMIT [8], DEMO_CA=small|system [small]: the clients verify against the demo
# certificate alone, or against the system CA bundle with it appended (what real programs
# load; with OpenSSL 3 loading it costs tens of ms of CPU per new handle, which makes the
# "before" run far slower still).
# Loopback only; every process started here is stopped on exit; every wait is bounded.
set -euo pipefail
B=${1:-build}
B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SECS=${DEMO_SECONDS:-15}
CRIT=${DEMO_CRITICAL:-4}
BATCH=${DEMO_BATCH:-16}
LIMIT=${DEMO_SHARED_LIMIT:-8}
OUT=$B/demo
CONF=$ROOT/examples/payments.conf

for f in "$B/libconnroute.so" "$B/connroute" "$B/upstream" "$B/progs/payments"; do
  [ -e "$f" ] || { echo "demo: $f missing (make all $B/upstream $B/progs/payments)" >&2; exit 1; }
done
command -v curl >/dev/null || { echo "demo: the curl CLI is needed (scripts/deps.sh)" >&2; exit 1; }
command -v python3 >/dev/null || { echo "demo: python3 is needed (scripts/deps.sh)" >&2; exit 1; }

# shellcheck disable=SC2034  # read by bench/lib.sh
CR_BUILD=$B
CR_DIR=$(mktemp -d /tmp/cr-demo.XXXXXX)
# shellcheck disable=SC2034
CR_ME=demo
# shellcheck disable=SC2034
CR_MAX_SECONDS=$((SECS * 2 + 120))
# shellcheck source=../bench/lib.sh
. "$ROOT/bench/lib.sh"
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$OUT"

cr_start_upstream
cr_start_nginx
if [ "${DEMO_CA:-small}" = system ]; then cr_ca_bundle; else
  CA_FILE=$CR_DIR/nginx/cert.pem
  CA_NOTE="the demo certificate alone (DEMO_CA=system: the system bundle as well)"
fi

# The thread-name rules: from the config if it has them, else appended to a private copy.
cr_payments_conf "$CONF"
CONF=$PAYMENTS_CONF
[ -n "$PAYMENTS_CONF_NOTE" ] && echo "note: $PAYMENTS_CONF_NOTE"
"$B/connroute" check "$CONF" >"$CR_DIR/check.out" 2>&1 || { cat "$CR_DIR/check.out" >&2; exit 1; }
lane_val() { # lane_val LANE KEY: effective value from `connroute check`
  awk -v l="[lane $1]" -v k="$2" 'index($0, l) == 1 { f = 1; next } /^\[/ { f = 0 } f && $1 == k { print $3; exit }' "$CR_DIR/check.out"
}

echo "connroute demo: nginx $("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///') over TLS on 127.0.0.1, /slow proxied to build/upstream /delay/$SLOW_MS"
echo "client: tests/progs/payments, $CRIT critical threads (GET /) + $BATCH batch threads (GET /slow),"
echo "        a new curl handle per request, ${SECS} s per run; TLS verified against $CA_NOTE"
echo

declare -A R
# run_case NAME PORT CMD... : one run, its counters in R[NAME,*]
run_case() {
  local name=$1 port=$2 a0 a1 f0 f1 s0 s1 n0 n1 cpu line
  shift 2
  cr_tls_settle
  a0=$(cr_accepts); f0=$(cr_tls_full); s0=$(cr_tls_resumed)
  n0=$(cr_nginx_cpu_ticks)
  cr_ss_start "$port" $((SECS * 5 + 100))
  cr_run_cpu "$CR_DIR/$name.out" "$CR_DIR/$name.err" "$CR_DIR/$name.cpu" \
    timeout $((SECS + 60)) "$@"
  cr_ss_stop
  n1=$(cr_nginx_cpu_ticks)
  a1=$(cr_accepts)
  cr_tls_settle
  f1=$(cr_tls_full); s1=$(cr_tls_resumed)
  grep -v '^slow ' "$CR_DIR/$name.out" | sed 's/^/   /' || true
  grep '^slow ' "$CR_DIR/$name.out" >"$OUT/slow-$name.txt" || true
  if ! grep -q '^total ' "$CR_DIR/$name.out"; then
    echo "demo: the $name run printed no summary:" >&2
    head -c 2000 "$CR_DIR/$name.err" >&2
    exit 1
  fi
  line=$(grep '^class=critical' "$CR_DIR/$name.out")
  R[$name,p50]=$(cr_field p50_ms <<<"$line")
  R[$name,p95]=$(cr_field p95_ms <<<"$line")
  R[$name,p99]=$(cr_field p99_ms <<<"$line")
  R[$name,crps]=$(cr_field rps <<<"$line")
  R[$name,brps]=$(grep '^class=batch' "$CR_DIR/$name.out" | cr_field rps || echo 0)
  line=$(grep '^total ' "$CR_DIR/$name.out")
  R[$name,rps]=$(cr_field rps <<<"$line")
  R[$name,reqs]=$(cr_field requests <<<"$line")
  R[$name,errs]=$(cr_field errors <<<"$line")
  R[$name,conns]=$((a1 - a0 - 1))
  R[$name,estab]=$SS_ESTAB
  R[$name,all]=$SS_ALL
  R[$name,full]=$((f1 - f0))
  R[$name,resumed]=$((s1 - s0))
  cpu=$(cat "$CR_DIR/$name.cpu")
  R[$name,cpu]=$(awk -v c="$cpu" -v n="$((n1 - n0))" -v t="$CLK_TCK" -v r="${R[$name,reqs]}" \
    'BEGIN { if (r > 0) printf "%.1f", (c + n / t) * 1e6 / r; else print 0 }')
}

ARGS=(--critical "$CRIT" --batch "$BATCH" --duration-ms $((SECS * 1000)) --cacert "$CA_FILE")
echo "1. before: the program alone, one shared limit of $LIMIT connections (--shared-limit $LIMIT)"
run_case before "$HTTPS_PORT" "$B/progs/payments" "${ARGS[@]}" --shared-limit "$LIMIT" \
  --slow-ms 500 --dump "$OUT/latency-before.txt" "https://localhost:$HTTPS_PORT"
echo
echo "2. after: the same program under connroute run --config ${CONF#"$ROOT"/}, its own limit off"
echo "   (--shared-limit 0): the limits now live in the lanes, critical max_conns_per_host =" \
  "$(lane_val critical max_conns_per_host), batch max_conns_per_host = $(lane_val batch max_conns_per_host)"
run_case after "$HTTPS_PORT2" "$B/connroute" run --config "$CONF" -- "$B/progs/payments" "${ARGS[@]}" \
  --shared-limit 0 --slow-ms 500 --dump "$OUT/latency-after.txt" "https://localhost:$HTTPS_PORT2"
echo

python3 "$ROOT/bench/latency_svg.py" --out "$OUT/latency.svg" --class critical \
  --title "Critical requests: one shared limit of $LIMIT (before) vs connroute lanes (after)" \
  "before (shared limit $LIMIT)=$OUT/latency-before.txt" "after (connroute lanes)=$OUT/latency-after.txt"

# change from a to b: "-99.8%", "+35%", or "396x" when it grew more than tenfold
chg() { awk -v a="$1" -v b="$2" 'BEGIN {
  if (a + 0 <= 0) { print (b + 0 == 0) ? "0" : "n/a"; exit }
  r = b / a
  if (r >= 10) printf "%.0fx\n", r
  else if (r < 1) printf "%+.1f%%\n", (r - 1) * 100
  else printf "%+.0f%%\n", (r - 1) * 100 }'; }
row() { printf '| %-40s | %12s | %12s | %9s |\n' "$1" "${R[before,$2]}" "${R[after,$2]}" "$(chg "${R[before,$2]}" "${R[after,$2]}")"; }
echo "Result ($SECS s per run, $CRIT critical + $BATCH batch threads, same upstream):"
echo
printf '| %-40s | %12s | %12s | %9s |\n' "metric" "before" "after" "change"
echo "|------------------------------------------|--------------|--------------|-----------|"
row "critical p50 latency (ms)" p50
row "critical p95 latency (ms)" p95
row "critical p99 latency (ms)" p99
row "critical throughput (req/s)" crps
row "batch throughput (req/s)" brps
row "total throughput (req/s)" rps
row "errors" errs
row "TCP connections opened (nginx accepts)" conns
row "peak established sockets (ss)" estab
row "peak sockets incl. TIME_WAIT (ss)" all
row "TLS full handshakes (nginx)" full
row "TLS resumed sessions (nginx)" resumed
row "CPU ms per 1000 req (client + nginx)" cpu
echo
echo "Latencies include every request (failed ones too), measured by the client from"
echo "curl_easy_init to curl_easy_cleanup. TCP connections: nginx stub_status accepts delta."
echo "Sockets: client sockets to nginx's port, sampled 5 times a second with ss."
echo "TLS: nginx logs \$ssl_session_reused for the first request of every connection."
echo
echo "Latency picture (CDF of critical requests): $OUT/latency.svg"
echo "Raw latencies: $OUT/latency-{before,after}.txt (\"class ms ok start_ms thread\" per request);"
echo "libcurl's timings of requests slower than 500 ms: $OUT/slow-{before,after}.txt"
