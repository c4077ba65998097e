# shellcheck shell=bash disable=SC2034
# Shared helpers of scripts/demo.sh and bench/*.sh (sourced, not run).
#
# A private, loopback-only test bed in one directory ($CR_DIR):
#   cr_start_upstream       build/upstream, plain HTTP, its /delay/MS endpoint    -> UP_PORT
#   cr_start_nginx          nginx (TLS + plain), fronting the upstream            -> HTTPS_PORT,
#                           HTTPS_PORT2 (a second TLS port, same server: runs that follow
#                           each other can count their own sockets), HTTP_PORT (plain, with
#                           stub_status at /stub_status)
#       locations, on both ports:  = /slow  proxy_pass to the upstream's /delay/$SLOW_MS
#                                           over kept-alive connections (upstream keepalive)
#                                  /        return 200 "ok\n"
#       every TLS connection's first request is logged to $CR_DIR/tls-conns.log as
#       "$ssl_session_reused $connection" ("." full handshake, "r" resumed session).
#   cr_start_delayproxy MS TARGET_PORT   build/progs/delayproxy in front of TARGET -> DP_PORT
#   cr_start_haproxy ...    see bench/sidecar.sh
#   cr_cleanup              stops everything started here (by pid), bounded waits
# Counters: cr_accepts (nginx accepts, one connection of its own per read: deltas are
# b - a - 1), cr_tls_full / cr_tls_resumed (lines of tls-conns.log), cr_ss_start PORT /
# cr_ss_stop (peak client sockets to PORT, sampled 5 times a second: established, and all
# states including TIME_WAIT; cr_ss_stop sets SS_ESTAB and SS_ALL),
# cr_cpu_ticks PID... (utime + stime of those processes, in clock ticks; cr_nginx_cpu_ticks
# for nginx's workers).
# Every wait is bounded; every process is remembered and stopped by cr_cleanup.

: "${CR_BUILD:?CR_BUILD (absolute build dir) must be set before sourcing bench/lib.sh}"
: "${CR_DIR:?CR_DIR (private temp dir) must be set before sourcing bench/lib.sh}"
SLOW_MS=${SLOW_MS:-50}
NGINX_BIN=${NGINX:-$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)}
CR_PIDS=()
CR_NGINX_DIRS=()
CR_SS_PID=
CLK_TCK=$(getconf CLK_TCK)

cr_die() { echo "${CR_ME:-bench}: $*" >&2; exit 1; }

# N free TCP ports on 127.0.0.1 (bound to port 0 together, then released).
cr_free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
ss = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss:
    s.close()
EOF
}

# Waits up to ~5 s for FILE to be non-empty.
cr_wait_file() {
  local i
  for i in $(seq 1 100); do [ -s "$1" ] && return 0; sleep 0.05; done
  return 1
}

cr_start_upstream() {
  local d=$CR_DIR/upstream
  mkdir -p "$d"
  "$CR_BUILD/upstream" --port-file "$d/port" --control-port-file "$d/ctl" \
    --threads-max 4096 --max-seconds "${CR_MAX_SECONDS:-900}" >"$d/out" 2>"$d/err" &
  CR_PIDS+=($!)
  cr_wait_file "$d/port" && cr_wait_file "$d/ctl" || cr_die "build/upstream did not start: $(head -c 500 "$d/err")"
  UP_PORT=$(cat "$d/port")
  UP_CTL=$(cat "$d/ctl")
}

