"""Classical compressors as yardsticks: the conditional cost of held-out bytes.

cost(val | train) = size(compress(train + val)) - size(compress(train)), in bits
per byte of val: what the compressor pays for the held-out text when it has
already seen the training text, the same question a model's bits per byte answers.
"""

import bz2
import gzip
import lzma

COMPRESSORS = {
    "gzip -9": lambda b: gzip.compress(b, compresslevel=9, mtime=0),
    "bzip2 -9": lambda b: bz2.compress(b, compresslevel=9),
    "xz -9e": lambda b: lzma.compress(b, preset=9 | lzma.PRESET_EXTREME),
}


def _zstd():
    try:
        import zstandard
    except ImportError:
        return None
    # Long-distance matching with a window covering the whole input, as `zstd --ultra -22 --long`.
    params = zstandard.ZstdCompressionParameters.from_level(22, window_log=27, enable_ldm=True)
    return lambda b: zstandard.ZstdCompressor(compression_params=params).compress(b)


def available() -> dict:
    found = dict(COMPRESSORS)
    zstd = _zstd()
    if zstd is not None:
        found["zstd --ultra -22 --long"] = zstd
    return found


def conditional_bpb(train: bytes, val: bytes) -> dict[str, float]:
    """{compressor: bits per byte of `val` given `train`}."""
    if not val:
        raise ValueError("no held-out bytes to measure")
    return {
        name: 8.0 * (len(fn(train + val)) - len(fn(train))) / len(val) for name, fn in available().items()
    }


def plain_bpb(data: bytes) -> dict[str, float]:
    """{compressor: bits per byte of `data` compressed alone} (e.g. vs `seqlab compress`)."""
    return {name: 8.0 * len(fn(data)) / max(1, len(data)) for name, fn in available().items()}


def held_out_bytes(docs, val_fraction: float) -> tuple[bytes, bytes]:
    """The training and held-out bytes of a corpus, split as training splits it."""
    from ..data.corpus import split_document

    parts = [split_document(d.data, val_fraction) for d in docs]
    return b"".join(t for t, _ in parts), b"".join(v for _, v in parts)
