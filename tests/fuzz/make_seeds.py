#!/usr/bin/python3
"""Writes the seed inputs of the fuzz targets that are binary or bulky to write by hand
(tests/fuzz/corpus/<target>/seed-*): small safetensors files and vocabularies in the
formats the parsers read, and for the shard and checkpoint targets, whose input
describes an HDF5 file (fuzz_hdf5_writer.h), the descriptions of well-formed files
and of the files behind findings fixed since.
Run from anywhere with Debian's python3 (numpy). The text seeds (INI files, markers,
text to encode) are written by hand."""
import json
import os
import struct

import numpy as np

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


class Described:
    """The bytes that make FuzzedDataProvider (clang's fuzzer/FuzzedDataProvider.h) return
    a chosen sequence of values. Integers are taken from the end of the input, most
    significant byte first, as ConsumeIntegralInRange does: a range below 256 takes one
    byte (value = byte % (range + 1)), a full int64 takes eight (value - INT64_MIN);
    strings of bytes are taken from the start."""

    def __init__(self):
        self.tail = []  # bytes in the order they are consumed
        self.front = b""  # ConsumeBytes takes from the start instead

    def pick(self, value, lo, hi):  # ConsumeIntegralInRange(lo, hi), hi - lo < 256
        assert lo <= value <= hi and hi - lo < 256
        self.tail.append(value - lo)
        return self

    def flag(self, value):  # ConsumeBool
        self.tail.append(int(value))
        return self

    def int64(self, value):  # ConsumeIntegral<int64_t>
        self.tail += list(((value + 2**63) % 2**64).to_bytes(8, "big"))
        return self

    # Hdf5Builder::attr's choices (fuzz_hdf5_writer.cpp).
    def attr_int64(self, value):
        return self.pick(1, 0, 8).int64(value)

    def attr_int64s(self, values):
        self.pick(5, 0, 8).pick(len(values), 0, 6)
        for v in values:
            self.int64(v)
        return self

    def attr_usual_string(self, variable_length=False):
        if variable_length:
            return self.pick(7, 0, 8).flag(True)
        return self.pick(6, 0, 8).flag(True).flag(False)

    # Hdf5Builder::dataset: element kind (0 uint16, 2 int64, 3 float), a 1-D extent,
    # contiguous, small values.
    def dataset_1d(self, kind, values):
        self.pick(kind, 0, 8).pick(1, 0, 2).pick(len(values), 0, 64).pick(1, 1, 3).flag(False)
        for v in values:
            self.flag(True).pick(v, 0, 16)
        return self

    def attr_strings(self, count):  # several fixed-length strings of 8 bytes
        self.front += b"gptrain-" * count
        return self.pick(8, 0, 8).pick(count, 2, 4)

    def bytes(self):
        return self.front + bytes(reversed(self.tail))


def shard_description():
    """fuzz_shard.cpp's input for a well-formed shard: 6 tokens in 2 documents."""
    d = Described().attr_usual_string()  # format
    for v in (1, 10, 0, 6, 2):  # format_version, vocab_size, eot_token, token_count, doc_count
        d.attr_int64(v)
    d.attr_usual_string().attr_usual_string(variable_length=True)  # tokenizer, source (as h5py writes)
    d.dataset_1d(0, [5, 9, 0, 3, 7, 0]).dataset_1d(2, [0, 3])  # tokens (uint16), doc_offsets
    return d.bytes()


def checkpoint_description():
    """fuzz_checkpoint.cpp's input for a consolidated checkpoint: tensor 'wte' [2, 3] with
    its parameters and one moment."""
    d = Described().attr_usual_string()  # magic
    for v in (2, 0, 1, 7, 7):  # format_version, rank, world, step, optim.t
        d.attr_int64(v)
    d.attr_int64s([3, 1, 4]).attr_int64(1)  # data.state, complete
    d.attr_usual_string()  # config
    d.pick(2, 0, 4)  # pieces
    for kind in (0, 1):  # param, optim.m
        d.pick(kind, 0, 2).flag(True).pick(0, 0, 64)  # kind, name 'wte', begin 0
        d.dataset_1d(3, [1, 2, 3, 4, 5, 6])
        d.attr_usual_string().attr_usual_string()  # name, kind
        d.attr_int64s([2, 3]).attr_int64s([-1, 1, 0, 1]).attr_int64s([0, 6])  # global_shape, shard, range
    return d.bytes()


def regression_inputs():
    """Inputs of findings fixed since (corpus/<target>/regression-*): attributes that hold
    several values where the readers expect one, which HDF5 read past a one-value buffer."""
    shard = Described().attr_usual_string().attr_int64s([1, 2, 3])  # format_version = [1, 2, 3]
    checkpoint = Described().attr_strings(3).attr_int64(2)  # magic = three strings, format_version 2
    return {("shard", "regression-attribute-several-values"): shard.bytes(),
            ("checkpoint", "regression-attribute-several-strings"): checkpoint.bytes()}


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
    for target, seed in (("shard", shard_description()), ("checkpoint", checkpoint_description())):
        os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
        with open(os.path.join(CORPUS, target, "seed-well-formed"), "wb") as f:
            f.write(seed)
    for (target, name), data in regression_inputs().items():
        with open(os.path.join(CORPUS, target, name), "wb") as f:
            f.write(data)
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
