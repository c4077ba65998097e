#!/usr/bin/env bash
# bench/sidecar: the usual fix for a client that opens a connection per request is a local
# proxy that keeps upstream connections alive (a sidecar). The same unmodified client,
# through a local HAProxy vs under the shim.
#
#   bench/sidecar.sh [--duration S] [--threads N] [--no-build]
#
# Client: build/progs/curlprog --mode fresh (curl_easy_init/perform/cleanup per request),
# N [8] threads, S [8] seconds per run, GET / of nginx (TLS, loopback). Three runs:
#   direct    the client alone, HTTPS to nginx: a TCP + TLS handshake per request (context)
#   sidecar   the client, plain HTTP to a local HAProxy on 127.0.0.1 (a new loopback TCP
#             connection per request), which keeps TLS connections to nginx alive
#             (http-reuse always, server keep-alive, TLS session reuse)
#   shim      the client under LD_PRELOAD=libconnroute.so (no config), HTTPS to nginx
# Reported: req/s, p50/p99, nginx accepts, and CPU seconds per 1000 requests of every process
# involved (client: user+sys of the process; HAProxy and nginx workers: /proc/PID/stat
# utime+stime deltas). Clients verify nginx's certificate (the test certificate alone).
# Goal: shim >= 1.5x sidecar throughput, at lower CPU per request.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=8
THREADS=8
BUILD=1
GOAL=1.5
usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) usage ;;
    *) echo "sidecar.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/curlprog" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CR_DIR=$(mktemp -d /tmp/cr-bench-sidecar.XXXXXX)
CR_ME=sidecar
CR_MAX_SECONDS=$((DURATION * 3 + 300))
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

if ! command -v haproxy >/dev/null; then
  echo "## bench/sidecar"
  echo
  echo "Skipped: haproxy is not installed (Debian package haproxy)."
  echo
  echo "sidecar.sh: haproxy not installed, skipped" >&2
  exit 0
fi

cr_start_upstream
cr_start_nginx
CA_FILE=$CR_DIR/nginx/cert.pem
HA_PORT=$(cr_free_ports 1)
cat >"$CR_DIR/haproxy.cfg" <<EOF
# Written by bench/sidecar.sh: a local sidecar on loopback.
global
    maxconn 4000
    nbthread $(nproc)
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    option http-keep-alive
frontend sidecar
    bind 127.0.0.1:$HA_PORT
    default_backend nginx
backend nginx
    http-reuse always
    server nginx 127.0.0.1:$HTTPS_PORT ssl verify required ca-file $CA_FILE sni str(localhost) alpn http/1.1 pool-max-conn 200
EOF
haproxy -c -q -f "$CR_DIR/haproxy.cfg" >&2 || { echo "sidecar.sh: bad haproxy config" >&2; exit 1; }
haproxy -db -f "$CR_DIR/haproxy.cfg" >"$CR_DIR/haproxy.out" 2>&1 &
HA_PID=$!
CR_PIDS+=("$HA_PID")
ok=0
for _ in $(seq 1 100); do
  if curl -s --max-time 2 "http://127.0.0.1:$HA_PORT/" 2>/dev/null | grep -q ok; then ok=1; break; fi
  sleep 0.05
done
[ "$ok" = 1 ] || { echo "sidecar.sh: haproxy did not answer: $(tail -c 500 "$CR_DIR/haproxy.out")" >&2; exit 1; }

