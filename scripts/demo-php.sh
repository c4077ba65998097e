#!/usr/bin/env bash
# `make demo-php`: a PHP shop's before/after. nginx + php-fpm serve a PHP page that calls an
# HTTPS upstream the usual way, a new curl handle per request (curl_init, curl_exec,
# curl_close); ab loads the page. php-curl and libcurl are loaded by PHP with RTLD_DEEPBIND,
# which connroute reaches by rebinding (docs/INTERNALS.md, "RTLD_DEEPBIND hosts").
#
#   scripts/demo-php.sh [BUILD_DIR]
#
#   the upstream: nginx over TLS on 127.0.0.1 (bench/lib.sh), its /slow proxied over kept-alive
#                 connections to build/upstream's /delay/$DEMO_PHP_SLOW_MS
#   the front:    a second nginx, plain HTTP, /index.php through FastCGI to php-fpm
#                 (pm = static, $DEMO_PHP_WORKERS workers)
#   before:       php-fpm as installed
#   after:        php-fpm whose master was started with LD_PRELOAD=libconnroute.so in its
#                 environment, as an operator does (systemd Environment=, an init script);
#                 no config file: the built-in default lane
# Same load both times: ab -n $DEMO_PHP_REQUESTS -c $DEMO_PHP_CONCURRENCY, after a warm-up.
# Prints p50/p99 latency, req/s, errors, and what the upstream nginx saw: TCP connections
# accepted and TLS handshakes.
#
# Environment: DEMO_PHP_REQUESTS [3000], DEMO_PHP_CONCURRENCY [8], DEMO_PHP_WORKERS [8],
# DEMO_PHP_SLOW_MS [5].
# Loopback only, everything in a temp dir (no system service is started, touched or
# needed); every process started here is stopped on exit; every wait is bounded.
set -euo pipefail
B=${1:-build}
B=$(cd "$B" && pwd)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
REQS=${DEMO_PHP_REQUESTS:-3000}
CONC=${DEMO_PHP_CONCURRENCY:-8}
WORKERS=${DEMO_PHP_WORKERS:-8}
SLOW_MS=${DEMO_PHP_SLOW_MS:-5}

for f in "$B/libconnroute.so" "$B/upstream"; do
  [ -e "$f" ] || { echo "demo-php: $f missing (make all $B/upstream)" >&2; exit 1; }
done
FPM=$(command -v php-fpm 2>/dev/null || ls /usr/sbin/php-fpm* 2>/dev/null | head -n 1 || true)
[ -n "$FPM" ] && [ -x "$FPM" ] || { echo "demo-php: php-fpm is needed (scripts/deps.sh installs php-fpm)" >&2; exit 1; }
php -r 'exit(function_exists("curl_init") ? 0 : 1);' 2>/dev/null ||
  { echo "demo-php: php-cli with php-curl is needed (scripts/deps.sh)" >&2; exit 1; }
for t in ab curl python3; do
  command -v "$t" >/dev/null || { echo "demo-php: $t is needed (scripts/deps.sh)" >&2; exit 1; }
done

# shellcheck disable=SC2034  # read by bench/lib.sh
CR_BUILD=$B
CR_DIR=$(mktemp -d /tmp/cr-demo-php.XXXXXX)
# shellcheck disable=SC2034
CR_ME=demo-php
# shellcheck disable=SC2034
CR_MAX_SECONDS=900
# shellcheck source=../bench/lib.sh
. "$ROOT/bench/lib.sh"
FPM_PID=
stop_fpm() {
  local i
  [ -n "$FPM_PID" ] || return 0
  kill -TERM "$FPM_PID" 2>/dev/null || true
  for i in $(seq 1 100); do kill -0 "$FPM_PID" 2>/dev/null || break; sleep 0.05; done
  kill -KILL "$FPM_PID" 2>/dev/null || true
  wait "$FPM_PID" 2>/dev/null || true
  FPM_PID=
}
trap 'stop_fpm; cr_cleanup; rm -rf "$CR_DIR"' EXIT
trap 'exit 130' INT TERM

