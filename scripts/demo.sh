#!/usr/bin/env bash
# `make demo`: starts the local test server, runs UNMODIFIED programs with and
# without connroute, and prints what each lane applied and what the server saw.
# Loopback only; every process it starts is stopped on exit.
set -euo pipefail
B=${1:-build}
B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONF=$ROOT/examples/payments.conf
T=$(mktemp -d)
UP_PID=
cleanup() { [ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT

"$B/upstream" --port-file "$T/port" --control-port-file "$T/ctl" --max-seconds 120 >/dev/null &
UP_PID=$!
for _ in $(seq 100); do [ -s "$T/port" ] && [ -s "$T/ctl" ] && break; sleep 0.05; done
PORT=$(cat "$T/port"); CTL=$(cat "$T/ctl")
stat() { curl -s "http://127.0.0.1:$CTL/stats" | awk -v k="$1" '$1==k{print $2}'; }
reset() { curl -s "http://127.0.0.1:$CTL/reset" >/dev/null; }

echo "connroute demo — test server on 127.0.0.1:$PORT, config $CONF"
echo
echo "1. One unmodified socket client, two routing keys (CONNROUTE_KEY), two lanes:"
for key in payment-gateway/critical reports/batch; do
  out=$(CONNROUTE_CONFIG=$CONF CONNROUTE_KEY=$key "$B/connroute" run -- "$B/progs/sockprog" \
        tcp=a "connect=a@127.0.0.1:$PORT" opts=a "get=a:/conn" close=a)
  opts=$(grep '^opts' <<<"$out" | sed 's/^opts a //')
  printf '   %-26s %s\n' "$key" "$opts"
done
echo "   (tos 184 = DSCP EF, 32 = CS1; keepidle from the lane's keepalive; priority = SO_PRIORITY)"
echo

echo "2. An unmodified libcurl client that opens a new handle per request (the anti-pattern),"
echo "   8 threads x 250 requests, without and with connroute:"
printf '   %-18s %10s %10s %10s %14s\n' "" "req/s" "p50 ms" "p99 ms" "TCP accepted"
for run in without with; do
  reset
  if [ $run = without ]; then
    line=$("$B/progs/curlprog" --mode fresh --threads 8 --requests 250 --quiet "http://127.0.0.1:$PORT/")
  else
    line=$(CONNROUTE_CONFIG=$CONF CONNROUTE_KEY=payment-gateway/critical "$B/connroute" run -- \
           "$B/progs/curlprog" --mode fresh --threads 8 --requests 250 --quiet "http://127.0.0.1:$PORT/")
  fi
  rps=$(sed -n 's/.* rps=\([0-9.]*\).*/\1/p' <<<"$line")
  p50=$(sed -n 's/.* p50_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  p99=$(sed -n 's/.* p99_ms=\([0-9.]*\).*/\1/p' <<<"$line")
  printf '   %-18s %10s %10s %10s %14s\n' "$run connroute" "$rps" "$p50" "$p99" "$(stat accepted)"
done
echo
echo "3. The lane limit: batch allows 10 connections per host; 12 threads holding slow requests:"
reset
line=$(CONNROUTE_CONFIG=$CONF CONNROUTE_KEY=reports/batch "$B/connroute" run -- \
       "$B/progs/curlprog" --mode fresh --threads 12 --requests 1 --quiet "http://127.0.0.1:$PORT/delay/300")
echo "   client: $line"
echo "   server: peak concurrent connections = $(stat max_open) (limit 10; the others queued, queue_timeout 3s)"
