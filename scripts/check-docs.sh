#!/usr/bin/env bash
# Checks of what operators read (called by `make test`, one pass/fail):
#   - every man page renders with `man -l` without a warning;
#   - docs/man/connroute.conf.5.scd is what scripts/man-conf.py makes of docs/config.md
#     (docs/config.md is checked against the key table by tests/unit/test_config.c, and
#     the page by tests/unit/test_check.c);
#   - connroute(1) names every subcommand and option of `connroute CMD --help`;
#   - the bash completion loads and completes subcommands and lane names;
#   - the Kubernetes manifests of docs/k8s parse as YAML and hold what docs/rollout.md
#     says they hold.
set -uo pipefail
B=${1:-build}
cd "$(dirname "$0")/.."
bad=0
fail() { echo "check-docs: $*"; bad=1; }

for p in "$B"/man/*; do
  err=$(MANWIDTH=100 LC_ALL=C.UTF-8 man --warnings -E UTF-8 -l "$p" 2>&1 >/dev/null)
  [ -z "$err" ] || fail "$p: man -l warns: $err"
  MANWIDTH=100 man -l "$p" 2>/dev/null | grep -q . || fail "$p: renders empty"
done
for s in 1 3 5 7; do ls "$B"/man/*."$s" >/dev/null 2>&1 || fail "no man page in section $s"; done

if ! python3 scripts/man-conf.py docs/config.md | cmp -s - docs/man/connroute.conf.5.scd; then
  fail "docs/man/connroute.conf.5.scd is stale: run make man-sources"
fi

page=$(MANWIDTH=200 man -l "$B"/man/connroute.1 2>/dev/null)
for cmd in run check doctor stats reload; do
  grep -q "^       $cmd " <<<"$page" || fail "connroute(1) has no entry for $cmd"
  for opt in $("$B"/connroute "$cmd" --help | grep -o -- '--[a-z][a-z-]*' | sort -u); do
    [ "$opt" = --help ] && continue
    grep -q -- "$opt" <<<"$page" || fail "connroute(1) does not describe $cmd $opt"
  done
done

out=$(PATH="$PWD/$B:$PATH" bash -c '
  source completions/connroute.bash
  comp() { COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); COMPREPLY=(); _connroute; echo "${COMPREPLY[*]}"; }
  comp connroute ch; comp connroute check examples/payments.conf --key ""' 2>&1)
grep -qx "check" <<<"$(sed -n 1p <<<"$out")" || fail "bash completion: subcommands: $out"
grep -q "critical batch default" <<<"$out" || fail "bash completion: lane names: $out"

python3 - docs/k8s/*.yaml <<'PY' || bad=1
import sys, yaml
kinds = {}
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if doc:
            kinds.setdefault(doc["kind"], []).append(doc)
need = {"ConfigMap", "Deployment", "Service"}
if not need <= set(kinds):
    print("check-docs: docs/k8s lacks", need - set(kinds)); sys.exit(1)
dep = kinds["Deployment"][0]["spec"]["template"]
ann = dep["metadata"].get("annotations", {})
assert ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port"), "scrape annotations"
spec = dep["spec"]
assert spec.get("initContainers"), "an init container places the library"
env = {e["name"]: e.get("value") for c in spec["containers"] for e in c.get("env", [])}
assert env.get("LD_PRELOAD", "").endswith("libconnroute.so"), env
assert env.get("CONNROUTE_CONFIG", "").startswith("/etc/connroute/"), env
mounts = [m for c in spec["containers"] for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/connroute"]
assert mounts and mounts[0].get("readOnly"), "the ConfigMap is mounted read-only"
cm = kinds["ConfigMap"][0]["data"]
assert any("[lane" in v for v in cm.values()), "the ConfigMap holds a config"
PY

[ $bad = 0 ] && echo "check-docs: man pages, conf(5) source, completion and manifests OK"
exit $bad
