#!/usr/bin/env bash
# Puts C4 shards where the training configs look (data.dir, default data/c4_tiny).
# Online: downloads shards of the public C4 release (allenai/c4, en) with curl or wget.
# Offline: links (or with --copy, copies) a local copy, by default ../shared/data/c4_tiny.
#
# usage: scripts/fetch_c4.sh [--dest DIR] [--train-shards N] [--local DIR] [--copy] [--offline]
set -euo pipefail
cd "$(dirname "$0")/.."

dest=data/c4_tiny
train_shards=1
local_src=../shared/data/c4_tiny
copy=0
force_offline=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest=$2; shift 2 ;;
    --train-shards) train_shards=$2; shift 2 ;;
    --local) local_src=$2; shift 2 ;;
    --copy) copy=1; shift ;;
    --offline) force_offline=1; shift ;;
    -h|--help) sed -n 2,7p "$0"; exit 0 ;;
    *) echo "fetch_c4: unknown argument '$1'" >&2; exit 2 ;;
  esac
done

base=https://huggingface.co/datasets/allenai/c4/resolve/main/en
probe="$base/c4-validation.00000-of-00008.json.gz"

fetch() {  # url file
  if command -v curl >/dev/null; then curl -fsSL --retry 3 -o "$2.part" "$1"
  elif command -v wget >/dev/null; then wget -q -O "$2.part" "$1"
  else return 1; fi
  mv "$2.part" "$2"
}

online=0
if [ "$force_offline" != 1 ]; then
  if command -v curl >/dev/null && curl -fsSI --max-time 10 "$probe" >/dev/null 2>&1; then online=1
  elif command -v wget >/dev/null && wget -q --spider --timeout=10 "$probe" 2>/dev/null; then online=1
  fi
fi

if [ "$online" = 1 ]; then
  mkdir -p "$dest"
  echo "fetch_c4: online; downloading $train_shards train shard(s) + 1 validation shard of allenai/c4 en into $dest"
  for ((i = 0; i < train_shards; i++)); do
    f=$(printf 'c4-train.%05d-of-01024.json.gz' "$i")
    [ -s "$dest/$f" ] || fetch "$base/$f" "$dest/$f"
  done
  f=c4-validation.00000-of-00008.json.gz
  [ -s "$dest/$f" ] || fetch "$base/$f" "$dest/$f"
  echo "fetch_c4: done ($(ls "$dest" | wc -l) files in $dest)"
  exit 0
fi

echo "fetch_c4: offline (the C4 release is unreachable from this machine); using the local copy $local_src"
if [ ! -d "$local_src" ]; then
  echo "fetch_c4: error: no local copy at $local_src (pass --local DIR)" >&2
  exit 1
fi
if ! ls "$local_src"/c4-train.* >/dev/null 2>&1; then
  echo "fetch_c4: error: $local_src holds no c4-train.* shard" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
if [ -e "$dest" ] || [ -L "$dest" ]; then
  echo "fetch_c4: $dest already exists; leaving it as is"
  exit 0
fi
if [ "$copy" = 1 ]; then
  cp -r "$local_src" "$dest"
  echo "fetch_c4: copied $local_src to $dest"
else
  ln -s "$(cd "$local_src" && pwd)" "$dest"
  echo "fetch_c4: linked $dest -> $(cd "$local_src" && pwd)"
fi