cr_make_cert() {
  local d=$1
  [ -s "$d/cert.pem" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$d/key.pem" -out "$d/cert.pem" -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 ||
    cr_die "openssl could not make a certificate"
}

# The CA file every client uses: the system bundle (what real programs load, ~140
# certificates) with the test certificate appended; the test certificate alone if the
# system has no bundle. Sets CA_FILE and CA_NOTE.
cr_ca_bundle() {
  local sys=/etc/ssl/certs/ca-certificates.crt
  if [ -s "$sys" ] && [ "${CR_SMALL_CA:-0}" != 1 ]; then
    cat "$sys" "$CR_DIR/nginx/cert.pem" >"$CR_DIR/ca-bundle.pem"
    CA_FILE=$CR_DIR/ca-bundle.pem
    CA_NOTE="system CA bundle + the test certificate ($(grep -c 'BEGIN CERTIFICATE' "$CA_FILE") certificates)"
  else
    CA_FILE=$CR_DIR/nginx/cert.pem
    CA_NOTE="the test certificate alone"
  fi
}

cr_nginx_temp_paths() {
  local d=$1 v m
  v=$("$NGINX_BIN" -V 2>&1 || true)
  echo "    client_body_temp_path $d/client_body;"
  echo "    proxy_temp_path $d/proxy;"
  for m in fastcgi uwsgi scgi; do
    if grep -q -- "--http-$m-temp-path" <<<"$v" && ! grep -q -- "--without-http_${m}_module" <<<"$v"; then
      echo "    ${m}_temp_path $d/$m;"
    fi
  done
}

cr_nginx_conf() {
  local d=$1 http=$2 https=$3 https2=$4 user=""
  [ "$(id -u)" -eq 0 ] && user="user root;"
  cat >"$d/nginx.conf" <<EOF
# Written by bench/lib.sh: private loopback instance.
$user
worker_processes ${NGINX_WORKERS:-2};
pid $d/nginx.pid;
error_log $d/error.log warn;
events {
    worker_connections 8192;
}
http {
    access_log off;
$(cr_nginx_temp_paths "$d")
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    default_type text/plain;
    map \$connection_requests \$cr_first_request { 1 1; default 0; }
    log_format cr_conn '\$ssl_session_reused \$connection';
    upstream cr_slow {
        server 127.0.0.1:$UP_PORT;
        keepalive 128;
    }
    server {
        listen 127.0.0.1:$http;
        server_name localhost;
        location = /stub_status {
            stub_status on;
            allow 127.0.0.1;
            deny all;
        }
        location = /slow {
            proxy_pass http://cr_slow/delay/$SLOW_MS;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location / {
            return 200 "ok\n";
        }
    }
    server {
        listen 127.0.0.1:$https ssl;
        listen 127.0.0.1:$https2 ssl;
        server_name localhost;
        ssl_certificate $d/cert.pem;
        ssl_certificate_key $d/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log $d/tls-conns.log cr_conn buffer=64k flush=100ms if=\$cr_first_request;
        location = /slow {
            proxy_pass http://cr_slow/delay/$SLOW_MS;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location / {
            return 200 "ok\n";
        }
    }
}
EOF
}

cr_nginx_master() {
  local d=$1 pid
  [ -s "$d/nginx.pid" ] || return 1
  pid=$(tr -dc '0-9' <"$d/nginx.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# Worker pids of the nginx in $CR_DIR/nginx.
cr_nginx_workers() {
  local m
  m=$(cr_nginx_master "$CR_DIR/nginx") || return 0
  pgrep -P "$m" 2>/dev/null | tr '\n' ' '
}

cr_start_nginx() {
  local d=$CR_DIR/nginx attempt ports http https https2 i
  [ -x "$NGINX_BIN" ] || cr_die "nginx not found (scripts/deps.sh installs nginx-light)"
  "$NGINX_BIN" -V 2>&1 | grep -q -- '--without-http_proxy_module' && cr_die "this nginx has no proxy module"
  mkdir -p "$d"
  cr_make_cert "$d"
  : >"$d/tls-conns.log"
  for attempt in 1 2 3; do
    ports=$(cr_free_ports 3) || cr_die "python3 is needed to pick free ports"
    read -r http https https2 <<<"$ports"
    cr_nginx_conf "$d" "$http" "$https" "$https2"
    rm -f "$d/nginx.pid"
    if timeout 10 "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -g 'daemon on;' 2>>"$d/error.log"; then
      CR_NGINX_DIRS+=("$d")
      for i in $(seq 1 100); do
        if curl -s --max-time 2 "http://127.0.0.1:$http/stub_status" 2>/dev/null | grep -q 'Active connections'; then
          HTTP_PORT=$http
          HTTPS_PORT=$https
          HTTPS_PORT2=$https2
          return 0
        fi
        sleep 0.05
      done
    fi
    cr_stop_nginx "$d"
  done
  tail -n 5 "$d/error.log" >&2 || true
  cr_die "nginx did not start (see $d/error.log)"
}

cr_stop_nginx() {
  local d=$1 pid kids k i
  pid=$(cr_nginx_master "$d") || { rm -f "$d/nginx.pid"; return 0; }
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  for k in $kids; do
    for i in $(seq 1 40); do kill -0 "$k" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$k" 2>/dev/null && grep -q nginx "/proc/$k/comm" 2>/dev/null; then
      kill -KILL "$k" 2>/dev/null || true
    fi
  done
  rm -f "$d/nginx.pid"
}

# cr_start_delayproxy MS TARGET_PORT -> sets DP_PORT. One-way delay MS each way.
# (Call it directly, not in $(...): the pid must reach CR_PIDS of this shell.)
cr_start_delayproxy() {
  local ms=$1 target=$2 f
  f=$CR_DIR/delayproxy-$ms-$target.port
  rm -f "$f"
  "$CR_BUILD/progs/delayproxy" --delay-ms "$ms" --target "127.0.0.1:$target" --port-file "$f" \
    --max-seconds "${CR_MAX_SECONDS:-900}" >/dev/null 2>>"$CR_DIR/delayproxy.err" &
  CR_PIDS+=($!)
  cr_wait_file "$f" || cr_die "delayproxy did not start: $(tail -c 500 "$CR_DIR/delayproxy.err")"
  DP_PORT=$(cat "$f")
}

# nginx's accepted-connections counter (each read is one more connection).
cr_accepts() {
  curl -s --max-time 5 "http://127.0.0.1:$HTTP_PORT/stub_status" |
    awk 'f { print $1; exit } /accepts handled requests/ { f = 1 }'
}

# TLS connections that carried a request: full handshakes / resumed sessions, so far.
# nginx flushes the log every 100 ms: call cr_tls_settle first.
cr_tls_settle() { sleep 0.3; }
cr_tls_full() { awk '$1 == "." { n++ } END { print n + 0 }' "$CR_DIR/nginx/tls-conns.log"; }
cr_tls_resumed() { awk '$1 == "r" { n++ } END { print n + 0 }' "$CR_DIR/nginx/tls-conns.log"; }

# Peak numbers of client sockets to PORT (ss, 5 samples a second, at most MAX samples):
# established ones, and all (TIME_WAIT included: the churn of short-lived connections).
cr_ss_start() {
  local port=$1 max=${2:-3000}
  : >"$CR_DIR/ss.samples"
  (
    for _ in $(seq 1 "$max"); do
      e=$(ss -Htn state established "( dport = :$port )" 2>/dev/null | wc -l)
      a=$(ss -Htan "( dport = :$port )" 2>/dev/null | wc -l)
      echo "$e $a"
      sleep 0.2
    done
  ) >>"$CR_DIR/ss.samples" &
  CR_SS_PID=$!
}
# Sets SS_ESTAB and SS_ALL (call it directly, not in $(...): it forgets the sampler's pid).
cr_ss_stop() {
  if [ -n "$CR_SS_PID" ]; then
    kill "$CR_SS_PID" 2>/dev/null || true
    wait "$CR_SS_PID" 2>/dev/null || true
    CR_SS_PID=
  fi
  read -r SS_ESTAB SS_ALL < <(awk '$1 > e { e = $1 } $2 > a { a = $2 } END { print e + 0, a + 0 }' "$CR_DIR/ss.samples")
}

# utime + stime (clock ticks) of the nginx workers.
cr_nginx_cpu_ticks() {
  local w
  read -ra w <<<"$(cr_nginx_workers)"
  cr_cpu_ticks "${w[@]}"
}

# utime + stime (clock ticks) summed over the given pids (threads included).
cr_cpu_ticks() {
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + ${v:-0}))
  done
  echo "$t"
}

# cr_run_cpu OUT ERR CPUFILE CMD... : runs CMD (foreground), stdout to OUT, stderr to ERR,
# and writes the CPU seconds (user + sys) CMD and its children used to CPUFILE.
cr_run_cpu() {
  local out=$1 err=$2 cpuf=$3
  shift 3
  (
    "$@" >"$out" 2>"$err" || true
    # `times` must run in this shell, not in a pipeline's subshell (whose children are none)
    times >"$cpuf.raw"
    awk 'NR == 2 {
      n = split($0, f, " "); s = 0
      for (i = 1; i <= n; i++) { split(f[i], a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] }
      printf "%.3f\n", s }' "$cpuf.raw" >"$cpuf"
  )
}

