"""The .sqz header: what a file was compressed with, checked before anything is decoded."""

import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import SeqlabError
from ..train.speed import native_bf16

MAGIC = b"SQZ\x1a"
LONGEST = 320  # bytes: no header is longer (its one string, torch's version, is at most 255)
# 7: the text's own counts taken in every COUNT_EVERY steps, as eval takes them in (5 and 6: every chunk//S
# steps); 5: segments read in lockstep, blocks, constriction's range coder (4: one stream a token at a time)
# 9: the count model's word model (countmodel/words.py) mixed in; a run without one writes 7 (8 with --adapt), the
# files it wrote before, and decodes them as it did
# 11: the mixer's weight sets selected by warmth (counts.select has "warmth": how much of its segment the network has
# read); 11-14 are 9, 10, 7, 8 with them. A run whose counts.select lacks it writes 7-10 as before, and every file
# decodes with the mixer it was coded with. 11-14 record torch's version as a tag of VERSION_TAG bytes, not its name
# 15: segments start at line starts, read after a newline (compress/seams.py: their moves in each block's framing);
# 15-18 are 11-14 with them, and a run with warmth writes them
# 19: the count model's bitwise context-mixing model (counts.bitcm, countmodel/bitcm.py) over the mix, in lockstep
# rows (countmodel/bitrows.py); 19-22 are 15-18 with it (it needs the warmth sets and line starts: a run without
# them refuses to compress with it). Its setting is in the count model's fingerprint (counts_fingerprint), so a
# file is refused by a run whose counts.bitcm or bitcm_history differ from the one that coded it
# 23: the network's step in bf16 (compress/lockstep.py step_in_bf16: a transformer's, where the CPU computes bf16
# natively); 23-26 are 15-18 with it and 143-146 are 135-138 with it (BF16_OFFSET), and a CPU without native bf16
# refuses them (check_compatible)
# 27: 19 with each row's recent state (fast probabilities, bit histories) in a cache of its own (bitrows.py); 27-30
# are 19-22 with it, 35-38 are 27-30 in bf16
# 31: 27 with the stronger bitwise model (column contexts, a word context of three words, a third mixer and an APM
# keyed by the last byte: docs/quality.md "Stronger"); 31-34 are 27-30 with it, 39-42 are 35-38 with it.
# 43: 31 with the bitwise model's contexts for code and markup (docs/quality.md "Contexts for code and markup");
# 43-46 are 31-34 with them, 51-54 are 39-42 with them.
# 55: 43 with the bitwise model's byte class sequence and sparse contexts and a fourth mixer (docs/quality.md "The
# byte class sequence"); 55-58 are 43-46 with them, 63-66 are 51-54 with them.
# 71: 55 with the bitwise model's indirect, skipping word and line contexts (docs/quality.md "Indirect contexts");
# 71-74 are 55-58 with them, 79-82 are 63-66 with them (67-70 and 75-78 were never used)
# 83: 71 with the bitwise model's cheaper floats (float32 mixers and APMs, squash and stretch by tables, the APMs
# sized from the history: docs/quality.md "The bitwise model's arithmetic cheaper"); 83-86 are 71-74 with them,
# 91-94 are 79-82 with them
# 87: 83 without the bitwise model's mixer by the last byte (docs/quality.md "Parts of the bitwise model on new text");
# 87-90 are 83-86 without it, 95-98 are 91-94 without it
# 99: 87 with a text's first bytes after BOS coded with the mix's rows (countmodel/session.py MIX_FIRST: a row read
# from BOS, the bitwise model reading them all the same); 99-102 are 87-90 with them, 107-110 are 95-98 with them
# 111: 99 with the bitwise model given the network's distribution beside the mix's, and its rates and APM weights of
# 2026-12-07 (docs/quality.md "Tried on the tuning slice"); 111-114 are 99-102 with them, 119-122 are 107-110 with them
# 123: 111 with the bitwise model's mixer 3 selecting its weights by the given's confidence too, and its mixer 2 at
# half rate (docs/quality.md "Mixer 3's weight sets by the given's confidence"); 123-126 are 111-114 with them, 131-134
# are 119-122 with them (127-130 were never used)
# 135: 123 with the bitwise model's mixer by the partial byte and the given's confidence (docs/quality.md "A mixer by
# the partial byte and the given's confidence"); 135-138 are 123-126 with it, 143-146 are 131-134 with it (139-142
# were never used)
# 19-22, 27-30, 31-34, 43-46, 55-58, 71-74, 83-86 and 87-90 (35-38, 39-42, 51-54, 63-66, 79-82, 91-94, 95-98 too) are
# refused in one line: their model is gone; they were made while counts.bitcm was off by default, by runs that
# turned it on; so are 99-102 and 107-110, made by the default of 2026-12-07 before the change of 111, and 111-114,
# 119-122, before the change of 123, and 123-126, 131-134, before the change of 135
FORMAT = 15
ADAPTED_FORMAT = 16  # format 15 plus the network's online adaptation (compress --adapt): its lr and chunk
NO_WORDS_FORMAT, NO_WORDS_ADAPTED_FORMAT = 17, 18  # 15 and 16 without the word model
# format: (the word model mixed in, adapted, weight sets selected by warmth, segments moved to line starts, bitcm,
# the network's step in bf16)
_FP32_FORMATS = {9: (True, False, False, False, False), 10: (True, True, False, False, False),
           7: (False, False, False, False, False), 8: (False, True, False, False, False),
           11: (True, False, True, False, False), 12: (True, True, True, False, False),
           13: (False, False, True, False, False), 14: (False, True, True, False, False),
           FORMAT: (True, False, True, True, False), ADAPTED_FORMAT: (True, True, True, True, False),
           NO_WORDS_FORMAT: (False, False, True, True, False),
           NO_WORDS_ADAPTED_FORMAT: (False, True, True, True, False),
           135: (True, False, True, True, True), 136: (True, True, True, True, True),
           137: (False, False, True, True, True), 138: (False, True, True, True, True)}
