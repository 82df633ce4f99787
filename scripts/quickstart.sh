#!/usr/bin/env bash
# From a fresh machine to a trained debug model: installs dependencies, builds,
# fetches the GPT-2 tokenizer, builds the default corpus from Debian packages, and
# trains the debug config on the CPU (single-node debug mode), ending with a sample.
# Extra arguments go to pretrain, e.g. --train.steps 100.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh train
bash scripts/fetch_assets.sh
TARGETS="pretrain sample prepare" bash scripts/build.sh
if [ -f scripts/build_default_corpus.sh ]; then bash scripts/build_default_corpus.sh; fi
# A new run directory each time: pretrain refuses to mix a fresh run into an old one.
exec ./build/launch/pretrain launch/configs/debug.ini --run.dir "runs/debug-$(date +%Y%m%d-%H%M%S)" "$@"
