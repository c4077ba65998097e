#!/usr/bin/env bash
# bench/reuse: what the shim gives an unmodified libcurl program that does
# curl_easy_init/perform/cleanup per request (the common anti-pattern).
#
#   bench/reuse.sh [--duration S] [--threads N] [--rounds R] [--small-ca] [--no-reference]
#                  [--no-build] [--check]
#
# Against a private nginx on loopback (scripts/nginx.sh), over HTTP and HTTPS, three clients
# one after another in the same run, each for S seconds (default 5) with N threads (8):
#   (1) fresh       build/progs/curlprog --mode fresh, no shim       (the anti-pattern)
#   (2) fresh+shim  the same, LD_PRELOAD=build/libconnroute.so        (no config: lane default)
#   (3) persistent  curlprog --mode persistent, no shim              (one handle per thread:
#                                                                     the limit to reach)
# and two reference rows (skip them with --no-reference):
#   (4) fresh+share curlprog --mode fresh --share-per-thread, no shim (each thread its own
#                   CURLSH with CONNECT+SSL_SESSION+DNS: what the program itself could get by
#                   sharing, keeping its new handle per request)
#   (5) persistent+shim  (3) under the shim: what the shim costs a well-behaved program
# --rounds R (default 1) repeats the whole sequence R times, interleaved, and reports for
# each client the round with the median req/s (loopback on a few CPUs is noisy: use 3+ to
# judge a 5% target).
# For each: req/s, p50/p99 latency, TCP connections nginx accepted (stub_status delta; over
# HTTPS each one is a TLS handshake, nginx does not count those apart) and requests. Then the
# ratios (2)/(1) and (2)/(3). Target: (2)/(3) >= 0.95 on both; --check exits 1 if missed.
#
# CA file: by default every client verifies against a copy of the system bundle
# (/etc/ssl/certs/ca-certificates.crt, ~140 certificates) with nginx's certificate appended,
# because that is what real programs load, and loading it for every new connection is a
# large part of the anti-pattern's cost. --small-ca uses nginx's certificate alone.
# Not part of `make test`: it measures, it does not assert (unless --check).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
DURATION=5
THREADS=8
ROUNDS=1
SMALL_CA=0
REFERENCE=1
BUILD=1
CHECK=0
TARGET=0.95

usage() { sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) DURATION=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --rounds) ROUNDS=${2:?}; shift 2 ;;
    --small-ca) SMALL_CA=1; shift ;;
    --system-ca) SMALL_CA=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --no-reference) REFERENCE=0; shift ;;
    --check) CHECK=1; shift ;;
    -h|--help) usage ;;
    *) echo "reuse.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