BF16_OFFSET = 8  # format 15 + 8 = 23 is 15 with the step in bf16; 135 + 8 = 143 is 135 with it
FORMATS = {f: kind + (False,) for f, kind in _FP32_FORMATS.items()} | \
    {f + BF16_OFFSET: kind + (True,) for f, kind in _FP32_FORMATS.items() if kind[3]}
FINGERPRINT_BYTES = 4  # tells runs apart before decoding; a 1 in 2^32 miss is still caught by the CRC
VERSION_TAG = 2  # bytes of a hash of torch's version (formats 11-14): a 1 in 65,536 miss is still caught by the CRC


def version_tag(version: str) -> str:
    """How formats 11-18 name a torch version: "tag " and VERSION_TAG bytes of its hash, in hex (8 bytes fewer than
    the name, a third of what was left of the gap between compress and eval on 100 KB)."""
    return "tag " + hashlib.sha256(version.encode()).digest()[:VERSION_TAG].hex()


@dataclass
class Header:
    fingerprint: bytes
    counts_fingerprint: bytes | None  # the count model's, when it was mixed in
    torch_version: str
    threads: int
    n_bytes: int  # of the original
    crc: int
    adapt_lr: float = 0.0  # > 0: the network adapted as it coded (adapt.Adapter), with this lr
    adapt_chunk: int = 0  # and this chunk
    words: bool = False  # the count model's word model was mixed in (format 9, 10, 11 or 12)
    warmth: bool = False  # the mixer had weight sets selected by warmth (formats 11-18)
    lines: bool = False  # segments moved to line starts, their moves in each block (15-18, 23-26, 135-138, 143-146)
    bitcm: bool = False  # the bitwise model over the mix, rows with caches of their own (formats 135-138, 143-146)
    bf16: bool = False  # the network's step under bf16 autocast (formats 23-26, 143-146)

    def pack(self) -> bytes:
        version = self.torch_version.encode()
        if self.warmth:  # formats 11-18: the version's tag
            tag = self.torch_version if self.torch_version.startswith("tag ") else version_tag(self.torch_version)
            version = bytes.fromhex(tag[4:])
        mixed = self.counts_fingerprint is not None
        adapted = struct.pack("<d", self.adapt_lr) + varints(self.adapt_chunk) if self.adapt_lr > 0 else b""
        kind = (self.words, bool(adapted), self.warmth, self.lines, self.bitcm, self.bf16)
        fmt = next((f for f, k in FORMATS.items() if k == kind), None)
        assert fmt is not None or not self.bf16, "bf16 formats come with the line starts (codec._header)"
        if fmt is None:  # bitcm without the warmth sets' line starts
            raise SeqlabError("compress codes with counts.bitcm only with the warmth sets (\"warmth\" in "
                              "counts.select): this run has bitcm without them; add \"warmth\" to counts.select "
                              "in its config.json, or set counts.bitcm to false")
        return b"".join([MAGIC, bytes([fmt, mixed]), self.fingerprint,
                         self.counts_fingerprint or b"", b"" if self.warmth else bytes([len(version)]), version,
                         varints(self.threads, self.n_bytes), struct.pack("<I", self.crc), adapted])

    @classmethod
    def unpack(cls, data: bytes, name: str) -> tuple["Header", int]:
        """The header and the offset where the blocks start."""
        if data[:4] != MAGIC:
            raise SeqlabError(f"{name} is not a seqlab compressed file (no SQZ header); "
                              "make one with `seqlab compress`")
        r = ByteReader(io.BytesIO(data))
        r.take(4)
        try:
            fmt, mixed = r.take(2)
            if fmt not in FORMATS:
                raise SeqlabError(f"{name} has compressed format {fmt}; this seqlab reads formats "
                                  f"{', '.join(map(str, sorted(FORMATS)))}: decompress it with the seqlab version "
                                  "that made it")
            words, adapted, warmth, lines, bitcm, bf16 = FORMATS[fmt]
            fingerprint = r.take(FINGERPRINT_BYTES)
            counts = r.take(FINGERPRINT_BYTES) if mixed else None
            version = "tag " + r.take(VERSION_TAG).hex() if warmth else r.take(r.take(1)[0]).decode()
            threads, n_bytes = r.varint(), r.varint()
            (crc,) = struct.unpack("<I", r.take(4))
            (lr,) = struct.unpack("<d", r.take(8)) if adapted else (0.0,)
            chunk = r.varint() if adapted else 0
        except (EOFError, UnicodeDecodeError):
            raise SeqlabError(f"{name} is truncated or damaged (cannot read its header)") from None
        header = cls(fingerprint, counts, version, threads, n_bytes, crc, lr, chunk, words, warmth, lines, bitcm,
                     bf16)
        return header, r.stream.tell()

    def adapt_options(self):
        """adapt.AdaptOptions the file was coded with, or None."""
        from ..adapt import AdaptOptions

        return AdaptOptions(self.adapt_lr, self.adapt_chunk, self.threads) if self.adapt_lr > 0 else None


