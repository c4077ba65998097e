#!/usr/bin/env bash
# lib/ is a one-way graph of layers (docs/INTERNALS.md, "Layers"): a file may
# include headers of its own layer or a lower one, never of a higher one, and
# nothing in lib/ includes a header of shim/ or cli/. Prints every violation;
# exit 1 if any, and also if a file of lib/ is missing from the table below
# (a new file must be given its layer).
set -uo pipefail
cd "$(dirname "$0")/.."

layer_of() { # the layer of a lib/ file, by its base name without extension
  case "$1" in
    base|sys|log|glob|thread|fdpages|ownfd|real|hooks|elfrel) echo 0 ;;
    fdtab|sockrec) echo 1 ;;
    config|config_*|cfgref|trust|endpoint|key|lane|notice) echo 2 ;;
    metrics|alog|alog_*) echo 3 ;;
    limit|health) echo 4 ;;
    sockopt|deadline) echo 5 ;;
    warm) echo 6 ;;
    route) echo 7 ;;
    curlpool|curl|curl_*|curl/*) echo 8 ;;
    engine) echo 9 ;;
    bg) echo 10 ;;
    *) echo "" ;;
  esac
}

bad=0
while IFS= read -r f; do
  rel=${f#lib/}
  name=${rel%.*}
  me=$(layer_of "$name")
  [ -n "$me" ] || me=$(layer_of "$(dirname "$rel")/")
  [ -n "$me" ] || { case "$rel" in curl/*) me=8 ;; esac; }
  if [ -z "$me" ]; then echo "check-layers: $f has no layer: add it to scripts/check-layers.sh"; bad=1; continue; fi
  while IFS= read -r inc; do
    [ -n "$inc" ] || continue
    case "$inc" in */*) iname="$inc" ;; *) iname="$(dirname "$rel")/$inc"; iname=${iname#./} ;; esac
    if [ ! -f "lib/$iname" ]; then
      [ -f "lib/$inc" ] && iname=$inc
    fi
    if [ ! -f "lib/$iname" ]; then
      [ -f "include/$inc" ] && continue
      echo "check-layers: $f includes \"$inc\", which is not in lib/ or include/"; bad=1; continue
    fi
    base=${iname%.*}
    il=$(layer_of "$base"); [ -n "$il" ] || { case "$iname" in curl/*) il=8 ;; esac; }
    if [ -z "$il" ]; then echo "check-layers: $iname has no layer"; bad=1; continue; fi
    if [ "$il" -gt "$me" ]; then
      echo "check-layers: $f (layer $me) includes $iname (layer $il): a lower layer must not depend on a higher one"
      bad=1
    fi
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done < <(find lib -name '*.[ch]' -o -name '*.def' | sort)
[ $bad = 0 ] && echo "check-layers: lib/ is a one-way graph"
exit $bad
