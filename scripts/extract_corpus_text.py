#!/usr/bin/env python3
"""Extracts the default corpus's text from installed Debian packages into JSON lines.

    extract_corpus_text.py SOURCE OUT.jsonl

One {"text": ...} document per line. Sources:
  bible       the King James Bible (package bible-kjv), one document per chapter
  dictionary  GCIDE (package dict-gcide), groups of consecutive entries of ~4 KB
  manuals     GNU info manuals (/usr/share/info) and plain-text docs (/usr/share/doc)
  code        the CPython standard library (/usr/lib/python3.*), one document per file
Only the Python standard library is used, so the Debian interpreter runs it as is.
"""
import base64
import glob
import gzip
import json
import os
import re
import subprocess
import sys


def bible():
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True,
                          capture_output=True, text=True).stdout
    chapter, verses = None, []
    for line in text.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line)
        if not m:
            continue
        key = m.group(1) + " " + m.group(2)
        if key != chapter and verses:
            yield chapter + "\n" + "\n".join(verses)
            verses = []
        chapter = key
        verses.append(m.group(3) + " " + m.group(4))
    if verses:
        yield chapter + "\n" + "\n".join(verses)


def b64_number(s):
    # dictd's index encodes offsets in base64 digits, most significant first.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    n = 0
    for c in s:
        n = n * 64 + alphabet.index(c)
    return n


def dictionary():
    with gzip.open("/usr/share/dictd/gcide.dict.dz", "rb") as f:
        data = f.read()
    entries = []
    with open("/usr/share/dictd/gcide.index", encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3 or parts[0].startswith("00-database"):
                continue
            entries.append((b64_number(parts[1]), b64_number(parts[2])))
    entries.sort()
    doc, size, last = [], 0, -1
    for off, length in entries:
        if off == last:
            continue  # several headwords share one entry
        last = off
        doc.append(data[off:off + length].decode("utf-8", errors="replace").strip())
        size += length
        if size >= 4096:
            yield "\n\n".join(doc)
            doc, size = [], 0
    if doc:
        yield "\n\n".join(doc)


def read_maybe_gz(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read().decode("utf-8", errors="replace")


def manuals():
    # Info manuals come in parts (x.info.gz, x.info-1.gz, ...): one document per manual.
    manuals = {}
    for path in sorted(glob.glob("/usr/share/info/*.info*")):
        name = re.sub(r"\.info(-\d+)?(\.gz)?$", "", os.path.basename(path))
        manuals.setdefault(name, []).append(path)
    for name in sorted(manuals):
        text = "".join(read_maybe_gz(p) for p in manuals[name])
        if text.strip():
            yield text.replace("\x1f", "")  # info's node separators
    for path in sorted(glob.glob("/usr/share/doc/**/*", recursive=True)):
        base = os.path.basename(path)
        if not os.path.isfile(path) or os.path.islink(path):
            continue
        if not re.search(r"(\.txt|README|NEWS|FAQ)(\.gz)?$", base, re.IGNORECASE):
            continue
        text = read_maybe_gz(path)
        if len(text.strip()) > 200:
            yield text


def code():
    roots = sorted(glob.glob("/usr/lib/python3.[0-9]*"))
    if not roots:
        sys.exit("no /usr/lib/python3.* found")
    for path in sorted(glob.glob(roots[-1] + "/**/*.py", recursive=True)):
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", errors="replace")
        if text.strip():
            yield text


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("bible", "dictionary", "manuals", "code"):
        sys.exit(__doc__)
    source, out = sys.argv[1], sys.argv[2]
    docs = 0
    with open(out + ".tmp", "w", encoding="utf-8") as f:
        for text in globals()[source]():
            f.write(json.dumps({"text": text}) + "\n")
            docs += 1
    os.replace(out + ".tmp", out)
    print(f"{source}: {docs} documents -> {out}")


if __name__ == "__main__":
    main()