def varints(*values: int) -> bytes:
    """LEB128: 7 bits a byte, high bit set while more follow (the header is part of the compressed size)."""
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class ByteReader:
    """Reads a binary stream (a file, or io.BytesIO), raising EOFError where it ends early."""

    def __init__(self, stream):
        self.stream = stream

    def take(self, n: int) -> bytes:
        data = self.stream.read(n)
        if len(data) < n:
            raise EOFError
        return data

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value


def run_fingerprint(run_dir) -> bytes:
    """FINGERPRINT_BYTES identifying the run's config, tokenizer and weights (tensor names, dtypes, shapes, bytes)."""
    from safetensors import safe_open

    from ..checkpoint import CHECKPOINT_FILE

    run_dir = Path(run_dir)
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        h.update((run_dir / name).read_bytes())
    with safe_open(str(run_dir / CHECKPOINT_FILE), framework="pt", device="cpu") as f:
        for key in sorted(k for k in f.keys() if k.startswith("model.")):
            t = f.get_tensor(key).contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.digest()[:FINGERPRINT_BYTES]


def counts_fingerprint(run) -> bytes | None:
    """FINGERPRINT_BYTES identifying the count model's training tokens, or None when the run has no count model."""
    if run.count_model is None:
        return None
    digest = run.count_model.digest
    if bitcm_on(run):  # its setting too (off: the digest alone, as files made before it have)
        digest += f"|bitcm {run.count_model.config.bitcm_history}"
    return hashlib.sha256(digest.encode()).digest()[:FINGERPRINT_BYTES]


def bitcm_on(run) -> bool:
    """Whether the run's count model has the bitwise model (counts.bitcm on a byte tokenizer's run)."""
    return run.count_model is not None and run.count_model.history_bytes is not None


def check_compatible(header: Header, run, name: str, threads: int | None) -> None:
    """Refuse, in one line, a file that this run, torch build or thread count would decode differently."""
    from ..countmodel import HISTORY_FILE

    mine = run_fingerprint(run.path)
    if header.fingerprint != mine:
        raise SeqlabError(f"{name} was compressed with a different run (fingerprint {header.fingerprint.hex()}, "
                          f"{run.path} is {mine.hex()}); decompress it with the run that compressed it")
    if header.counts_fingerprint is not None:
        counts = counts_fingerprint(run)
        if counts is None:
            raise SeqlabError(f"{name} was compressed with the run's count model mixed in, but {run.path} has none "
                              f"(no {HISTORY_FILE}); decompress it with the run directory that compressed it")
        if counts != header.counts_fingerprint:
            mine, theirs = ("on" if bitcm_on(run) else "off"), ("on" if header.bitcm else "off")
            setting = f"counts.bitcm {mine} in {run.path}, {theirs} in the file"
            raise SeqlabError(f"{name} was compressed with a different count model ({HISTORY_FILE} of {run.path} "
                              f"differs, or its bitwise model's setting: {setting}); decompress it with the run "
                              "directory and config that compressed it")
        if header.words and run.count_model.words is None:
            raise SeqlabError(f"{name} was compressed with the count model's word model, but {run.path} has no word "
                              f"table (counts/words/); add it with seqlab.countmodel.add_word_table(run), or "
                              f"decompress with the run directory that compressed it")
    tagged = header.torch_version.startswith("tag ")
    if header.torch_version != (version_tag(torch.__version__) if tagged else torch.__version__):
        other = f"another torch build (version {header.torch_version})" if tagged else f"torch {header.torch_version}"
        raise SeqlabError(f"{name} was compressed with {other}, this is torch {torch.__version__}: probabilities "
                          f"may differ; decompress it with the torch that compressed it")
    if header.bf16 and not native_bf16(torch.device("cpu")):
        raise SeqlabError(f"{name} was compressed with the network in bf16, which this CPU does not compute natively "
                          f"(no AVX512-BF16 or AMX): its probabilities would differ; decompress it on a CPU with "
                          f"native bf16, like the one that compressed it (`seqlab compress --fp32` writes files that "
                          f"need no bf16)")
    if threads is not None and threads != header.threads:
        raise SeqlabError(f"--threads {threads} was given, but {name} was compressed with {header.threads} "
                          f"thread(s), and other thread counts round differently; leave --threads out "
                          f"(decompress uses the file's)")
