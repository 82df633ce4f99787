#!/usr/bin/env bash
# One fuzz test: replays the committed corpus, then a fixed number of random mutations
# from a fixed seed. New inputs go to a scratch folder emptied first, so each run tries
# exactly the same inputs and the committed corpus is never written to.
# usage: replay.sh FUZZ_TARGET CORPUS_DIR WORK_DIR RUNS
set -euo pipefail
target=$1 corpus=$2 work=$3 runs=$4
rm -rf "$work"
mkdir -p "$work/new" "$work/tmp"
# -timeout turns a hang into a failure; TMPDIR keeps the targets' scratch files here.
TMPDIR="$work/tmp" exec "$target" -seed=1 -runs="$runs" -timeout=60 -artifact_prefix="$work/" \
  "$work/new" "$corpus"
