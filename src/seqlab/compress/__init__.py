"""`seqlab compress` / `seqlab decompress`, and the classical compressors seqlab is measured against.

    codec.py       compress_bytes / decompress_bytes: the model's predictions (count model mixed in,
                   as eval scores) drive a range coder; the .sqz header; the CLI
    rangecoder.py  the 64-bit range coder itself
    classical.py   gzip, bzip2, xz and zstd as yardsticks (seqlab compare, bench/)

    import seqlab
    from seqlab.compress import compress_bytes, decompress_bytes
    run = seqlab.load("runs/latest", device="cpu")
    blob = compress_bytes(run, b"ROMEO: ...")
    assert decompress_bytes(run, blob) == b"ROMEO: ..."
"""

from .codec import Header, add_cli, compress_bytes, decompress_bytes

__all__ = ["compress_bytes", "decompress_bytes", "Header", "add_cli"]
