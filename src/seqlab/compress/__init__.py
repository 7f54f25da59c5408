"""`seqlab compress` / `seqlab decompress`, and the classical compressors seqlab is measured against.

    codec.py       compress_bytes / decompress_bytes (and _file): the model's predictions (count model mixed
                   in, as eval scores) drive constriction's range coder; the CLI
    lockstep.py    a block of the file read as segments side by side, one model step for all of them
    seams.py       where a block's segments start (formats 15-18): at line starts, read after a newline
    header.py      the .sqz header: fingerprints of the run and count model, torch version, threads, CRC
    classical.py   gzip, bzip2, xz and zstd as yardsticks (seqlab compare, bench/)

    import seqlab
    from seqlab.compress import compress_bytes, decompress_bytes
    run = seqlab.load("runs/latest", device="cpu")
    blob = compress_bytes(run, b"ROMEO: ...")
    assert decompress_bytes(run, blob) == b"ROMEO: ..."
"""

from .codec import add_cli, compress_bytes, compress_file, decompress_bytes, decompress_file
from .header import Header

__all__ = ["compress_bytes", "decompress_bytes", "compress_file", "decompress_file", "Header", "add_cli"]
