#!/usr/bin/env node
// Reference GPT-2 token ids from js-tiktoken, for the exactness test and the benchmark.
//
//   node tiktoken_reference.js JS_TIKTOKEN_DIR CORPUS_DIR OUT_IDS [--bench]
//
// JS_TIKTOKEN_DIR is the npm prefix that holds node_modules/js-tiktoken (see
// scripts/fetch_assets.sh). Reads CORPUS_DIR/corpus.txt + corpus.offsets (from
// make_tokenizer_corpus.py) and writes OUT_IDS as int32 little-endian: for each
// document, its token count, then its ids. Special tokens are encoded as plain text,
// as our Tokenizer does. With --bench it also prints "js_tiktoken_mb_per_s=<x>": the
// encode throughput over the whole corpus, on one core, vocabulary loading excluded.
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const [js_dir, corpus_dir, out_path] = process.argv.slice(2);
const bench = process.argv.includes('--bench');
if (!out_path) {
  console.error('usage: tiktoken_reference.js JS_TIKTOKEN_DIR CORPUS_DIR OUT_IDS [--bench]');
  process.exit(2);
}
const { getEncoding } = createRequire(path.resolve(js_dir, 'package.json'))('js-tiktoken');
const enc = getEncoding('gpt2');

const blob = fs.readFileSync(path.join(corpus_dir, 'corpus.txt'));
const offsets = fs.readFileSync(path.join(corpus_dir, 'corpus.offsets'), 'utf8')
  .split('\n').filter((s) => s.length).map(Number);
// fatal: a document that is not valid UTF-8 must fail here, not compare garbage;
// ignoreBOM: keep a leading U+FEFF as text (the default would strip it).
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const docs = [];
for (let i = 0; i + 1 < offsets.length; i++)
  docs.push(decoder.decode(blob.subarray(offsets[i], offsets[i + 1])));

const t0 = process.hrtime.bigint();
const all = docs.map((d) => enc.encode(d, [], []));
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;

let total = 0;
for (const ids of all) total += 1 + ids.length;
const out = new Int32Array(total);
let k = 0;
for (const ids of all) {
  out[k++] = ids.length;
  out.set(ids, k);
  k += ids.length;
}
fs.writeFileSync(out_path + '.tmp', Buffer.from(out.buffer));
fs.renameSync(out_path + '.tmp', out_path);
if (bench) console.log(`js_tiktoken_mb_per_s=${(blob.length / 1e6 / seconds).toFixed(4)}`);