# field NAME < "key=value ..." line
cr_field() { sed -n "s/^\(.* \)\{0,1\}$1=\([-0-9.]*\).*/\2/p" | head -n 1; }
cr_ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 > 0) printf "%.2f", a / b; else print "n/a" }'; }
# change in % from a (before) to b (after)
cr_pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0) printf "%+.0f%%", (b - a) * 100 / a; else print "n/a" }'; }

cr_cleanup() {
  local p i d had_e=0
  case $- in *e*) had_e=1 ;; esac
  set +e
  [ -n "$CR_SS_PID" ] && kill "$CR_SS_PID" 2>/dev/null
  for d in "${CR_NGINX_DIRS[@]}"; do cr_stop_nginx "$d"; done
  for p in "${CR_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${CR_PIDS[@]}"; do
    for i in $(seq 1 60); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
    kill -KILL "$p" 2>/dev/null || true
  done
  wait 2>/dev/null
  [ "$had_e" = 1 ] && set -e
  return 0
}

# --- callgrind benches (bench/percost.sh, bench/permulti.sh) ---------------------------

# cr_callgrind_init PROG ARGS... : their common start. Parses [--reps N] [--shim FILE]
# [--no-build] into REPS (3), SHIM (default: $CR_BUILD/libconnroute.so) and BUILD; unless
# --no-build, builds the shim, the upstream and $B/progs/PROG; needs valgrind. An unknown
# argument calls the script's usage function when it has one (it also serves -h/--help),
# else exits 2.
cr_callgrind_init() {
  local prog=$1
  shift
  REPS=3
  BUILD=1
  SHIM=
  while [ $# -gt 0 ]; do
    case "$1" in
      --reps) REPS=${2:?}; shift 2 ;;
      --shim) SHIM=${2:?}; shift 2 ;;
      --no-build) BUILD=0; shift ;;
      -h|--help) if declare -F usage >/dev/null; then usage; fi; cr_bad_arg "$1" ;;
      *) cr_bad_arg "$1" ;;
    esac
  done
  [ "$BUILD" = 1 ] && make -s B="$B" all "$B/upstream" "$B/progs/$prog" >&2
  SHIM=${SHIM:-$CR_BUILD/libconnroute.so}
  command -v valgrind >/dev/null || { echo "$CR_ME.sh: valgrind is needed" >&2; exit 1; }
}
cr_bad_arg() {
  echo "$CR_ME.sh: unknown argument '$1'" >&2
  if declare -F usage >/dev/null; then usage; fi
  exit 2
}