[[ "$DURATION" =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 1 ] || { echo "reuse.sh: --duration wants whole seconds >= 1" >&2; exit 2; }
[[ "$THREADS" =~ ^[0-9]+$ ]] && [ "$THREADS" -ge 1 ] || { echo "reuse.sh: bad --threads" >&2; exit 2; }
[[ "$ROUNDS" =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] || { echo "reuse.sh: bad --rounds" >&2; exit 2; }

B=${B:-build}   # the Makefile's build dir variable (e.g. B=build-address)
if [ "$BUILD" = 1 ]; then
  make -s B="$B" all "$B/upstream" "$B/progs/curlprog" >&2
fi
case "$B" in /*) BD=$B ;; *) BD=$ROOT/$B ;; esac
PROG=$BD/progs/curlprog
SHIM=$BD/libconnroute.so
[ -x "$PROG" ] && [ -f "$SHIM" ] || { echo "reuse.sh: $PROG or $SHIM missing (make)" >&2; exit 1; }
command -v curl >/dev/null || { echo "reuse.sh: the curl CLI is needed to read stub_status" >&2; exit 1; }

DIR=$(mktemp -d /tmp/cr-bench-reuse.XXXXXX)
cleanup() {
  bash "$ROOT/scripts/nginx.sh" stop "$DIR" >/dev/null 2>&1 || true
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash scripts/nginx.sh start "$DIR" >/dev/null
# shellcheck disable=SC1091
. "$DIR/ports.env"

SYS_BUNDLE=/etc/ssl/certs/ca-certificates.crt
if [ "$SMALL_CA" = 0 ] && [ -s "$SYS_BUNDLE" ]; then
  cat "$SYS_BUNDLE" "$DIR/cert.pem" >"$DIR/ca-bundle.pem"
  CA=$DIR/ca-bundle.pem
  CA_NOTE="system bundle + nginx cert ($(grep -c 'BEGIN CERTIFICATE' "$CA") certificates, $(($(stat -c %s "$CA") / 1024)) KiB)"
else
  [ "$SMALL_CA" = 0 ] && echo "reuse.sh: no $SYS_BUNDLE, using the small CA file" >&2
  CA=$DIR/cert.pem
  CA_NOTE="nginx cert only (1 certificate)"
fi

# accepts counter of nginx; each read is a connection of its own (see delta below).
accepts() {
  curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT/stub_status" |
    awk 'f { print $1; exit } /accepts handled requests/ { f = 1 }'
}

field() { # field NAME < summary line
  sed -n "s/.* $1=\([0-9.]*\).*/\1/p"
}

declare -A RPS P50 P99 CONNS REQS ERRS

# run_client ROUND PROTO NAME PRELOAD(0|1) MODE URL [curlprog options...]
run_client() {
  local round=$1 proto=$2 name=$3 preload=$4 mode=$5 url=$6 a0 a1 out line env=() k
  shift 6
  k=$proto,$name,$round
  [ "$preload" = 1 ] && env=(LD_PRELOAD="$SHIM")
  a0=$(accepts)
  out=$(env "${env[@]}" timeout $((DURATION + 60)) "$PROG" --mode "$mode" --threads "$THREADS" \
          --duration-ms $((DURATION * 1000)) --quiet --cacert "$CA" "$@" "$url" 2>"$DIR/err") || true
  a1=$(accepts)
  line=$(grep '^summary ' <<<"$out" || true)
  if [ -z "$line" ]; then
    echo "reuse.sh: $proto $name produced no summary:" >&2
    head -c 2000 "$DIR/err" >&2
    line="summary requests=0 ok=0 errors=0 secs=0 rps=0 p50_ms=0 p99_ms=0"
  fi
  RPS[$k]=$(field rps <<<"$line")
  P50[$k]=$(field p50_ms <<<"$line")
  P99[$k]=$(field p99_ms <<<"$line")
  REQS[$k]=$(field requests <<<"$line")
  ERRS[$k]=$(field errors <<<"$line")
  CONNS[$k]=$(( a1 - a0 - 1 ))
  echo "  round $round $proto $name: $line conns=${CONNS[$k]}" >&2
}

# Copies the figures of the round with the median req/s to the key PROTO,NAME.
pick_median() {
  local proto=$1 name=$2 r best
  best=$(for r in $(seq 1 "$ROUNDS"); do echo "${RPS[$proto,$name,$r]} $r"; done |
         sort -g | awk '{ a[NR] = $2 } END { print a[int((NR + 1) / 2)] }')
  for arr in RPS P50 P99 REQS ERRS CONNS; do
    declare -n ref=$arr
    ref[$proto,$name]=${ref[$proto,$name,$best]}
    unset -n ref
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

echo "bench/reuse: $THREADS threads, ${DURATION}s per client, nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on loopback, $(nproc) CPUs" >&2
for round in $(seq 1 "$ROUNDS"); do
  for proto in http https; do
    if [ "$proto" = http ]; then url="http://127.0.0.1:$HTTP_PORT/"; else url="https://localhost:$HTTPS_PORT/"; fi
    run_client "$round" "$proto" fresh 0 fresh "$url"
    run_client "$round" "$proto" fresh+shim 1 fresh "$url"
    run_client "$round" "$proto" persistent 0 persistent "$url"
    if [ "$REFERENCE" = 1 ]; then
      run_client "$round" "$proto" fresh+share 0 fresh "$url" --share-per-thread
      run_client "$round" "$proto" persistent+shim 1 persistent "$url"
    fi
  done
done
CLIENTS=(fresh fresh+shim persistent)
[ "$REFERENCE" = 1 ] && CLIENTS+=(fresh+share persistent+shim)
for proto in http https; do
  for name in "${CLIENTS[@]}"; do pick_median "$proto" "$name"; done
done

echo
echo "## bench/reuse — $THREADS threads, ${DURATION} s per client, $ROUNDS round(s) (median shown), nginx on loopback"
echo
echo "CA file: $CA_NOTE. libcurl: $(curl-config --version 2>/dev/null || echo unknown). CPUs: $(nproc)."
echo
echo "| proto | client | req/s | p50 ms | p99 ms | TCP conns accepted | requests | errors |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for proto in http https; do
  for name in "${CLIENTS[@]}"; do
    k=$proto,$name
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$proto" "$name" "${RPS[$k]}" "${P50[$k]}" \
      "${P99[$k]}" "${CONNS[$k]}" "${REQS[$k]}" "${ERRS[$k]}"
  done
done
echo
echo "| proto | shim / fresh (req/s) | shim / persistent (req/s) | target shim/persistent >= $TARGET |"
echo "|---|---:|---:|---|"
missed=0
for proto in http https; do
  r1=$(ratio "${RPS[$proto,fresh+shim]}" "${RPS[$proto,fresh]}")
  r3=$(ratio "${RPS[$proto,fresh+shim]}" "${RPS[$proto,persistent]}")
  if awk -v r="$r3" -v t="$TARGET" 'BEGIN { exit !(r != "n/a" && r + 0 >= t) }'; then
    verdict=met
  else
    verdict=MISSED; missed=1
  fi
  printf '| %s | %sx | %sx | %s |\n' "$proto" "$r1" "$r3" "$verdict"
done
echo
echo "Over HTTPS every accepted connection is one TLS handshake (nginx counts no handshakes)."
if [ "$REFERENCE" = 1 ]; then
  echo
  echo "| proto | fresh+share / persistent | persistent+shim / persistent |"
  echo "|---|---:|---:|"
  for proto in http https; do
    printf '| %s | %sx | %sx |\n' "$proto" "$(ratio "${RPS[$proto,fresh+share]}" "${RPS[$proto,persistent]}")" \
      "$(ratio "${RPS[$proto,persistent+shim]}" "${RPS[$proto,persistent]}")"
  done
fi
[ "$CHECK" = 1 ] && [ "$missed" = 1 ] && exit 1
exit 0
