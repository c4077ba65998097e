#!/usr/bin/env bash
# bench/resilience: one address of a host fails mid-run; the same libcurl client with the
# lane's outlier ejection and circuit breaker, and without, side by side.
#
#   bench/resilience.sh [--no-build] [--threads N] [--eject-time S] [--no-callgrind]
#
# Two build/upstream servers on 127.0.0.1 and 127.0.0.2 with the same port: one host name
# (api.bench) with two addresses, given to libcurl with CURLOPT_RESOLVE (even threads list
# .1 first, odd threads .2 first, as DNS round-robin spreads clients). build/bench/resilience
# (bench/resilience.c): N [4] threads, a persistent handle each, a request every 1 ms, the
# app's own timeout 300 ms, for 17 s. Timeline: healthy 0-3 s; at 3 s 127.0.0.2 starts
# closing every request unanswered (resets), at 6 s it hangs every request instead (no
# answer until the client gives up); at 9 s it heals; the run ends at 17 s.
# Runs: "without" (a lane with connect_timeout = 1s and max_lifetime = 1s: connections are
# made again every second) and "with" (the same lane plus
# eject_after = 3, eject_time = S [2s], eject_max = 50%, breaker_failure_ratio = 0.5,
# breaker_min_requests = 20, breaker_open = 2s).
# Reported: per phase requests, errors, error rate, p50/p99/max; the fault phase after the
# errors that found the address failing (time to eject); the first request 127.0.0.2 served
# after it healed (time to recover). With valgrind: the shim's own instructions per request
# (callgrind, 1 thread, healthy upstream), resilience off and on.
# Goals: errors <= 1% of the fault's requests after ejection (vs ~50% without); p99 during
# the fault <= 2x the healthy p99; recovery within eject_time + one probe.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD=1
THREADS=4
EJECT_S=2
CALLGRIND=1
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) BUILD=0; shift ;;
    --threads) THREADS=${2:?}; shift 2 ;;
    --eject-time) EJECT_S=${2:?}; shift 2 ;;
    --no-callgrind) CALLGRIND=0; shift ;;
    -h|--help) usage ;;
    *) echo "resilience.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" "$B/libconnroute.so" "$B/upstream" "$B/bench/resilience" "$B/progs/curlprog" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
CLIENT=$CR_BUILD/bench/resilience
[ -x "$CLIENT" ] || { echo "resilience.sh: $CLIENT missing (make $B/bench/resilience)" >&2; exit 1; }
CR_DIR=$(mktemp -d /tmp/cr-bench-resilience.XXXXXX)
CR_ME=resilience
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

PORT=$(cr_free_ports 1)
start_on() { # start_on ADDR -> control port in $CR_DIR/ctl.ADDR
  "$CR_BUILD/upstream" --bind "$1" --port "$PORT" --control-port-file "$CR_DIR/ctl.$1" \
    --threads-max 4096 --max-seconds 600 >"$CR_DIR/up.$1.out" 2>"$CR_DIR/up.$1.err" &
  CR_PIDS+=($!)
  cr_wait_file "$CR_DIR/ctl.$1" || cr_die "upstream on $1 did not start: $(head -c 300 "$CR_DIR/up.$1.err")"
}
start_on 127.0.0.1
start_on 127.0.0.2
CTL2=$(cat "$CR_DIR/ctl.127.0.0.2")

# max_lifetime: connections are made again every second, as a long-running client's are
# over time (without new connections, nothing ever goes back to a healed address).
cat >"$CR_DIR/without.conf" <<EOF
[lane default]
connect_timeout = 1s
max_lifetime = 1s
EOF
cat >"$CR_DIR/with.conf" <<EOF
[lane default]
connect_timeout = 1s
max_lifetime = 1s
eject_after = 3
eject_time = ${EJECT_S}s
eject_max = 50%
breaker_failure_ratio = 0.5
breaker_min_requests = 20
breaker_open = 2s
EOF

run() { # run NAME -> $CR_DIR/NAME.out (the client arms the faults on its own clock)
  CONNROUTE_CONFIG=$CR_DIR/$1.conf LD_PRELOAD=$CR_BUILD/libconnroute.so \
    "$CLIENT" "http://api.bench:$PORT/" "api.bench:$PORT" 127.0.0.1 127.0.0.2 "$THREADS" 17000 1 300 3000 9000 \
    "$CTL2" >"$CR_DIR/$1.out" 2>"$CR_DIR/$1.err" || cr_die "client ($1) failed: $(head -c 300 "$CR_DIR/$1.err")"
  echo "  $1:" >&2
  sed 's/^/    /' "$CR_DIR/$1.out" >&2
}
echo "bench/resilience: $THREADS threads, 17 s per run" >&2
run without
run with