# cr_cg_marginal NAME OKPAT ENV... -- PROG ARGS... : the marginal user-space instructions
# of one operation of PROG: runs `env ENV... valgrind --tool=callgrind PROG ARGS` (under
# ${CR_CG_PREFIX[@]}, e.g. taskset, when set) with every argument "@N@" replaced by N1, then by
# N2, and prints (instructions at N2 - those at N1) / (N2 - N1), counted in the client's
# own threads: callgrind numbers threads in creation order, 1 main and 2 the program's
# worker; connroute's background thread, which wakes once a second whatever the load,
# comes later and is left out. Each run's stdout must contain OKPAT ("@N@" replaced too);
# a failed run exits with its output.
cr_cg_marginal() {
  local name=$1 okpat=$2 n a b
  shift 2
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  for n in $N1 $N2; do
    local args=("${@//@N@/$n}")
    rm -f "$CR_DIR/cg.$name.$n"-*
    env ${envs[@]+"${envs[@]}"} ${CR_CG_PREFIX[@]+"${CR_CG_PREFIX[@]}"} valgrind --tool=callgrind \
      --separate-threads=yes --callgrind-out-file="$CR_DIR/cg.$name.$n" "${args[@]}" \
      >"$CR_DIR/out" 2>"$CR_DIR/err" ||
      { echo "$CR_ME.sh: $name failed: $(head -c 500 "$CR_DIR/err")" >&2; exit 1; }
    grep -q -- "${okpat//@N@/$n}" "$CR_DIR/out" || { echo "$CR_ME.sh: $name: $(cat "$CR_DIR/out")" >&2; exit 1; }
  done
  a=$(cr_cg_client_ir "$CR_DIR/cg.$name.$N1")
  b=$(cr_cg_client_ir "$CR_DIR/cg.$name.$N2")
  echo $(((b - a) / (N2 - N1)))
}
cr_cg_client_ir() {
  awk '/^totals:/ { s += $2 } END { printf "%.0f", s }' "$1"-01 "$1"-02
}

# Median of the numbers on stdin, one a line (0 for none).
cr_median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print 0 }'; }

# examples/payments.conf with the thread-name rules payments' threads need; a private copy
# with them appended when the file has no [threads] section. Sets PAYMENTS_CONF, and
# PAYMENTS_CONF_NOTE when a copy was made.
cr_payments_conf() {
  local src=$1
  PAYMENTS_CONF=$src
  PAYMENTS_CONF_NOTE=
  if ! grep -q '^[[:space:]]*\[threads\]' "$src"; then
    PAYMENTS_CONF=$CR_DIR/payments.conf
    cp "$src" "$PAYMENTS_CONF"
    printf '\n[threads]\ncritical-* = payment-gateway/critical\nbatch-* = reports/batch\n' >>"$PAYMENTS_CONF"
    PAYMENTS_CONF_NOTE="(examples/payments.conf has no [threads] section: a copy with critical-* and batch-* rules appended was used)"
  fi
}

# Versions for reports.
cr_versions() {
  local c o n h
  c=$(curl-config --version 2>/dev/null | sed 's/libcurl //' || echo unknown)
  o=$(openssl version 2>/dev/null | awk '{ print $2 }' || echo unknown)
  n=$("$NGINX_BIN" -v 2>&1 | sed 's/.*nginx\///' || echo unknown)
  h=$(haproxy -v 2>/dev/null | awk 'NR == 1 { print $3 }' || true)
  echo "libcurl $c, OpenSSL $o, nginx $n${h:+, HAProxy $h}"
}
