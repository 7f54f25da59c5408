"""`seqlab compress` against `seqlab eval` and classical compressors, on one file, in one run.

    python bench/compress.py RUN [--file F] [--bytes 40000] [--threads 1]

Default file: the last --bytes of the bundled tiny Shakespeare (inside the held-out
10% of a run trained on it). Prints the compressed size (header included, and its
bytes), the round-trip check, bytes/s both ways, eval's bits per byte on the same
bytes (what compress codes with: the network mixed with the run's count model when
it has one; the network alone too), the gap to eval in %, and gzip/bzip2/xz/zstd alone.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from seqlab.compress import Header, compress_bytes, decompress_bytes  # noqa: E402
from seqlab.compress.classical import plain_bpb  # noqa: E402
from seqlab.data.corpus import default_corpus_path  # noqa: E402
from seqlab.evaluate import evaluate  # noqa: E402
from seqlab.run import load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--file", help="file to compress (default: the tail of the bundled corpus)")
    ap.add_argument("--bytes", type=int, default=40_000, help="bytes taken from the end of the file")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)  # eval too: the machine is shared
    data = Path(args.file or default_corpus_path()).read_bytes()[-args.bytes :]
    run = load(args.run)
    t0 = time.perf_counter()
    blob = compress_bytes(run, data, args.threads)
    t1 = time.perf_counter()
    assert decompress_bytes(run, blob) == data, "round trip failed"
    t2 = time.perf_counter()
    with tempfile.NamedTemporaryFile(suffix=".txt") as f:
        f.write(data)
        f.flush()
        ev = evaluate(run, [f.name])
    ours = 8 * len(blob) / len(data)
    speed = f"{len(data) / (t1 - t0):,.0f} / {len(data) / (t2 - t1):,.0f}"
    rows = [("seqlab compress", len(blob), ours, speed)]
    mixed = ev["bpb"] != ev["bpb_network"]
    if mixed:
        rows.append(("seqlab eval, with count model", round(ev["bpb"] * len(data) / 8), ev["bpb"], "-"))
    rows.append(("seqlab eval, network alone", round(ev["bpb_network"] * len(data) / 8), ev["bpb_network"], "-"))
    rows += [(name, round(bpb * len(data) / 8), bpb, "-") for name, bpb in plain_bpb(data).items()]
    print(f"{len(data):,} bytes from {args.file or default_corpus_path()}; run {args.run}; "
          f"{args.threads} thread(s)\n")
    print(f"| {'method':<30} | {'bytes':>9} | {'bits/byte':>9} | {'bytes/s in / out':<22} |")
    print(f"|{'-' * 32}|{'-' * 11}|{'-' * 11}|{'-' * 24}|")
    for name, size, bpb, secs in rows:
        print(f"| {name:<30} | {size:>9,} | {bpb:>9.4f} | {secs:<22} |")
    gap = ours / ev["bpb"] - 1
    header = Header.unpack(blob, "blob")[1]
    print(f"\ncompress vs eval ({'with count model' if mixed else 'network alone'}): {100 * gap:+.2f}% "
          f"({header} header bytes: {100 * 8 * header / len(data) / ev['bpb']:.2f}%); round trip byte-identical")


if __name__ == "__main__":
    main()
