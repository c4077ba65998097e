#!/usr/bin/env bash
# bench/latency: reuse and isolation when the network has latency. Loopback has none, so a
# handshake costs only CPU there; build/progs/delayproxy (tests/progs/delayproxy.c) sits
# between the clients and nginx and delays every byte by D ms each way (and the client's
# first bytes by one more round trip, as a TCP handshake would), so connection setup costs
# real round trips: TCP 1 RTT + TLS 1.3 1 RTT + the request 1 RTT for a new connection,
# 1 RTT for a reused one.
#
#   bench/latency.sh [--delays "1 10"] [--duration S] [--threads N] [--iso-duration S]
#                    [--no-build]
#
# For each delay D (ms, one way) [1 and 10]:
#   reuse-style: build/progs/curlprog, N [8] threads, S [5] seconds each, HTTPS via the proxy:
#     fresh       --mode fresh, no shim (a new connection, TCP + TLS, per request)
#     fresh+shim  the same under LD_PRELOAD=libconnroute.so (no config)
#     persistent  --mode persistent, no shim (one handle per thread: the limit)
#   isolation:   bench/isolation.sh --delay-ms D (shared limit vs lanes, loaded/unloaded)
# Clients verify nginx's certificate (the test certificate alone).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DELAYS="1 10"
DURATION=5
ISO_DURATION=8
THREADS=8
BUILD=1
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --delays) DELAYS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --iso-duration) ISO_DURATION=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage ;;
    *) echo "latency.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/curlprog" "$B/progs/payments" "$B/progs/delayproxy" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
[ -x "$CR_BUILD/progs/delayproxy" ] || { echo "latency.sh: $CR_BUILD/progs/delayproxy missing" >&2; exit 1; }
CR_DIR=$(mktemp -d /tmp/cr-bench-latency.XXXXXX)
CR_ME=latency
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

cr_start_upstream
cr_start_nginx
CA_FILE=$CR_DIR/nginx/cert.pem
declare -A RPS P50 P99 CONNS ERRS
for d in $DELAYS; do
  cr_start_delayproxy "$d" "$HTTPS_PORT"
  port=$DP_PORT
  url="https://localhost:$port/"
  echo "bench/latency: ${d} ms one-way via delayproxy :$port, $THREADS threads, ${DURATION}s per client" >&2
  for name in fresh fresh+shim persistent; do
    env=()
    mode=fresh
    [ "$name" = fresh+shim ] && env=(LD_PRELOAD="$CR_BUILD/libconnroute.so")
    [ "$name" = persistent ] && mode=persistent
    a0=$(cr_accepts)
    line=$(env "${env[@]}" timeout $((DURATION + 60)) "$CR_BUILD/progs/curlprog" --mode "$mode" \
      --threads "$THREADS" --duration-ms $((DURATION * 1000)) --quiet --cacert "$CA_FILE" "$url" \
      2>"$CR_DIR/err" | grep '^summary' || true)
    a1=$(cr_accepts)
    [ -n "$line" ] || { echo "latency.sh: $name printed no summary: $(head -c 1000 "$CR_DIR/err")" >&2; exit 1; }
    k=$d,$name
    RPS[$k]=$(cr_field rps <<<"$line")
    P50[$k]=$(cr_field p50_ms <<<"$line")
    P99[$k]=$(cr_field p99_ms <<<"$line")
    ERRS[$k]=$(cr_field errors <<<"$line")
    CONNS[$k]=$((a1 - a0 - 1))
    echo "  ${d}ms $name: $line conns=${CONNS[$k]}" >&2
  done
done

echo "## bench/latency — through delayproxy (one-way delay per direction)"
echo
echo "curlprog, $THREADS threads, ${DURATION} s per client, HTTPS to nginx through"
echo "build/progs/delayproxy. A new connection costs 3 round trips (TCP, TLS 1.3, request), a"
echo "reused one 1: the ideal fresh/persistent ratio is 1/3."
echo
echo "| one-way delay | client | req/s | p50 ms | p99 ms | TCP conns accepted | errors |"
echo "|---:|---|---:|---:|---:|---:|---:|"
for d in $DELAYS; do
  for name in fresh fresh+shim persistent; do
    k=$d,$name
    printf '| %s ms | %s | %s | %s | %s | %s | %s |\n' "$d" "$name" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" \
      "${CONNS[$k]}" "${ERRS[$k]}"
  done
done
echo
echo "| one-way delay | shim / fresh (req/s) | shim / persistent (req/s) |"
echo "|---:|---:|---:|"
for d in $DELAYS; do
  printf '| %s ms | %sx | %sx |\n' "$d" "$(cr_ratio "${RPS[$d,fresh+shim]}" "${RPS[$d,fresh]}")" \
    "$(cr_ratio "${RPS[$d,fresh+shim]}" "${RPS[$d,persistent]}")"
done
echo
cr_cleanup
CR_PIDS=()
CR_NGINX_DIRS=()
for d in $DELAYS; do
  B=$CR_BUILD bash bench/isolation.sh --no-build --duration "$ISO_DURATION" --delay-ms "$d"
done