cr_start_upstream
cr_start_nginx
CA=$CR_DIR/nginx/cert.pem
UPSTREAM_URL=https://localhost:$HTTPS_PORT/slow

# ---- the PHP page: what a PHP shop writes -----------------------------------------------
mkdir -p "$CR_DIR/www"
cat >"$CR_DIR/www/index.php" <<'EOF'
<?php
// One upstream call per request, a new curl handle each time (the usual PHP code).
$ch = curl_init($_SERVER['UPSTREAM_URL']);
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
curl_setopt($ch, CURLOPT_CAINFO, $_SERVER['UPSTREAM_CA']);
curl_setopt($ch, CURLOPT_TIMEOUT, 10);
$body = curl_exec($ch);
if ($body === false) {
    http_response_code(502);
    echo 'upstream error: ', curl_error($ch), "\n";
} else {
    echo 'upstream said: ', $body;
}
curl_close($ch);
EOF

# ---- the front nginx: FastCGI to php-fpm's socket ----------------------------------------
FRONT_DIR=$CR_DIR/front
FPM_SOCK=$CR_DIR/fpm.sock
mkdir -p "$FRONT_DIR"
start_front() {
  local attempt port user=""
  [ "$(id -u)" -eq 0 ] && user="user root;"
  for attempt in 1 2 3; do
    port=$(cr_free_ports 1)
    cat >"$FRONT_DIR/nginx.conf" <<EOF
$user
worker_processes 1;
pid $FRONT_DIR/nginx.pid;
error_log $FRONT_DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
$(cr_nginx_temp_paths "$FRONT_DIR")
    server {
        listen 127.0.0.1:$port;
        location = /index.php {
            fastcgi_pass unix:$FPM_SOCK;
            fastcgi_param SCRIPT_FILENAME $CR_DIR/www/index.php;
            fastcgi_param SCRIPT_NAME /index.php;
            fastcgi_param REQUEST_METHOD \$request_method;
            fastcgi_param QUERY_STRING \$query_string;
            fastcgi_param SERVER_PROTOCOL \$server_protocol;
            fastcgi_param UPSTREAM_URL $UPSTREAM_URL;
            fastcgi_param UPSTREAM_CA $CA;
        }
    }
}
EOF
    rm -f "$FRONT_DIR/nginx.pid"
    if timeout 10 "$NGINX_BIN" -p "$FRONT_DIR" -c "$FRONT_DIR/nginx.conf" -g 'daemon on;' 2>>"$FRONT_DIR/error.log"; then
      CR_NGINX_DIRS+=("$FRONT_DIR")
      FRONT_PORT=$port
      return 0
    fi
    cr_stop_nginx "$FRONT_DIR"
  done
  cr_die "the front nginx did not start (see $FRONT_DIR/error.log)"
}
start_front

# ---- php-fpm, started and stopped here ---------------------------------------------------
# start_fpm NAME [VAR=value...]: the master's environment gets the VAR=value pairs.
start_fpm() {
  local name=$1 d i
  shift
  d=$CR_DIR/fpm-$name
  mkdir -p "$d"
  rm -f "$FPM_SOCK"
  cat >"$d/php-fpm.conf" <<EOF
[global]
pid = $d/php-fpm.pid
error_log = $d/php-fpm.log
daemonize = no
[www]
listen = $FPM_SOCK
listen.mode = 0600
pm = static
pm.max_children = $WORKERS
clear_env = no
EOF
  env "$@" "$FPM" --allow-to-run-as-root --nodaemonize --fpm-config "$d/php-fpm.conf" --prefix "$d" \
    >"$d/out" 2>&1 &
  FPM_PID=$!
  for i in $(seq 1 200); do
    [ -S "$FPM_SOCK" ] && curl -s --max-time 5 "http://127.0.0.1:$FRONT_PORT/index.php" | grep -q '^upstream said: ok' &&
      return 0
    kill -0 "$FPM_PID" 2>/dev/null || break
    sleep 0.05
  done
  cat "$d/out" "$d/php-fpm.log" >&2 2>/dev/null || true
  cr_die "php-fpm ($name) did not serve the page"
}