f() { grep "^phase $2 " "$CR_DIR/$1.out" | cr_field "$3"; }
fa() { grep "^phase fault_after_" "$CR_DIR/$1.out" | cr_field "$2"; }
g() { cr_field "$2" <"$CR_DIR/$1.out"; }
after_ms() { sed -n 's/^phase fault_after_\([0-9]*\)ms .*/\1/p' "$CR_DIR/$1.out"; }

# Instructions per request, the shim's own (libconnroute.so), healthy upstream, 1 thread:
# curlprog --mode persistent, 2000 minus 1000 requests, per request.
IR_OFF=n/a IR_ON=n/a
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null && command -v callgrind_annotate >/dev/null &&
  [ -x "$CR_BUILD/progs/curlprog" ]; then
  echo "bench/resilience: callgrind" >&2
  ir() { # ir CONF N -> instructions in libconnroute.so
    CONNROUTE_CONFIG=$CR_DIR/$1.conf LD_PRELOAD=$CR_BUILD/libconnroute.so valgrind --tool=callgrind \
      --callgrind-out-file="$CR_DIR/cg.out" "$CR_BUILD/progs/curlprog" --mode persistent --threads 1 \
      --requests "$2" --quiet "http://127.0.0.1:$PORT/" >/dev/null 2>&1 || true
    callgrind_annotate --threshold=100 "$CR_DIR/cg.out" 2>/dev/null |
      awk '/libconnroute.so\]/ { gsub(",", "", $1); s += $1 } END { print s + 0 }'
  }
  IR_OFF=$(( ($(ir without 2000) - $(ir without 1000)) / 1000 ))
  IR_ON=$(( ($(ir with 2000) - $(ir with 1000)) / 1000 ))
fi

HP99=$(f without healthy p99_ms)
WP99=$(f with healthy p99_ms)
cat <<EOF
## bench/resilience — one of two addresses fails (resets, then hangs), ejection and breaker on vs off

$THREADS threads, persistent handles, one request per ms each, app timeout 300 ms; host
\`api.bench\` = 127.0.0.1 and 127.0.0.2 (same port, build/upstream). 0-3 s healthy; 3-6 s
127.0.0.2 closes every request unanswered; 6-9 s it hangs every request; 9-17 s healed.
Both runs: \`max_lifetime = 1s\` (connections made again every second: without new
connections nothing goes back to a healed address, nor probes it). "with": \`eject_after = 3\`, \`eject_time = ${EJECT_S}s\`, \`eject_max = 50%\`,
\`breaker_failure_ratio = 0.5\`, \`breaker_min_requests = 20\`, \`breaker_open = 2s\`.

| phase | without: requests | errors | p50 ms | p99 ms | max ms | with: requests | errors | p50 ms | p99 ms | max ms |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
| healthy 0-3 s | $(f without healthy requests) | $(f without healthy error_pct)% | $(f without healthy p50_ms) | $HP99 | $(f without healthy max_ms) | $(f with healthy requests) | $(f with healthy error_pct)% | $(f with healthy p50_ms) | $WP99 | $(f with healthy max_ms) |
| fault 3-9 s | $(f without fault requests) | $(f without fault error_pct)% | $(f without fault p50_ms) | $(f without fault p99_ms) | $(f without fault max_ms) | $(f with fault requests) | $(f with fault error_pct)% | $(f with fault p50_ms) | $(f with fault p99_ms) | $(f with fault max_ms) |
| fault, after the first errors | $(fa without requests) | $(fa without error_pct)% | $(fa without p50_ms) | $(fa without p99_ms) | $(fa without max_ms) | $(fa with requests) | $(fa with error_pct)% | $(fa with p50_ms) | $(fa with p99_ms) | $(fa with max_ms) |
| healed 9-17 s | $(f without healed requests) | $(f without healed error_pct)% | $(f without healed p50_ms) | $(f without healed p99_ms) | $(f without healed max_ms) | $(f with healed requests) | $(f with healed error_pct)% | $(f with healed p50_ms) | $(f with healed p99_ms) | $(f with healed max_ms) |

- time to eject (the last error of the fault's first second, after its start): with $(g with fault_errors_until_ms) ms
  (errors after it: $(fa with errors) of $(fa with requests)); without, errors go on for the whole fault.
- p99 during the fault / healthy p99: with $(cr_ratio "$(f with fault p99_ms)" "$WP99")x (after ejection
  $(cr_ratio "$(fa with p99_ms)" "$WP99")x); without $(cr_ratio "$(f without fault p99_ms)" "$HP99")x.
- recovery (first request 127.0.0.2 served after it healed): with $(g with recovery_ms) ms; without $(g without recovery_ms) ms
  (eject_time ${EJECT_S} s; an address ejected again by each failed probe stays out up to 10 x eject_time).
- the shim's own instructions per request (callgrind, libconnroute.so only, 1 thread, persistent
  handle, healthy upstream): without $IR_OFF, with $IR_ON.
EOF
