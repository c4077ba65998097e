#!/usr/bin/env bash
# bench/limitq: the limit queue under contention. build/progs/connflood (tests/progs/
# connflood.c) runs T threads that each open a new TCP connection per request (blocking
# connect, GET with Connection: close, read to EOF, close) against build/upstream for S
# seconds, through a limit of L connections per destination:
#   [lane default]  max_conns_per_host = L, queue_timeout = 5s
# so all but L threads wait in connroute's queue at any moment. Reported per thread count:
# requests completed, errors (queue timeouts), requests/s, and the client's own CPU time
# (getrusage: user and system seconds, and system microseconds per request) — a queue that wakes every waiter on every release
# shows as system time; one that wakes only the next in line does not.
#
#   CR_BUILD=/abs/build bench/limitq.sh [--seconds S] [--threads "8 64 200"] [--limit L]
#                                       [--path /P] [BUILD...]
#
# Each BUILD (default: $CR_BUILD, else build) is a build directory whose libconnroute.so is
# measured; give two (e.g. an old tree's and this one's) to compare them side by side. A row
# "none" (no shim, no limit) is measured once per thread count as the reference. The client
# and the upstream come from the first BUILD that has them ($CR_BUILD first). Prints a
# markdown table. Loopback only; every process is stopped at exit. About
# (1 + #BUILD) * #threads * S seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SECS=5
THREADS="8 64 200"
LIMIT=4
URLPATH=/
BUILDS=()
usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECS=${2:?}; shift 2 ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --limit) LIMIT=${2:?}; shift 2 ;;
    --path) URLPATH=${2:?}; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "limitq.sh: unknown argument '$1'" >&2; usage ;;
    *) BUILDS+=("$(cd "$1" && pwd)"); shift ;;
  esac
done
[ ${#BUILDS[@]} -gt 0 ] || BUILDS=("$(cd "${CR_BUILD:-$ROOT/build}" && pwd)")
for b in "${BUILDS[@]}"; do
  [ -e "$b/libconnroute.so" ] || { echo "limitq.sh: $b/libconnroute.so missing" >&2; exit 1; }
done

# The client and the server: the same binaries for every row, only the shim differs.
CLIENT='' SERVER=''
for b in ${CR_BUILD:+"$CR_BUILD"} "${BUILDS[@]}" "$ROOT/build"; do
  [ -z "$CLIENT" ] && [ -x "$b/progs/connflood" ] && CLIENT=$b/progs/connflood
  [ -z "$SERVER" ] && [ -x "$b/upstream" ] && SERVER=$b
done
[ -n "$CLIENT" ] || { echo "limitq.sh: no progs/connflood (make build/progs/connflood)" >&2; exit 1; }
[ -n "$SERVER" ] || { echo "limitq.sh: no upstream (make build/upstream)" >&2; exit 1; }

CR_DIR=$(mktemp -d /tmp/cr-limitq-XXXXXX)
export CR_DIR
CR_BUILD=$SERVER
export CR_BUILD
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
export CR_MAX_SECONDS=$(( (1 + ${#BUILDS[@]}) * $(wc -w <<<"$THREADS") * (SECS + 5) + 60 ))
cr_start_upstream

CONF=$CR_DIR/limitq.conf
printf '[lane default]\nmax_conns_per_host = %s\nqueue_timeout = 5s\n' "$LIMIT" >"$CONF"

# One run: prints the connflood line. $1 = threads, $2 = shim (empty: none).
one() {
  local t=$1 so=$2
  if [ -n "$so" ]; then
    env LD_PRELOAD="$so" CONNROUTE_CONFIG="$CONF" \
      timeout $((SECS + 30)) "$CLIENT" "$UP_PORT" "$t" "$SECS" "$URLPATH"
  else
    timeout $((SECS + 30)) "$CLIENT" "$UP_PORT" "$t" "$SECS" "$URLPATH"
  fi
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

echo "limit queue: max_conns_per_host = $LIMIT, a new connection per request (GET $URLPATH), $SECS s per run"
echo "client: $CLIENT; server: $SERVER/upstream on 127.0.0.1:$UP_PORT; $(nproc) CPU(s)"
echo
echo "| threads | shim | requests | errors | req/s | user CPU s | system CPU s | system CPU µs/request |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
for t in $THREADS; do
  rows=("none|")
  for b in "${BUILDS[@]}"; do rows+=("$b|$b/libconnroute.so"); done
  for row in "${rows[@]}"; do
    name=${row%%|*} so=${row#*|}
    line=$(one "$t" "$so" 2>"$CR_DIR/err") || true
    if [ -z "$line" ]; then
      echo "| $t | $name | failed: $(head -c 200 "$CR_DIR/err" | tr '\n' ' ') | | | | | |"
      continue
    fi
    req=$(field requests "$line") sys=$(field sys_s "$line")
    per=$(awk -v s="$sys" -v r="$req" 'BEGIN { if (r > 0) printf "%.0f", s * 1e6 / r; else print "-" }')
    echo "| $t | $name | $req | $(field errors "$line") | $(field rps "$line") |" \
         "$(field user_s "$line") | $sys | $per |"
  done
done
