#!/usr/bin/env bash
# bench/overhead: what the shim costs calls it does not route.
#
#   bench/overhead.sh [--reps N] [--duration S] [--no-build] [--no-callgrind]
#
# (a) build/bench/overhead (bench/overhead.c): close() of untracked fds (EBADF, eventfd,
#     pipe, UDP, TCP never connected, AF_UNIX socketpair) and connect() of UDP sockets, in
#     tight bounded loops; every batch timed through the hooked name and through libc's own
#     function in the same process, the difference per call (median of the run's batches)
#     is what the hook adds. Three variants of the same binary, N [7] alternating runs each,
#     pinned to one CPU when taskset exists, the median of the runs reported:
#       none    no LD_PRELOAD
#       shim    LD_PRELOAD=libconnroute.so, no config (the pass-through default lane)
#       config  LD_PRELOAD=libconnroute.so, CONNROUTE_CONFIG=examples/payments.conf (lanes
#               with work for raw sockets, so connect() takes the routing path)
#     If valgrind is present, callgrind counts the instructions per call inside the timed
#     loop (user space only, noise-free) for the same variants.
# (b) build/progs/curlprog --mode persistent (one handle per thread, reused: every perform
#     goes through the shim's perform hook, no connection to save), 4 threads, against nginx
#     on loopback over HTTP and HTTPS, none vs shim, N [7] alternating runs of S [2] seconds;
#     median req/s, client CPU per request and the ratios; with valgrind, the client's
#     instructions per request (callgrind, 1 thread, HTTP).
# Goals: <= 5 ns added per untracked close(); <= 2% throughput loss in (b).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
REPS=7
PREPS=7
DURATION=2
BUILD=1
CALLGRIND=1
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS=${2:?}; PREPS=${2:?}; shift 2 ;;
    --duration) DURATION=${2:?}; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --no-callgrind) CALLGRIND=0; shift ;;
    -h|--help) usage ;;
    *) echo "overhead.sh: unknown argument '$1'" >&2; usage ;;
  esac
