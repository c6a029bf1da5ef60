#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, from `cargo run -p vigil-operator --bin crdgen -- --write
# crds`) into the chart (charts/vigil/crds/), byte for byte, and removes chart CRDs that crds/ no
# longer has.
#
# Usage: e2e/chart/sync-crds.sh [--check]
#   --check   change nothing; exit 1 (listing the differences) when the chart's CRDs differ.
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=crds DEST=charts/vigil/crds
check=0
case ${1:-} in
  --check) check=1 ;;
  "") ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

shopt -s nullglob
src_files=("$SRC"/*.yaml)
[ ${#src_files[@]} -gt 0 ] || { echo "sync-crds: no CRDs in $SRC/" >&2; exit 1; }

diffs=0
for f in "${src_files[@]}"; do
  name=$(basename "$f")
  if ! cmp -s "$f" "$DEST/$name"; then
    diffs=$((diffs + 1))
    if [ "$check" = 1 ]; then
      if [ -f "$DEST/$name" ]; then echo "sync-crds: $DEST/$name differs from $f"; else echo "sync-crds: $DEST/$name is missing"; fi
    else
      mkdir -p "$DEST"
      cp "$f" "$DEST/$name"
      echo "sync-crds: copied $f -> $DEST/$name"
    fi
  fi
done
for f in "$DEST"/*.yaml "$DEST"/*.yml "$DEST"/*.json; do
  [ -f "$SRC/$(basename "$f")" ] && continue
  diffs=$((diffs + 1))
  if [ "$check" = 1 ]; then
    echo "sync-crds: $f is not in $SRC/ (stale)"
  else
    rm -f "$f"
    echo "sync-crds: removed stale $f"
  fi
done

if [ "$check" = 1 ] && [ "$diffs" -gt 0 ]; then
  echo "sync-crds: the chart's CRDs differ from $SRC/; run e2e/chart/sync-crds.sh" >&2
  exit 1
fi
[ "$diffs" -gt 0 ] || echo "sync-crds: $DEST/ matches $SRC/ (${#src_files[@]} CRDs)"
