#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets that are binary or bulky to write by hand
(tests/fuzz/corpus/<target>/seed-*): small safetensors files and vocabularies in the
formats the parsers read. Run from anywhere with Debian's python3 (numpy). The text
seeds (INI files, markers, text to encode) are written by hand; the shard and
checkpoint targets' inputs describe HDF5 files (fuzz_hdf5_writer.h), and their seeds
are inputs a fuzzing run found reaching deep into the reader (tests/fuzz/README.md)."""
import json
import os
import struct

import numpy as np

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw bytes)."""
    header, data = {"__metadata__": {"format": "pt"}}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def gpt2_byte_spelling():
    """GPT-2's printable stand-ins for the 256 bytes (encoder.json spells tokens with them)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    spelled, extra = {}, 0
    for b in range(256):
        if b in printable:
            spelled[b] = chr(b)
        else:
            spelled[b] = chr(256 + extra)
            extra += 1
    return spelled


def vocab_seeds(out):
    spell = gpt2_byte_spelling()
    merges = [(b"h", b"e"), (b"l", b"l"), (b"he", b"ll"), (b" ", b"w")]
    tokens = [bytes([b]) for b in range(256)] + [a + b for a, b in merges]
    eot = len(tokens)
    # GPT-2's files: encoder.json, a NUL, vocab.bpe (the target's odd-first-byte format).
    encoder = {"".join(spell[c] for c in t): i for i, t in enumerate(tokens)}
    encoder["<|endoftext|>"] = eot
    bpe = "#version: 0.2\n" + "".join(
        "".join(spell[c] for c in a) + " " + "".join(spell[c] for c in b) + "\n" for a, b in merges)
    with open(os.path.join(out, "seed-gpt2-files"), "wb") as f:
        f.write(b"\x01" + json.dumps(encoder, ensure_ascii=False).encode() + b"\x00" + bpe.encode())
    # Tokenizer::save's format (even first byte).
    ids = {t: i for i, t in enumerate(tokens)}
    lines = ["gptrain-bpe-vocab 1", "name seed", f"vocab_size {eot + 1}", f"eot {eot}", f"merges {len(merges)}"]
    lines += [t.hex() for t in tokens] + [b"<|endoftext|>".hex()]
    lines += [f"{ids[a]} {ids[b]}" for a, b in merges]
    with open(os.path.join(out, "seed-saved-vocab"), "wb") as f:
        f.write(b"\x00" + ("\n".join(lines) + "\n").encode())


def main():
    d = os.path.join(CORPUS, "safetensors")
    os.makedirs(d, exist_ok=True)
    safetensors(os.path.join(d, "seed-f32"), {
        "wte.weight": ("F32", [2, 3], np.arange(6, dtype="<f4").tobytes()),
        "h.0.ln_1.bias": ("F32", [3], np.ones(3, dtype="<f4").tobytes())})
    safetensors(os.path.join(d, "seed-bf16-f16"), {
        "a": ("BF16", [2], np.array([0x3F80, 0xC000], dtype="<u2").tobytes()),
        "b": ("F16", [1, 2], np.array([1.5, -2], dtype="<f2").tobytes())})
    d = os.path.join(CORPUS, "tokenizer_vocab")
    os.makedirs(d, exist_ok=True)
    vocab_seeds(d)


if __name__ == "__main__":
    main()
