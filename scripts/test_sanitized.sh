#!/usr/bin/env bash
# The sanitized test run (.ci/run calls it after scripts/test.sh): builds the CPU code
# with clang under AddressSanitizer + UndefinedBehaviorSanitizer into build-sanitize/
# and runs the unit, data, torch and fuzz tests there (not mpi: those are the same code
# under mpirun, and ASan's shadow memory times several ranks does not fit a small CI
# machine's time). Extra arguments go to ctest (for example: -R Shard).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/fetch_assets.sh
CC=clang CXX=clang++ cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DGPT_WITH_CUDA=OFF -DGPT_SANITIZE=ON >/dev/null
cmake --build build-sanitize -j"$(nproc)"
# The options live in a file beside this script, with why each is set.
ASAN_OPTIONS=$(grep -v '^#' scripts/sanitizer_options/asan.txt | paste -sd: -)
UBSAN_OPTIONS=$(grep -v '^#' scripts/sanitizer_options/ubsan.txt | paste -sd: -)
export ASAN_OPTIONS UBSAN_OPTIONS
ctest --test-dir build-sanitize --output-on-failure -j"$(nproc)" -L 'unit|data|torch|fuzz' -LE mpi "$@"
