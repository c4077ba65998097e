#!/usr/bin/env bash
# git over HTTP(S) for tests/integration/test_multi_hosts.c: ls-remote, clone, fetch of a
# branch that appears on the server after the clone; prints what must be the same with
# and without the shim (refs, commit ids, the working tree's files and their hashes), never
# timings or progress. git-remote-http(s) drives every request through one libcurl multi
# handle (libcurl-gnutls in Debian).
#
#   git_client.sh URL WORKDIR BARE_REPO LATER_COMMIT
#
# URL: the repository's URL; WORKDIR: an empty directory of the caller's; BARE_REPO: the
# served repository (its path on this machine), where refs/heads/later is set to
# LATER_COMMIT (an object it holds but no ref names) between the clone and the fetch, and
# deleted again at the end, so every run starts from the same server state. Set
# GIT_SSL_CAINFO for https. Exit status: the first failing step's (all steps still run).
set -u
url=$1 work=$2 bare=$3 later=$4
export HOME=$work GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0 LC_ALL=C
rc=0
step() { # NAME CMD...: runs CMD, prints "NAME rc=N" and its stdout
  local name=$1 out st
  shift
  out=$("$@" 2>"$work/$name.err")
  st=$?
  echo "$name rc=$st"
  [ -n "$out" ] && printf '%s\n' "$out"
  [ $st -ne 0 ] && { sed 's/^/  stderr: /' "$work/$name.err"; [ $rc -eq 0 ] && rc=$st; }
  return 0
}
tree() { # the working tree: path and sha256 of every file, .git left out
  (cd "$1" && find . -path ./.git -prune -o -type f -print0 | sort -z | xargs -0 sha256sum)
}
step ls-remote git ls-remote "$url"
step clone git clone -q "$url" "$work/clone"
step head git -C "$work/clone" rev-parse HEAD
step refs git -C "$work/clone" for-each-ref --format='%(objectname) %(refname)'
step tree tree "$work/clone"
git --git-dir="$bare" update-ref refs/heads/later "$later"
step fetch git -C "$work/clone" fetch -q origin
step fetched git -C "$work/clone" rev-parse origin/later
step ls-remote-later git ls-remote "$url" refs/heads/later
step checkout git -C "$work/clone" checkout -q origin/later
step tree-later tree "$work/clone"
git --git-dir="$bare" update-ref -d refs/heads/later
exit $rc