declare -A R
# run_case NAME [VAR=value...]: php-fpm with that environment, a warm-up, then the load.
run_case() {
  local name=$1 a0 a1 f0 f1 s0 s1 out
  shift
  cr_tls_settle
  a0=$(cr_accepts); f0=$(cr_tls_full); s0=$(cr_tls_resumed)
  start_fpm "$name" "$@"
  ab -q -n $((WORKERS * 4)) -c "$CONC" "http://127.0.0.1:$FRONT_PORT/index.php" >/dev/null 2>&1 || true
  out=$CR_DIR/ab-$name.out
  timeout 600 ab -q -n "$REQS" -c "$CONC" "http://127.0.0.1:$FRONT_PORT/index.php" >"$out" 2>&1 ||
    { cat "$out" >&2; cr_die "ab failed ($name)"; }
  stop_fpm
  cr_tls_settle
  a1=$(cr_accepts); f1=$(cr_tls_full); s1=$(cr_tls_resumed)
  R[$name,rps]=$(awk '/^Requests per second:/ { print $4 }' "$out")
  R[$name,p50]=$(awk '$1 == "50%" { print $2 }' "$out")
  R[$name,p99]=$(awk '$1 == "99%" { print $2 }' "$out")
  R[$name,errs]=$(awk '/^Failed requests:/ { f = $3 } /^Non-2xx responses:/ { n = $3 } END { print f + n }' "$out")
  R[$name,conns]=$((a1 - a0 - 1))
  R[$name,full]=$((f1 - f0))
  R[$name,resumed]=$((s1 - s0))
}

echo "connroute demo-php: $(php -r 'echo "PHP ", PHP_VERSION, ", curl ", curl_version()["version"];')," \
  "php-fpm ($WORKERS workers) behind nginx on 127.0.0.1"
echo "page: curl_init/curl_exec/curl_close per request to $UPSTREAM_URL"
echo "      (nginx over TLS, /slow proxied to build/upstream /delay/$SLOW_MS)"
echo "load: ab -n $REQS -c $CONC, after one readiness check and $((WORKERS * 4)) warm-up requests"
echo "      (all counted in the upstream's figures)"
echo
echo "1. before: php-fpm as installed"
run_case before
echo "2. after:  php-fpm with LD_PRELOAD=$B/libconnroute.so in the master's environment"
run_case after LD_PRELOAD="$B/libconnroute.so"
echo

chg() { awk -v a="$1" -v b="$2" 'BEGIN {
  if (a + 0 <= 0) { print (b + 0 == 0) ? "0" : "n/a"; exit }
  r = b / a
  if (r >= 10) printf "%.0fx\n", r
  else if (r < 1) printf "%+.1f%%\n", (r - 1) * 100
  else printf "%+.0f%%\n", (r - 1) * 100 }'; }
row() { printf '| %-42s | %10s | %10s | %9s |\n' "$1" "${R[before,$2]}" "${R[after,$2]}" "$(chg "${R[before,$2]}" "${R[after,$2]}")"; }
echo "Result ($REQS requests, $CONC concurrent, $WORKERS php-fpm workers):"
echo
printf '| %-42s | %10s | %10s | %9s |\n' "metric" "before" "after" "change"
echo "|--------------------------------------------|------------|------------|-----------|"
row "p50 latency, page (ms)" p50
row "p99 latency, page (ms)" p99
row "throughput (req/s)" rps
row "errors (failed or non-2xx)" errs
row "upstream TCP connections opened" conns
row "upstream TLS full handshakes" full
row "upstream TLS resumed sessions" resumed
echo
echo "Latency and req/s: ab, at the front nginx. Upstream figures: the TLS nginx's stub_status"
echo "accepts delta and its log of each connection's first request (\$ssl_session_reused)."
echo "After: each php-fpm worker (a process of its own) keeps a pooled connection per lane."
