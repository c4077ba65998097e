#!/usr/bin/env bash
# Installs the Debian packages that building, testing and the demo need.
# Idempotent: does nothing (and needs no network) when everything is present.
# `deps.sh --deb`: also what `make deb` needs (debhelper, lintian), kept out of
# the default list so that `make test` does not pull them in.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev   # libFuzzer runtime
  libcurl4-openssl-dev libssl-dev openssl
  libcurl3-gnutls                          # tests/progs/plugins: libcurl-gnutls.so.4
  python3-pyftpdlib                        # test_curlhosts: an FTP server that logs QUITs
  libcriterion-dev libinih-dev
  curl nginx-light python3 python3-pycurl
  iproute2 procps valgrind
  apache2-utils redis-server redis-tools   # warm-pool tests: ab, redis-benchmark
  haproxy                                  # bench/sidecar
  php-cli php-curl php-fpm                 # RTLD_DEEPBIND hosts: tests/integration/test_reach.c, make demo-php
  git fcgiwrap                             # libcurl multi hosts: test_multi_hosts.c (git over HTTP(S), git-http-backend)
  prometheus                               # promtool check metrics
  scdoc man-db python3-yaml bash-completion binutils   # man pages, docs checks (objcopy)
)
if [ "${1:-}" = --deb ]; then
  PKGS+=(debhelper dpkg-dev lintian fakeroot)
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing: ${missing[*]}" >&2
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