declare -A RPS P50 P99 REQS ERRS CONNS CCPU HCPU NCPU
run() { # run NAME URL PRELOAD
  local name=$1 url=$2 preload=$3 a0 a1 h0 h1 n0 n1 line env=()
  [ "$preload" = 1 ] && env=(LD_PRELOAD="$CR_BUILD/libconnroute.so")
  a0=$(cr_accepts); h0=$(cr_cpu_ticks "$HA_PID"); n0=$(cr_nginx_cpu_ticks)
  cr_run_cpu "$CR_DIR/$name.out" "$CR_DIR/$name.err" "$CR_DIR/$name.cpu" env "${env[@]}" \
    timeout $((DURATION + 60)) "$CR_BUILD/progs/curlprog" --mode fresh --threads "$THREADS" \
    --duration-ms $((DURATION * 1000)) --quiet --cacert "$CA_FILE" "$url"
  h1=$(cr_cpu_ticks "$HA_PID"); n1=$(cr_nginx_cpu_ticks); a1=$(cr_accepts)
  line=$(grep '^summary' "$CR_DIR/$name.out" || true)
  [ -n "$line" ] || { echo "sidecar.sh: $name printed no summary: $(head -c 1000 "$CR_DIR/$name.err")" >&2; exit 1; }
  RPS[$name]=$(cr_field rps <<<"$line")
  P50[$name]=$(cr_field p50_ms <<<"$line")
  P99[$name]=$(cr_field p99_ms <<<"$line")
  REQS[$name]=$(cr_field requests <<<"$line")
  ERRS[$name]=$(cr_field errors <<<"$line")
  CONNS[$name]=$((a1 - a0 - 1))
  CCPU[$name]=$(cat "$CR_DIR/$name.cpu")
  HCPU[$name]=$(awk -v t="$((h1 - h0))" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')
  NCPU[$name]=$(awk -v t="$((n1 - n0))" -v k="$CLK_TCK" 'BEGIN { printf "%.2f", t / k }')
  [ "$name" = sidecar ] || HCPU[$name]=0
  echo "  $name: $line nginx_accepts=${CONNS[$name]} cpu_s client=${CCPU[$name]} haproxy=${HCPU[$name]} nginx=${NCPU[$name]}" >&2
}

echo "bench/sidecar: curlprog --mode fresh, $THREADS threads, ${DURATION}s per run" >&2
run direct "https://localhost:$HTTPS_PORT/" 0
run sidecar "http://127.0.0.1:$HA_PORT/" 0
run shim "https://localhost:$HTTPS_PORT/" 1

per1k() { # per1k NAME VALUE_S -> CPU ms per 1000 requests
  awk -v c="$2" -v n="${REQS[$1]}" 'BEGIN { if (n > 0) printf "%.1f", c * 1e6 / n; else print "n/a" }'
}
echo "## bench/sidecar — HAProxy $(haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 }') as a local keep-alive sidecar vs the shim"
echo
echo "Client: curlprog --mode fresh (new handle per request), $THREADS threads, ${DURATION} s per run,"
echo "GET / of nginx over TLS on loopback. *sidecar*: the client speaks plain HTTP to HAProxy on"
echo "127.0.0.1 (one new loopback connection per request), HAProxy keeps TLS connections to"
echo "nginx alive (http-reuse always). *shim*: LD_PRELOAD=libconnroute.so, no config, HTTPS"
echo "straight to nginx. *direct*: the client alone, for reference."
echo
echo "| run | req/s | p50 ms | p99 ms | errors | nginx accepts | client CPU s | HAProxy CPU s | nginx CPU s | CPU ms / 1000 req (all) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
declare -A TOT
for n in direct sidecar shim; do
  TOT[$n]=$(awk -v a="${CCPU[$n]}" -v b="${HCPU[$n]}" -v c="${NCPU[$n]}" 'BEGIN { printf "%.3f", a + b + c }')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "${RPS[$n]}" "${P50[$n]}" "${P99[$n]}" \
    "${ERRS[$n]}" "${CONNS[$n]}" "${CCPU[$n]}" "${HCPU[$n]}" "${NCPU[$n]}" "$(per1k "$n" "${TOT[$n]}")"
done
echo
r=$(cr_ratio "${RPS[shim]}" "${RPS[sidecar]}")
cs=$(per1k shim "${TOT[shim]}")
cc=$(per1k sidecar "${TOT[sidecar]}")
v=MISSED
awk -v r="$r" -v g="$GOAL" -v a="$cs" -v b="$cc" 'BEGIN { exit !(r != "n/a" && r + 0 >= g && a + 0 < b + 0) }' && v=met
echo "shim / sidecar: ${r}x req/s, CPU per request $(cr_ratio "$cs" "$cc")x; p99 ${P99[shim]} vs ${P99[sidecar]} ms."
echo "Goal (shim >= ${GOAL}x sidecar throughput at lower CPU): $v."
echo
