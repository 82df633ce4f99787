#!/usr/bin/env bash
# Installs dependencies, builds, and runs the whole test suite through CTest.
# Extra arguments go to ctest (for example: -L torch, -R Attention).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
bash scripts/fetch_assets.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
