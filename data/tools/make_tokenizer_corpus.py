#!/usr/bin/env python3
"""Builds the tokenizer test/benchmark text: >= 5 MB of varied real text from files a
Debian machine already has (licences, package docs, Python sources, C headers, man
pages incl. Russian/Japanese/Korean/... translations) plus generated Unicode (Greek,
Cyrillic, CJK, Arabic, emoji sequences, rare whitespace, long whitespace runs, random
code points). Deterministic for a given machine: sorted file lists, fixed caps, a
seeded RNG. Nothing here is committed; the output goes to a build/ folder.

Output in OUT_DIR: corpus.txt (all documents, valid UTF-8, concatenated) and
corpus.offsets (document byte offsets, one per line, n + 1 of them).

usage: make_tokenizer_corpus.py OUT_DIR
"""
import glob
import gzip
import os
import random
import sys

VERSION = "1"  # bump when the recipe changes, so cached corpora are rebuilt
DOC_CAP = 64 * 1024  # long files are cut into documents of at most this many bytes


def read_text(path):
    try:
        data = open(path, "rb").read()
        if path.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile):
        return ""
    # The reference decodes the text as UTF-8, so make it valid; NULs are dropped
    # because some files are binary.
    return data.decode("utf-8", errors="replace").replace("\0", "")


def from_files(patterns, budget):
    """Documents from the files matching patterns, in sorted order, up to budget bytes."""
    docs, total = [], 0
    paths = sorted(set(p for pat in patterns for p in glob.glob(pat, recursive=True)))
    for path in paths:
        if total >= budget or not os.path.isfile(path):
            continue
        text = read_text(path)
        raw = text.encode("utf-8")
        for start in range(0, len(raw), DOC_CAP):
            if total >= budget:
                break
            piece = raw[start:start + DOC_CAP].decode("utf-8", errors="ignore")
            if piece:
                docs.append(piece)
                total += len(piece.encode("utf-8"))
    return docs


def generated(rng):
    """Scripts, emoji and whitespace the real files are short of."""
    def word(lo, hi, n):
        return "".join(chr(rng.randint(lo, hi)) for _ in range(n))

    scripts = [(0x03B1, 0x03C9), (0x0391, 0x03A9), (0x0430, 0x044F), (0x0410, 0x042F),
               (0x4E00, 0x9FFF), (0x3041, 0x3096), (0x30A1, 0x30FA), (0xAC00, 0xD7A3),
               (0x0627, 0x064A), (0x05D0, 0x05EA), (0x0905, 0x0939), (0x0E01, 0x0E2E),
               (0x00C0, 0x00FF), (0x0100, 0x017F)]
    emoji = ["\U0001F600", "\U0001F389", "\U0001F44D\U0001F3FD", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
             "\u2764\uFE0F", "\U0001F1EB\U0001F1F7", "\U0001F9D1\u200D\U0001F4BB", "\u263A", "\U0001FAE0"]
    digits = ["\u0660\u0661\u0662", "\uFF11\uFF12\uFF13", "\u0966\u0967", "\u00B2\u00BD", "\u2167", "42", "3.14"]
    spaces = [" ", "  ", "\t", "\n", "\r\n", "\u00A0", "\u3000", "\u2003", "\u202F", "\uFEFF", "\u0085",
              "\u001C", "\u180E", "\u2028", "\n\n\n", " " * 7]
    punct = [".", ",", "!", "?", "...", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "''", "\u201C",
             "\u201D", "\u2014", "()", "{}", "-->", "#", "\u00BF", "\u3002", "\uFF0C"]
    docs = []
    for d in range(40):
        parts = []
        lo, hi = scripts[d % len(scripts)]
        for _ in range(4000):
            r = rng.random()
            if r < 0.55:
                parts.append(word(lo, hi, rng.randint(1, 9)))
            elif r < 0.62:
                parts.append(rng.choice(emoji))
            elif r < 0.67:
                parts.append(rng.choice(digits))
            elif r < 0.80:
                parts.append(rng.choice(punct))
            elif r < 0.81:  # long whitespace runs, with and without text after them
                parts.append(rng.choice([" ", "\n", "\t", " \n"]) * rng.randint(20, 300))
            else:
                parts.append(rng.choice(spaces))
            if rng.random() < 0.6:
                parts.append(" ")
        docs.append("".join(parts))
    # Random code points from the whole range (no surrogates): every class boundary.
    for d in range(12):
        chars = []
        for _ in range(15000):
            cp = rng.choice([rng.randint(0x20, 0x2FF), rng.randint(0x300, 0xFFFF), rng.randint(0x10000, 0x10FFFF)])
            if 0xD800 <= cp <= 0xDFFF:
                cp = 0x20
            chars.append(chr(cp))
            if rng.random() < 0.25:
                chars.append(" ")
        docs.append("".join(chars))
    docs.append("Documents mention <|endoftext|> as text; it encodes as plain text.\n")
    docs.append("trailing spaces   ")
    docs.append("   leading spaces and a lone apostrophe ' and 'quoted' words'")
    return docs


def main():
    out_dir = sys.argv[1]
    stamp = os.path.join(out_dir, "corpus.version")
    if os.path.exists(stamp) and open(stamp).read() == VERSION:
        return  # already built
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(20240607)
    docs = []
    docs += from_files(["/usr/share/common-licenses/*"], 300_000)
    docs += from_files(["/usr/share/doc/*/copyright"], 900_000)
    docs += from_files(["/usr/share/doc/*/changelog.Debian.gz"], 500_000)
    docs += from_files(["/usr/lib/python3*/*.py"], 1_300_000)
    docs += from_files(["/usr/include/*.h"], 400_000)
    docs += from_files(["/usr/share/man/man[1-8]/*.gz"], 500_000)
    for lang in ["ru", "ja", "ko", "de", "fr", "pl", "uk", "sr", "zh_CN", "zh_TW"]:
        docs += from_files(["/usr/share/man/%s/man[1-8]/*.gz" % lang], 150_000)
    docs += generated(rng)
    blob = bytearray()
    offsets = [0]
    for doc in docs:
        blob += doc.encode("utf-8")
        offsets.append(len(blob))
    # Written under temporary names and renamed, so concurrent runs never see half a file.
    for name, data in [("corpus.txt", bytes(blob)), ("corpus.offsets", "\n".join(map(str, offsets)).encode() + b"\n")]:
        tmp = os.path.join(out_dir, name + ".tmp%d" % os.getpid())
        open(tmp, "wb").write(data)
        os.replace(tmp, os.path.join(out_dir, name))
    open(stamp, "w").write(VERSION)
    print("corpus: %d documents, %.2f MB in %s" % (len(docs), len(blob) / 1e6, out_dir))


if __name__ == "__main__":
    main()
