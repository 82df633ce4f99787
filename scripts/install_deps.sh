#!/usr/bin/env bash
# Installs what the build and training need ("train", for the quickstart) or also what
# the tests and benchmarks need ("all", the default: PyTorch as the numerical oracle,
# h5py, matplotlib, clang for the sanitized build), or ("corpus") the text packages
# scripts/build_default_corpus.sh reads. Debian packages only. Safe to re-run; skips apt
# when nothing is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-all}"

packages=(
  build-essential cmake pkg-config git ca-certificates python3
  libopenmpi-dev openmpi-bin
  libhdf5-dev hdf5-tools
  libboost-program-options-dev
  libopenblas-openmp-dev
  libgtest-dev googletest
)
# node + npm fetch the tokenizer files; many machines already have a Node.js whose npm
# is bundled (NodeSource), where Debian's npm package conflicts: install only if absent.
command -v node >/dev/null || packages+=(nodejs)
command -v npm >/dev/null || packages+=(npm)
if [ "$mode" = corpus ]; then  # the text the default corpus is built from
  packages=(dict-gcide bible-kjv bible-kjv-text gnu-standards)
fi
if [ "$mode" = all ]; then
  packages+=(python3-torch python3-h5py python3-matplotlib python3-numpy)
  # scripts/test_sanitized.sh: clang with its sanitizer and libFuzzer runtimes, LLVM's OpenMP
  packages+=(clang libclang-rt-dev libomp-dev)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
