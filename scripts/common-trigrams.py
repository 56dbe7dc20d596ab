#!/usr/bin/env python3
"""Writes src/detect/common_trigrams.txt: the 4096 most common case-folded byte trigrams of
ordinary text, most common first, one per line in hex.

The keyword prefilter (src/detect/prefilter.rs) anchors each keyword on its rarest trigram, and
needs to know which trigrams ordinary traffic is full of. The counts come from text that is
installed on a Debian machine and is *not* the project's benchmark input (that is Rust code
and generated English, benches/detect.rs), so the benchmarks measure how well the choice
generalises: Python's standard library, npm's JavaScript, C headers, licence texts and READMEs,
Markdown documentation (the English prose closest to what people write in prompts), and manual
pages, each given equal weight (up to 8 MB each).

Run: python3 scripts/common-trigrams.py > src/detect/common_trigrams.txt
"""
import collections
import glob
import gzip
import sys

CAP = 8_000_000  # bytes per kind of text
FILE_CAP = 100_000  # bytes per file, so one huge file does not speak for its whole kind

KINDS = [
    (["/usr/lib/python3*/**/*.py"], open),
    (["/usr/lib/node_modules/npm/**/*.js"], open),
    (["/usr/include/**/*.h"], open),
    (["/usr/share/common-licenses/*", "/usr/share/doc/**/copyright", "/usr/share/doc/**/README*"], open),
    (["/usr/lib/node_modules/**/*.md", "/usr/share/doc/**/*.md", "/usr/lib/python3*/**/*.rst"], open),
    (["/usr/share/man/man1/*.gz"], gzip.open),
]


def count(patterns, opener):
    counts = collections.Counter()
    total = 0
    for pattern in patterns:
        for path in sorted(glob.glob(pattern, recursive=True)):
            if total >= CAP:
                break
            try:
                with opener(path, "rb") as f:
                    data = f.read(FILE_CAP)
            except (OSError, EOFError, gzip.BadGzipFile):
                continue
            data = data.lower()
            total += len(data)
            counts.update(data[i : i + 3] for i in range(len(data) - 2))
    return counts, total


def main():
    score = collections.Counter()
    kinds = [count(patterns, opener) for patterns, opener in KINDS]
    kinds = [(c, t) for c, t in kinds if t > 0]
    if not kinds:
        sys.exit("no text found to count")
    for counts, total in kinds:
        for gram, n in counts.items():
            score[gram] += n / total
    for gram, _ in score.most_common(4096):
        print(gram.hex())


if __name__ == "__main__":
    main()
