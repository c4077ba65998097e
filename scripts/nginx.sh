#!/usr/bin/env bash
# A private nginx on loopback for benchmarks and tests.
#
#   scripts/nginx.sh start DIR    write DIR/nginx.conf + a self-signed cert, start nginx,
#                                 print HTTP_PORT=n and HTTPS_PORT=n (also in DIR/ports.env)
#   scripts/nginx.sh stop DIR     stop it (SIGTERM, bounded wait, then SIGKILL)
#
# Everything lives under DIR (config, pid, error log, temp paths, cert.pem/key.pem); nothing
# outside it is written. Listens on 127.0.0.1 only, on free ports picked at start.
# Locations (both ports): / -> 200 "ok\n". On the HTTP port also /stub_status (127.0.0.1
# only): "Active connections", then "accepts handled requests". Reading it over a new
# connection counts that connection too: a delta between two reads is (b - a - 1).
# nginx core cannot delay a response: slow endpoints come from build/upstream instead.
# Env: NGINX (binary, default nginx in PATH or /usr/sbin/nginx), NGINX_WORKERS [2].
set -euo pipefail

die() { echo "nginx.sh: $*" >&2; exit 1; }

find_nginx() {
  if [ -n "${NGINX:-}" ]; then echo "$NGINX"; return; fi
  command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } ||
    die "nginx not found (install nginx-light: scripts/deps.sh)"
}

# Two free TCP ports on 127.0.0.1 (bound to port 0, then released).
free_ports() {
  python3 - <<'EOF'
import socket
ss = []
for _ in range(2):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    ss.append(s)
print(" ".join(str(s.getsockname()[1]) for s in ss))
for s in ss:
    s.close()
EOF
}

make_cert() {
  local dir=$1
  [ -s "$dir/cert.pem" ] && [ -s "$dir/key.pem" ] && return 0
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" -days 7 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 ||
    die "openssl could not make a certificate"
}

# Temp-path directives only for the modules this nginx was built with (an unknown
# directive is a fatal config error).
temp_paths() {
  local dir=$1 v
  v=$("$NGX" -V 2>&1 || true)
  echo "    client_body_temp_path $dir/client_body;"
  echo "    proxy_temp_path $dir/proxy;"
  for m in fastcgi uwsgi scgi; do
    if grep -q -- "--http-$m-temp-path" <<<"$v" && ! grep -q -- "--without-http_${m}_module" <<<"$v"; then
      echo "    ${m}_temp_path $dir/$m;"
    fi
  done
}

write_conf() {
  local dir=$1 http=$2 https=$3 user=""
  # As root, nginx would switch its workers to the compiled-in "nobody" (with a group
  # that Debian does not have) and they could not reach the private 0700 DIR: keep them
  # as root. As non-root the directive would only be ignored with a warning.
  [ "$(id -u)" -eq 0 ] && user="user root;"
  cat >"$dir/nginx.conf" <<EOF
# Written by scripts/nginx.sh; private loopback instance.
$user
worker_processes ${NGINX_WORKERS:-2};
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
$(temp_paths "$dir")
    keepalive_requests 100000;
    keepalive_timeout 60s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$http;
        server_name localhost;
        location = /stub_status {
            stub_status on;
            allow 127.0.0.1;
            deny all;
        }
        location / {
            return 200 "ok\n";
        }
    }
    server {
        listen 127.0.0.1:$https ssl;
        server_name localhost;
        ssl_certificate $dir/cert.pem;
        ssl_certificate_key $dir/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            return 200 "ok\n";
        }
    }
}
EOF
}

# Waits (bounded) until the stub_status page answers on the HTTP port.
wait_ready() {
  local http=$1 i
  for i in $(seq 1 100); do
    if python3 - "$http" <<'EOF' 2>/dev/null
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)
s.sendall(b"GET /stub_status HTTP/1.0\r\nHost: localhost\r\n\r\n")
data = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    data += b
sys.exit(0 if b"Active connections" in data else 1)
EOF
    then return 0; fi
    sleep 0.05
  done
  return 1
}

master_pid() {
  local dir=$1 pid
  [ -s "$dir/nginx.pid" ] || return 1
  pid=$(tr -dc '0-9' <"$dir/nginx.pid")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

cmd_start() {
  local dir=$1 ports http https attempt
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  NGX=$(find_nginx)
  if master_pid "$dir" >/dev/null; then die "already running in $dir (stop it first)"; fi
  make_cert "$dir"
  for attempt in 1 2 3; do
    ports=$(free_ports) || die "python3 is needed to pick free ports"
    read -r http https <<<"$ports"
    write_conf "$dir" "$http" "$https"
    rm -f "$dir/nginx.pid"
    if timeout 10 "$NGX" -p "$dir" -c "$dir/nginx.conf" -g 'daemon on;' 2>>"$dir/error.log" &&
       wait_ready "$http"; then
      printf 'HTTP_PORT=%s\nHTTPS_PORT=%s\n' "$http" "$https" | tee "$dir/ports.env"
      return 0
    fi
    # A lost race for a port, or a real error: clean up and retry, then give up.
    cmd_stop "$dir" >/dev/null 2>&1 || true
  done
  tail -n 5 "$dir/error.log" >&2 || true
  die "nginx did not start (see $dir/error.log)"
}

cmd_stop() {
  local dir=$1 pid kids i
  pid=$(master_pid "$dir") || { rm -f "$dir/nginx.pid"; return 0; }
  kids=$(pgrep -P "$pid" 2>/dev/null || true)
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
  fi
  # Workers of a killed master would linger: end exactly those (by pid).
  for k in $kids; do
    for i in $(seq 1 40); do kill -0 "$k" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$k" 2>/dev/null && grep -q nginx "/proc/$k/comm" 2>/dev/null; then
      kill -KILL "$k" 2>/dev/null || true
    fi
  done
  rm -f "$dir/nginx.pid"
}

case "${1:-}" in
  start) [ $# -eq 2 ] || die "usage: nginx.sh start DIR"; cmd_start "$2" ;;
  stop)  [ $# -eq 2 ] || die "usage: nginx.sh stop DIR"; cmd_stop "$2" ;;
  *) echo "usage: scripts/nginx.sh start|stop DIR" >&2; exit 2 ;;
esac
