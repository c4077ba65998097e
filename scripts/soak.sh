#!/usr/bin/env bash
# Soak: run mixed workloads under the shim for a bounded time and fail if a long-running
# host's fds, RSS or threads grow without bound.
#
#   scripts/soak.sh [SECONDS]        (default 120; B=build-dir, default build)
#
# What runs, all against a local build/upstream (plain and TLS), all under LD_PRELOAD:
#   - two long-running hosts that are sampled every second: curlprog thread-per-request
#     in lane "critical" (CONNROUTE_KEY=payments/critical, plain HTTP) and curlprog with a
#     fresh handle per request in lane "batch" (CONNROUTE_KEY=reports/batch, HTTPS);
#   - churn: short curlprog runs (fresh handles, GET and POST; unpooled HTTPS with
#     FORBID_REUSE), sockprog connect/get/close, sockprog forks whose child closes the
#     routed socket (fork_close) or exits holding it (fork_hold);
#   - config reloads: the config file is rewritten (atomic rename) every 3 s, alternating
#     two variants, each time with 4 lane names never seen before (many distinct lane
#     names over the process's life); the shim applies it within about two seconds;
#   - faults through the upstream's /inject: drop, rst_accept, short_body, rst_body,
#     hang_headers, kill_idle on the plain server; tls_garbage, rst_accept, kill_idle on TLS.
# Sampling: /proc/PID/fd count, VmRSS and Threads of each long-running host, one table row
# per second. Verdict: FAIL (exit 1) when, after a warm-up, the average of the last third of
# the samples exceeds the average of the first third x 1.5 plus a slack (fds 8, threads 4,
# RSS 8 MiB), when a host crashed (killed by a signal), or when the upstreams still hold
# connections 5 s after every client exited. Everything is bounded by SECONDS (+ 60 s for
# start-up and drain) and every process started here is stopped on exit.
set -uo pipefail

SECS=${1:-120}
B=${B:-build}
case $SECS in ''|*[!0-9]*) echo "soak: SECONDS must be a number, got '$SECS'" >&2; exit 2 ;; esac
[ "$SECS" -ge 15 ] || { echo "soak: at least 15 seconds" >&2; exit 2; }
[ "$SECS" -le 3600 ] || { echo "soak: at most 3600 seconds" >&2; exit 2; }
B=$(cd "$B" 2>/dev/null && pwd) || { echo "soak: no build dir" >&2; exit 2; }
for f in libconnroute.so upstream progs/curlprog progs/sockprog; do
  [ -x "$B/$f" ] || [ -f "$B/$f" ] || { echo "soak: $B/$f missing (make all $B/upstream $B/progs/...)" >&2; exit 2; }
done
command -v curl >/dev/null || { echo "soak: the curl command is needed for /inject" >&2; exit 2; }

T=$(mktemp -d "${TMPDIR:-/tmp}/cr-soak-XXXXXX")
PIDS=()          # everything started here, stopped in cleanup
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for _ in $(seq 50); do
    local alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s; }
START=$(now)
END=$((START + SECS))

# ---- upstreams ---------------------------------------------------------------------------
start_upstream() { # name extra-args...
  local name=$1; shift
  mkdir -p "$T/$name"
  "$B/upstream" --port-file "$T/$name/port" --control-port-file "$T/$name/control" \
    --cert-dir "$T/$name" --max-seconds $((SECS + 60)) "$@" >/dev/null 2>"$T/$name/log" &
  PIDS+=($!)
  for _ in $(seq 100); do
    [ -s "$T/$name/port" ] && [ -s "$T/$name/control" ] && return 0
    sleep 0.1
  done
  echo "soak: upstream $name did not start" >&2
  cat "$T/$name/log" >&2
  exit 2
}
start_upstream plain
start_upstream tls --tls
PLAIN=$(cat "$T/plain/port"); PLAIN_CTL=$(cat "$T/plain/control")
TLS=$(cat "$T/tls/port"); TLS_CTL=$(cat "$T/tls/control")
CERT=$T/tls/cert.pem
ctl() { curl -s -m 2 "http://127.0.0.1:$1$2" >/dev/null 2>&1; }

