#!/usr/bin/env bash
# Configures and builds into build/ (Release; CUDA backend when nvcc is found).
# TARGETS="pretrain sample" builds only those (the quickstart does); default: everything.
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build build -j"$(nproc)" "${targets[@]}"
