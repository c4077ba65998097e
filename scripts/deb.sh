#!/usr/bin/env bash
# make deb / make deb-test.
#   deb.sh build B   dpkg-buildpackage -b -us -uc on a copy of the tree in B/deb/ (so
#                    debian/'s build products never land in the work tree); the .deb
#                    files are moved to B/; lintian must report no error.
#   deb.sh test B    (root) installs B/connroute_*.deb, checks what an operator reaches
#                    first (man pages, --version, check, pkg-config, bash completion),
#                    runs `connroute run -- curl URL` against a local server with a lane
#                    whose effect the server sees, then removes and purges the package and
#                    checks nothing is left.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=$1
B=${2:-build}
ver=$(sed -n 's/^VERSION *:= *//p' Makefile)

if [ "$mode" = build ]; then
  rm -rf "$B/deb"
  mkdir -p "$B/deb/connroute-$ver"
  # the tracked files as they are in the work tree (committed or not)
  git ls-files -z --cached --others --exclude-standard | grep -zv '^build' |
    tar --null -T - -cf - | tar -xf - -C "$B/deb/connroute-$ver"
  (cd "$B/deb/connroute-$ver" && dpkg-buildpackage -b -us -uc >../build.log 2>&1) || {
    tail -n 40 "$B/deb/build.log"; echo "deb: dpkg-buildpackage failed ($B/deb/build.log)"; exit 1; }
  rm -f "$B"/connroute_*.deb "$B"/connroute-dbgsym_*.deb
  mv "$B"/deb/*.deb "$B"/
  echo "deb: built $(ls "$B"/connroute_*.deb)"
  if command -v lintian >/dev/null; then
    lintian --fail-on error "$B"/connroute_*.deb 2>&1 | grep -v 'running with root privileges' |
      tee "$B/deb/lintian.log"; [ "${PIPESTATUS[0]}" = 0 ] ||
      { echo "deb: lintian reports errors"; exit 1; }
    echo "deb: lintian: $(grep -c '^E:' "$B/deb/lintian.log" || true) errors, $(grep -c '^W:' "$B/deb/lintian.log" || true) warnings"
  fi
  exit 0
fi

[ "$mode" = test ] || { echo "usage: deb.sh build|test B"; exit 2; }
[ "$(id -u)" = 0 ] || { echo "deb-test installs a package: run it as root"; exit 1; }
deb=$(ls "$B"/connroute_*_*.deb | head -1)
fail() { echo "deb-test: FAILED: $*"; exit 1; }
tmp=$(mktemp -d)
trap 'dpkg-query -W -f="${Status}" connroute 2>/dev/null | grep -q "ok installed" && dpkg -P connroute >/dev/null 2>&1; [ -n "${srv:-}" ] && kill $srv 2>/dev/null; rm -rf "$tmp"' EXIT
dpkg -s connroute >/dev/null 2>&1 && fail "connroute is already installed: remove it first"

dpkg -i "$deb" >/dev/null || fail "dpkg -i"
ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
[ -f "/usr/lib/$ma/libconnroute.so" ] || fail "the library is not in the multiarch directory"
connroute --version | grep -q "^connroute $ver" || fail "--version"
man -w connroute >/dev/null && man -w connroute.conf >/dev/null && man -w 3 connroute >/dev/null &&
  man -w 7 connroute >/dev/null || fail "man pages"
man connroute 2>/dev/null | grep -q "connroute run" || fail "man connroute"
man connroute.conf 2>/dev/null | grep -q "max_conns_per_host" || fail "man connroute.conf"
[ "$(pkg-config --variable=shim connroute)" = "/usr/lib/$ma/libconnroute.so" ] || fail "pkg-config shim"
[ -f /usr/share/bash-completion/completions/connroute ] || fail "bash completion"
[ -f /usr/share/doc/connroute/examples/payments.conf.gz ] || [ -f /usr/share/doc/connroute/examples/payments.conf ] || fail "examples"
ldconfig -p | grep -q "libconnroute.so " || fail "not in the loader cache (LD_PRELOAD=libconnroute.so by name)"

# a local server, and a lane whose effect it sees: the source address
cat > "$tmp/conf" <<CONF
[lane local]
match = *
bind = 127.0.0.2
CONF
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = ("peer=%s\n" % self.client_address[0]).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
open(sys.argv[1], "w").write(str(s.server_port)); s.serve_forever()' "$tmp/port" & srv=$!
for _ in $(seq 50); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
chmod 0644 "$tmp/conf"
connroute check --as-root "$tmp/conf" >/dev/null 2>&1 || fail "connroute check of the test config"
connroute check /usr/share/doc/connroute/examples/payments.conf --key payments/critical \
  --host 127.0.0.1:443 | grep -q "^lane: critical" || fail "check --key"
out=$(connroute run --config "$tmp/conf" -- curl -s "http://127.0.0.1:$port/")
[ "$out" = "peer=127.0.0.2" ] || fail "connroute run -- curl: the lane did not apply: '$out'"
out=$(curl -s "http://127.0.0.1:$port/")
[ "$out" = "peer=127.0.0.1" ] || fail "without connroute: '$out'"
out=$(CONNROUTE_CONFIG="$tmp/conf" LD_PRELOAD=libconnroute.so curl -s "http://127.0.0.1:$port/")
[ "$out" = "peer=127.0.0.2" ] || fail "LD_PRELOAD=libconnroute.so by name: '$out'"
echo "deb-test: installed; man, --version, check, pkg-config, completion; run -- curl routed"

dpkg -r connroute >/dev/null || fail "dpkg -r"
dpkg -P connroute >/dev/null || fail "dpkg -P"
left=$(ls /usr/lib/"$ma"/libconnroute.so /usr/bin/connroute /usr/include/connroute.h \
  /usr/share/man/man1/connroute.1.gz /usr/share/doc/connroute 2>/dev/null || true)
[ -z "$left" ] || fail "left after purge: $left"
ldconfig -p | grep -q "libconnroute.so " && fail "still in the loader cache"
echo "deb-test: removed and purged cleanly"