# ---- config and its reloads --------------------------------------------------------------
write_config() { # variant [generation]
  local v=$1 g=${2:-0} k
  cat > "$T/conf.tmp" <<EOF
[threads]
batch-* = reports/batch

[lane critical]
match = */critical
connect_timeout = 1s
response_header_timeout = $([ "$v" = 0 ] && echo 500ms || echo 800ms)
request_timeout = 3s
retries = 2
max_conns_per_host = $([ "$v" = 0 ] && echo 16 || echo 8)
queue_timeout = 1s
max_idle_per_host = $([ "$v" = 0 ] && echo 8 || echo 4)
keepalive = 30s

[lane batch]
match = */batch
connect_timeout = 2s
request_timeout = 5s
max_idle_per_host = 2
idle_timeout = $([ "$v" = 0 ] && echo 5s || echo 2s)
dscp = cs1

[lane default]
connect_timeout = 2s
request_timeout = 5s
EOF
  # Reload-heavy phase: every generation brings 4 lane names never seen before (their keys
  # match nothing the hosts use). The process keeps at most 256 distinct names: past that,
  # a reload is rejected with one line and the previous config stays (docs/INTERNALS.md).
  for k in 1 2 3 4; do
    printf '\n[lane gen%d-%d]\nmatch = soak/gen%d-%d\nmax_conns_per_host = 2\n' "$g" "$k" "$g" "$k" >>"$T/conf.tmp"
  done
  mv -f "$T/conf.tmp" "$T/connroute.conf"
}
write_config 0
export CONNROUTE_CONFIG=$T/connroute.conf
export CONNROUTE_LOG_FILE=$T/shim.log CONNROUTE_LOG=info
SHIM=$B/libconnroute.so

# ---- the sampled long-running hosts ------------------------------------------------------
DUR_MS=$((SECS * 1000))
CONNROUTE_KEY=payments/critical LD_PRELOAD=$SHIM timeout $((SECS + 60)) \
  "$B/progs/curlprog" --mode thread-per-request --threads 4 --duration-ms $DUR_MS \
  --pause-ms 20 --timeout-ms 4000 --quiet "http://127.0.0.1:$PLAIN/" \
  >"$T/critical.out" 2>"$T/critical.err" &
CRIT=$!; PIDS+=($CRIT)
CONNROUTE_KEY=reports/batch LD_PRELOAD=$SHIM timeout $((SECS + 60)) \
  "$B/progs/curlprog" --mode fresh --threads 2 --duration-ms $DUR_MS --pause-ms 30 \
  --timeout-ms 6000 --cacert "$CERT" --quiet "https://localhost:$TLS/size/4096" \
  >"$T/batch.out" 2>"$T/batch.err" &
BATCH=$!; PIDS+=($BATCH)

