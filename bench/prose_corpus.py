"""Assemble an English prose corpus of about 7 MB from Debian packages, reproducibly (for bench/vectors_*.py).

    python bench/prose_corpus.py [--out ~/.cache/seqlab/corpora]     # prints the directory

What goes in (each fetched with `apt-get download`, unpacked with `dpkg-deb -x`; nothing is installed):
  fortunes           fortune-mod's English quotations, stories and jokes (every file but .dat/.u8 indexes;
                     the "%" lines between entries become blank lines, so entries are paragraphs)
  fortune-anarchism  quotations on anarchism
  bible-kjv-text     the King James Bible, printed verse by verse by bible-kjv's own `bible` program
  dict-jargon        the Jargon File (dictd's gzip-compatible .dict.dz, decompressed)
Each source becomes files under OUT/prose-en/; the selection is sorted and whole, so the bytes are the same
on every machine with the same Debian release.
"""

import argparse
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from debian_corpora import is_text, unpack  # noqa: E402

NAME = "prose-en"


def assemble(out: Path) -> Path:
    target = out / NAME
    if target.exists():
        shutil.rmtree(target)
    (target / "fortunes").mkdir(parents=True)
    for package in ("fortunes", "fortune-anarchism"):
        root = unpack(package, out) / "usr/share/games/fortunes"
        for path in sorted(p for p in root.rglob("*") if is_text(p)):  # "%" lines part entries: blank lines here,
            lines = path.read_bytes().split(b"\n")                      # so every verb sees them as paragraphs
            (target / "fortunes" / path.name).write_bytes(b"\n".join(b"" if ln == b"%" else ln for ln in lines))
    text = unpack("bible-kjv-text", out) / "usr/lib"
    program = unpack("bible-kjv", out) / "usr/bin/bible"
    bible = subprocess.run([str(program), "-p", str(text), "gen1:1-rev22:21"], check=True, capture_output=True)
    (target / "bible-kjv.txt").write_bytes(bible.stdout)
    jargon = unpack("dict-jargon", out) / "usr/share/dictd/jargon.dict.dz"
    (target / "jargon.txt").write_bytes(gzip.decompress(jargon.read_bytes()))
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "seqlab" / "corpora")
    args = ap.parse_args()
    path = assemble(args.out)
    n_bytes = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    print(f"{NAME}\t{path}\t{n_bytes:,} bytes")


if __name__ == "__main__":
    main()