done
B=${B:-build}
[ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/curlprog" "$B/bench/overhead" >&2
case "$B" in /*) CR_BUILD=$B ;; *) CR_BUILD=$ROOT/$B ;; esac
OVH=$CR_BUILD/bench/overhead
[ -x "$OVH" ] || { echo "overhead.sh: $OVH missing (make $B/bench/overhead)" >&2; exit 1; }
CR_DIR=$(mktemp -d /tmp/cr-bench-overhead.XXXXXX)
CR_ME=overhead
. bench/lib.sh
trap 'cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM
SHIM=$CR_BUILD/libconnroute.so
CONF=$ROOT/examples/payments.conf
PIN=()
command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ] && PIN=(taskset -c 1)

variant_env() { # variant_env NAME -> env assignments, one per line
  case "$1" in
    none) ;;
    shim) echo "LD_PRELOAD=$SHIM" ;;
    config) echo "LD_PRELOAD=$SHIM"; echo "CONNROUTE_CONFIG=$CONF" ;;
  esac
}
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }

# ---- (a) timing ----
CASES=(close_ebadf close_eventfd close_pipe close_udp close_tcp close_unixpair connect_udp sendto_udp)
VARIANTS=(none shim config)
echo "bench/overhead (a): $REPS runs per variant${PIN:+, pinned to CPU 1}" >&2
for r in $(seq 1 "$REPS"); do
  for v in "${VARIANTS[@]}"; do
    mapfile -t ev < <(variant_env "$v")
    env "${ev[@]}" "${PIN[@]}" "$OVH" >"$CR_DIR/a-$v-$r.out" 2>"$CR_DIR/err" ||
      { echo "overhead.sh: $v run failed: $(head -c 500 "$CR_DIR/err")" >&2; exit 1; }
  done
done
declare -A NS DIFF
for v in "${VARIANTS[@]}"; do
  for c in "${CASES[@]}"; do
    NS[$v,$c]=$(cat "$CR_DIR"/a-"$v"-*.out | awk -v c="case=$c" '$1 == c { print $0 }' | cr_field libc_ns_per_call | median)
    DIFF[$v,$c]=$(cat "$CR_DIR"/a-"$v"-*.out | awk -v c="case=$c" '$1 == c { print $0 }' | cr_field diff_ns | median)
  done
done

# ---- (a) instructions ----
declare -A IR
HAVE_CG=0
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
  HAVE_CG=1
  echo "bench/overhead (a): callgrind" >&2
  for v in "${VARIANTS[@]}"; do
    mapfile -t ev < <(variant_env "$v")
    for c in "${CASES[@]}"; do
      f=timed_close
      [ "$c" = connect_udp ] && f=timed_connect
      [ "$c" = sendto_udp ] && f=timed_sendto
      env "${ev[@]}" valgrind --tool=callgrind --callgrind-out-file="$CR_DIR/cg.$v.$c" \
        --toggle-collect="$f" "$OVH" --case "$c" --batch 256 --batches 10 --hooked-only >/dev/null 2>"$CR_DIR/cg.err" ||
        { echo "overhead.sh: callgrind $v $c failed" >&2; HAVE_CG=0; break 2; }
      IR[$v,$c]=$(awk '/^totals:/ { printf "%.1f", $2 / 2560 }' "$CR_DIR/cg.$v.$c")
    done
  done
fi

# ---- (b) persistent libcurl client ----
cr_start_upstream
cr_start_nginx
CA_FILE=$CR_DIR/nginx/cert.pem
declare -A RPS CPU
echo "bench/overhead (b): curlprog --mode persistent, 4 threads, $PREPS x ${DURATION}s per variant" >&2
for proto in http https; do
  if [ "$proto" = http ]; then url="http://127.0.0.1:$HTTP_PORT/"; else url="https://localhost:$HTTPS_PORT/"; fi
  for r in $(seq 1 "$PREPS"); do
    for v in none shim; do
      mapfile -t ev < <(variant_env "$v")
      cr_run_cpu "$CR_DIR/b.out" "$CR_DIR/b.err" "$CR_DIR/b.cpu" env "${ev[@]}" timeout $((DURATION + 30)) \
        "$CR_BUILD/progs/curlprog" --mode persistent --threads 4 --duration-ms $((DURATION * 1000)) --quiet \
        --cacert "$CA_FILE" "$url"
      line=$(grep '^summary' "$CR_DIR/b.out" || true)
      [ -n "$line" ] || { echo "overhead.sh: curlprog $proto $v failed: $(head -c 500 "$CR_DIR/b.err")" >&2; exit 1; }
      n=$(cr_field requests <<<"$line")
      us=$(awk -v c="$(cat "$CR_DIR/b.cpu")" -v n="$n" 'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print 0 }')
      echo "  $proto $v #$r: $line client_cpu_us_per_req=$us" >&2
      cr_field rps <<<"$line" >>"$CR_DIR/b-$proto-$v"
      echo "$us" >>"$CR_DIR/bcpu-$proto-$v"
    done
  done
  for v in none shim; do
    RPS[$proto,$v]=$(median <"$CR_DIR/b-$proto-$v")
    CPU[$proto,$v]=$(median <"$CR_DIR/bcpu-$proto-$v")
  done
done
# Instructions per request in the client (callgrind: 2000 minus 1000 requests, 1 thread, HTTP).
declare -A BIR
HAVE_BCG=0
if [ "$CALLGRIND" = 1 ] && command -v valgrind >/dev/null; then
  HAVE_BCG=1
  echo "bench/overhead (b): callgrind, instructions per request" >&2
  for v in none shim; do
    mapfile -t ev < <(variant_env "$v")
    for n in 1000 2000; do
      env "${ev[@]}" valgrind --tool=callgrind --callgrind-out-file="$CR_DIR/cgb.$v.$n" \
        "$CR_BUILD/progs/curlprog" --mode persistent --threads 1 --requests "$n" --quiet \
        "http://127.0.0.1:$HTTP_PORT/" >/dev/null 2>"$CR_DIR/cg.err" || { HAVE_BCG=0; break 2; }
    done
    BIR[$v]=$(awk '/^totals:/ { t[FILENAME] = $2 } END { printf "%.0f", (t[ARGV[2]] - t[ARGV[1]]) / 1000 }' \
      "$CR_DIR/cgb.$v.1000" "$CR_DIR/cgb.$v.2000")
  done
fi

# ---- report ----
echo "## bench/overhead"
echo
echo "### (a) close() / connect() on fds the shim does not route"
echo
pinned=
[ ${#PIN[@]} -gt 0 ] && pinned=", pinned to one CPU"
echo "Each run times every batch of 256 calls twice, alternately: through the name the program"
echo "links against (the shim's hook when preloaded) and through libc's own function (looked up"
echo "in libc.so.6, never hooked). *added* = the median over the run's 200 batches of"
echo "(hooked - libc) ns per call, then the median of $REPS runs$pinned; the in-process"
echo "difference cancels what varies between processes. *none* calibrates the method (should"
echo "be ~0). *shim*: LD_PRELOAD, no config; *config*: LD_PRELOAD with examples/payments.conf,"
echo "whose lanes have work for raw sockets, so connect() takes the routing path."
echo
echo "| call | libc ns/call | added, none | added, shim | added, config |"
echo "|---|---:|---:|---:|---:|"
for c in "${CASES[@]}"; do
  printf '| %s | %s | %s | %s | %s |\n' "$c" "${NS[none,$c]}" "${DIFF[none,$c]}" "${DIFF[shim,$c]}" "${DIFF[config,$c]}"
done
echo
if [ "$HAVE_CG" = 1 ]; then
  echo "Instructions per call (callgrind, user space inside the timed loop; the kernel's work is"
  echo "not counted, so this is exactly what the hook adds):"
  echo
  echo "| call | none | shim | config | added by shim | added with config |"
  echo "|---|---:|---:|---:|---:|---:|"
  for c in "${CASES[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s |\n' "$c" "${IR[none,$c]}" "${IR[shim,$c]}" "${IR[config,$c]}" \
      "$(awk -v a="${IR[shim,$c]}" -v b="${IR[none,$c]}" 'BEGIN { printf "%+.1f", a - b }')" \
      "$(awk -v a="${IR[config,$c]}" -v b="${IR[none,$c]}" 'BEGIN { printf "%+.1f", a - b }')"
  done
  echo
else
  echo "(valgrind not present: no instruction counts)"
  echo
fi
v=MISSED
awk -v d="${DIFF[shim,close_ebadf]}" 'BEGIN { exit !(d + 0 <= 5) }' && v=met
echo -n "Goal <= 5 ns added per untracked close(): $v — ${DIFF[shim,close_ebadf]} ns on the cheapest"
echo " close (EBADF, the steadiest figure; the others: the table)."
if [ "$HAVE_CG" = 1 ]; then
  echo "$(awk -v a="${IR[shim,close_eventfd]}" -v b="${IR[none,close_eventfd]}" 'BEGIN { printf "%.0f", a - b }') instructions added per close."
fi
echo
echo "### (b) persistent-handle libcurl client, 4 threads, nginx on loopback"
echo
echo "curlprog --mode persistent (one reused handle per thread): the shim has no connection to"
echo "save here, only its perform hook to add. Medians of $PREPS alternating runs of ${DURATION} s;"
echo "client CPU = user + sys of the client process per request."
echo
echo "| proto | none req/s | shim req/s | shim / none | goal (>= 0.98) | none CPU us/req | shim CPU us/req | CPU shim / none |"
echo "|---|---:|---:|---:|---|---:|---:|---:|"
for proto in http https; do
  r=$(cr_ratio "${RPS[$proto,shim]}" "${RPS[$proto,none]}")
  v=MISSED
  awk -v r="$r" 'BEGIN { exit !(r != "n/a" && r + 0 >= 0.98) }' && v=met
  printf '| %s | %s | %s | %sx | %s | %s | %s | %sx |\n' "$proto" "${RPS[$proto,none]}" "${RPS[$proto,shim]}" \
    "$r" "$v" "${CPU[$proto,none]}" "${CPU[$proto,shim]}" "$(cr_ratio "${CPU[$proto,shim]}" "${CPU[$proto,none]}")"
done
echo
if [ "$HAVE_BCG" = 1 ]; then
  echo "Client instructions per request (callgrind, 1 thread, HTTP, requests 1001-2000): none"
  echo "${BIR[none]}, shim ${BIR[shim]} ($(awk -v a="${BIR[shim]}" -v b="${BIR[none]}" 'BEGIN { printf "%+d, %+.1f%%", a - b, (a - b) * 100 / b }'))."
  echo
fi
echo "Run-to-run spread of req/s on this machine is large (see the runner's log for every run);"
echo "the CPU and instruction figures are the steadier measure of what the hook costs."
echo