# ---- churn, reloads, faults: one bounded loop in the background ----------------------------
churn() {
  local i=0 variant=0 gen=0 next_reload=$(( $(now) + 3 )) next_fault=$(( $(now) + 2 ))
  local faults=(drop rst_accept short_body rst_body "hang_headers&ms=2000" kill_idle)
  while [ "$(now)" -lt "$END" ] && [ $i -lt 100000 ]; do
    i=$((i + 1))
    case $((i % 5)) in
      0) CONNROUTE_KEY=payments/critical LD_PRELOAD=$SHIM timeout 20 "$B/progs/curlprog" \
           --mode fresh --requests 20 --timeout-ms 4000 --quiet "http://127.0.0.1:$PLAIN/" ;;
      1) CONNROUTE_KEY=reports/batch LD_PRELOAD=$SHIM timeout 20 "$B/progs/curlprog" \
           --mode fresh --requests 5 --method POST --data x=1 --timeout-ms 4000 --quiet \
           "http://127.0.0.1:$PLAIN/" ;;
      2) CONNROUTE_KEY=payments/critical LD_PRELOAD=$SHIM timeout 20 "$B/progs/sockprog" \
           tcp=a "connect=a@127.0.0.1:$PLAIN" get=a:/ tcp=b "connect=b@127.0.0.1:$PLAIN" \
           fork_close=b get=a:/ close=a close=b ;;
      3) CONNROUTE_KEY=reports/batch LD_PRELOAD=$SHIM timeout 20 "$B/progs/sockprog" \
           tcp=a "connect=a@127.0.0.1:$PLAIN" fork_hold=a close=a ;;
      4) CONNROUTE_KEY=reports/batch LD_PRELOAD=$SHIM timeout 20 "$B/progs/curlprog" \
           --mode fresh --requests 3 --forbid-reuse --timeout-ms 4000 --cacert "$CERT" --quiet \
           "https://localhost:$TLS/" ;;
    esac >/dev/null 2>>"$T/churn.err"
    local rc=$?
    if [ $rc -gt 128 ] && [ $rc -ne 141 ]; then   # a signal (SIGPIPE: a reset socket)
      echo "churn step $((i % 5)) died with status $rc" >>"$T/crashes"
    fi
    local t; t=$(now)
    if [ "$t" -ge "$next_reload" ]; then
      variant=$((1 - variant)); gen=$((gen + 1)); write_config $variant $gen; next_reload=$((t + 3))
    fi
    if [ "$t" -ge "$next_fault" ]; then
      local f=${faults[$((RANDOM % ${#faults[@]}))]}
      if [ "$f" = kill_idle ]; then ctl "$PLAIN_CTL" "/inject?fault=kill_idle&rst=$((RANDOM % 2))"
      else ctl "$PLAIN_CTL" "/inject?fault=$f&count=$((1 + RANDOM % 3))"; fi
      case $((RANDOM % 3)) in
        0) ctl "$TLS_CTL" "/inject?fault=tls_garbage&count=1" ;;
        1) ctl "$TLS_CTL" "/inject?fault=rst_accept&count=1" ;;
        2) ctl "$TLS_CTL" "/inject?fault=kill_idle" ;;   # the batch host's pooled conns
      esac
      next_fault=$((t + 2))
    fi
  done
  echo "$i" >"$T/churn.count"
}
churn &
CHURN=$!; PIDS+=($CHURN)

# ---- sampling ------------------------------------------------------------------------------
sample() { # pid -> "fds rss_kb threads", or nothing when gone
  local p=$1 fds rss thr
  fds=$(ls "/proc/$p/fd" 2>/dev/null | wc -l) || return
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
  thr=$(awk '/^Threads:/ {print $2}' "/proc/$p/status" 2>/dev/null)
  [ -n "$rss" ] && [ -n "$thr" ] && echo "$fds $rss $thr"
}
# curlprog runs under `timeout`: sample its child (curlprog itself)
child_of() { pgrep -P "$1" | head -n1; }
forget() { # pid: waited for, never to be signalled again (its id may be reused)
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
sleep 1
CRIT_P=$(child_of $CRIT); BATCH_P=$(child_of $BATCH)
[ -n "$CRIT_P" ] && [ -n "$BATCH_P" ] || { echo "soak: the hosts did not start" >&2; exit 2; }

printf '%5s  %-26s  %-26s\n' "" "critical (tpr, http)" "batch (fresh, https)"
printf '%5s  %6s %9s %7s    %6s %9s %7s\n' "t" "fds" "rss_kb" "threads" "fds" "rss_kb" "threads"
: >"$T/samples"
for _ in $(seq $((SECS + 5))); do
  a=$(sample "$CRIT_P"); b=$(sample "$BATCH_P")
  [ -z "$a" ] && [ -z "$b" ] && break
  t=$(( $(now) - START ))
  echo "$t ${a:-- - -} ${b:-- - -}" >>"$T/samples"
  printf '%5s  %6s %9s %7s    %6s %9s %7s\n' "$t" ${a:-- - -} ${b:-- - -}
  sleep 1
done

# ---- drain and verdict ---------------------------------------------------------------------
wait $CRIT; crit_rc=$?; forget $CRIT
wait $BATCH; batch_rc=$?; forget $BATCH
for _ in $(seq 150); do kill -0 $CHURN 2>/dev/null || break; sleep 0.2; done
kill $CHURN 2>/dev/null; wait $CHURN 2>/dev/null; forget $CHURN

fail=0
verdict() { echo "soak: $*"; }
for h in "critical $crit_rc $T/critical.out" "batch $batch_rc $T/batch.out"; do
  set -- $h
  summary=$(grep -a '^summary' "$3" | tail -n1)
  verdict "$1: exit $2; ${summary:-no summary}"
  if [ "$2" -gt 1 ]; then verdict "FAIL: $1 did not end normally (exit $2)"; fail=1; fi
done
[ -s "$T/crashes" ] && { verdict "FAIL: churn: $(sort "$T/crashes" | uniq -c | tr '\n' ';')"; fail=1; }
verdict "churn: $(cat "$T/churn.count" 2>/dev/null || echo '?') client runs; $(grep -c 'reloaded' "$T/shim.log" 2>/dev/null || echo 0) reloads applied; faults fired: plain $(curl -s -m 2 "http://127.0.0.1:$PLAIN_CTL/stats" | awk '/^faults_fired/ {print $2}'), tls $(curl -s -m 2 "http://127.0.0.1:$TLS_CTL/stats" | awk '/^faults_fired/ {print $2}')"

# growth: columns 2-4 critical, 5-7 batch; warm-up = the first 5 samples or 10 %
awk -v fail=0 '
  { n++; for (c = 2; c <= 7; c++) v[n, c] = $c }
  END {
    split("x fds rss_kb threads fds rss_kb threads", name, " ")
    split("x 8 8192 4 8 8192 4", slack, " ")
    w = int(n / 10); if (w < 5) w = 5
    m = n - w; if (m < 6) { print "soak: too few samples (" n ")"; exit 1 }
    third = int(m / 3)
    bad = 0
    for (c = 2; c <= 7; c++) {
      f = 0; l = 0; fk = 0; lk = 0
      for (i = w + 1; i <= w + third; i++) if (v[i, c] != "-") { f += v[i, c]; fk++ }
      for (i = n - third + 1; i <= n; i++) if (v[i, c] != "-") { l += v[i, c]; lk++ }
      if (!fk || !lk) continue
      f /= fk; l /= lk
      lim = f * 1.5 + slack[c]
      who = c <= 4 ? "critical" : "batch"
      printf "soak: %-8s %-7s first third %10.1f  last third %10.1f  limit %10.1f  %s\n", who, name[c], f, l, lim, (l > lim ? "GROWS" : "ok")
      if (l > lim) bad = 1
    }
    exit bad
  }' "$T/samples" || fail=1

# every client is gone: the upstreams must not hold their connections
for s in "plain $PLAIN_CTL" "tls $TLS_CTL"; do
  set -- $s
  open=-1
  for _ in $(seq 50); do
    open=$(curl -s -m 2 "http://127.0.0.1:$2/stats" | awk '/^open / {print $2}')
    [ "$open" = 0 ] && break
    sleep 0.1
  done
  verdict "$1 upstream: open connections after the run: ${open:-?}"
  [ "$open" = 0 ] || { verdict "FAIL: $1 upstream still holds ${open:-?} connections"; fail=1; }
done

if [ $fail = 0 ]; then verdict "PASS ($SECS s)"; else verdict "FAIL"; fi
exit $fail
