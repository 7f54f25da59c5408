"""`seqlab compress` / `seqlab decompress`: range coding driven by the model's next-token probabilities.

The file is cut into up to MAX_CHUNKS chunks of at least MIN_CHUNK bytes, each
coded as its own stream starting from BOS; the chunks run as one batch through
the model's incremental `step`, one token per step. Decompression repeats the
very same computation (same batch shape, same inputs at every step, same thread
count), so both sides see bit-identical probabilities. Each chunk starts with
no context, which costs a little against `seqlab eval` (a few bits per chunk).

The probabilities are the network's alone: a run's count model (which `seqlab
eval` mixes in) is not used here, so compare with eval's "network alone" figure
(`bpb_network` in its JSON). Probabilities are quantised to integer frequencies summing to at most TOTAL
(every token gets at least 1), then coded with rangecoder.py.

File layout (little-endian):
    magic "SQZ\\x1a", format u8, run fingerprint (16 bytes), torch version
    (u8 length + ASCII), threads u16, original length u64, CRC-32 u32,
    chunk count u32, per chunk (tokens u32, stream bytes u32), the streams.
"""

import hashlib
import struct
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import SeqlabError
from .rangecoder import Decoder, Encoder

MAGIC = b"SQZ\x1a"
FORMAT = 1
TOTAL = 1 << 24
MIN_CHUNK = 8192
MAX_CHUNKS = 64


@dataclass
class Header:
    fingerprint: bytes
    torch_version: str
    threads: int
    length: int
    crc: int
    chunks: list[tuple[int, int]]  # (tokens, stream bytes) per chunk

    def pack(self) -> bytes:
        version = self.torch_version.encode()
        parts = [MAGIC, struct.pack("<B", FORMAT), self.fingerprint, struct.pack("<B", len(version)), version,
                 struct.pack("<HQII", self.threads, self.length, self.crc, len(self.chunks))]
        parts += [struct.pack("<II", n, size) for n, size in self.chunks]
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes, name: str) -> tuple["Header", int]:
        """The header and the offset where the streams start."""
        if data[:4] != MAGIC:
            raise SeqlabError(f"{name} is not a seqlab compressed file (no SQZ header); "
                              "make one with `seqlab compress`")
        try:
            (fmt,) = struct.unpack_from("<B", data, 4)
            if fmt != FORMAT:
                raise SeqlabError(f"{name} has compressed format {fmt}; this seqlab reads format {FORMAT}")
            fingerprint = data[5:21]
            (n,) = struct.unpack_from("<B", data, 21)
            version = data[22 : 22 + n].decode()
            pos = 22 + n
            threads, length, crc, n_chunks = struct.unpack_from("<HQII", data, pos)
            pos += 18
            chunks = [struct.unpack_from("<II", data, pos + 8 * i) for i in range(n_chunks)]
        except (struct.error, UnicodeDecodeError):
            raise SeqlabError(f"{name} is truncated or damaged (cannot read its header)") from None
        return cls(fingerprint, version, threads, length, crc, chunks), pos + 8 * n_chunks


def run_fingerprint(run_dir) -> bytes:
    """16 bytes identifying the run's config, tokenizer and weights (tensor names, dtypes, shapes, bytes)."""
    from safetensors import safe_open

    from .checkpoint import CHECKPOINT_FILE

    run_dir = Path(run_dir)
    h = hashlib.sha256()
    for name in ("config.json", "tokenizer.json"):
        h.update((run_dir / name).read_bytes())
    with safe_open(str(run_dir / CHECKPOINT_FILE), framework="pt", device="cpu") as f:
        for key in sorted(k for k in f.keys() if k.startswith("model.")):
            t = f.get_tensor(key).contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes())
    return h.digest()[:16]


def plan_chunks(n_bytes: int, min_chunk: int = MIN_CHUNK) -> list[tuple[int, int]]:
    """(start, stop) byte ranges: chunks of at least min_chunk bytes (but one at least), at most MAX_CHUNKS."""
    if n_bytes == 0:
        return []
    n = min(MAX_CHUNKS, max(1, n_bytes // min_chunk))
    size = -(-n_bytes // n)
    return [(s, min(s + size, n_bytes)) for s in range(0, n_bytes, size)]


def quantise(logits: torch.Tensor) -> np.ndarray:
    """Cumulative integer frequencies (B, V+1): every token >= 1, row totals <= TOTAL."""
    probs = torch.softmax(logits.float(), dim=-1)
    freq = (probs * (TOTAL - logits.shape[-1])).floor().long() + 1  # (B, V)
    cum = np.zeros((freq.shape[0], freq.shape[1] + 1), dtype=np.int64)
    np.cumsum(freq.cpu().numpy(), axis=1, out=cum[:, 1:])
    return cum


@torch.no_grad()
def _drive(run, lengths: list[int], pick) -> None:
    """Step all chunks together; pick(t, cum) returns the token of each row at step t (pad past a row's end)."""
    model, bos = run.model, run.tokenizer.bos_id
    x = torch.full((len(lengths),), bos, dtype=torch.long)
    state = model.init_state(len(lengths), torch.device("cpu"))
    for t in range(max(lengths, default=0)):
        logits, state = model.step(x, state)
        x = torch.from_numpy(pick(t, quantise(logits)))


class TorchThreads:
    """Run with a given torch thread count (it can change float results), then restore it."""

    def __init__(self, n: int):
        self.n, self.saved = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.saved)


def compress_bytes(run, data: bytes, min_chunk: int = MIN_CHUNK, threads: int = 1) -> bytes:
    """Compress `data` with the model of `run` (a loaded Run on the CPU).

    Smaller chunks run faster (more rows per step) but each starts without context.
    """
    _require_cpu(run)
    if min_chunk < 1:
        raise SeqlabError(f"--chunk must be >= 1 byte, got {min_chunk}")
    tok = run.tokenizer
    chunks = [tok.encode(data[a:b]) for a, b in plan_chunks(len(data), min_chunk)]
    lengths = [len(c) for c in chunks]
    encoders = [Encoder() for _ in chunks]
    pad = np.full(len(chunks), tok.bos_id, dtype=np.int64)

    def pick(t, cum):
        nxt = pad.copy()
        for row, (tokens, enc) in enumerate(zip(chunks, encoders)):
            if t < len(tokens):
                s = tokens[t]
                enc.encode(int(cum[row, s]), int(cum[row, s + 1] - cum[row, s]), int(cum[row, -1]))
                nxt[row] = s
        return nxt

    with TorchThreads(threads):  # recorded: decompress uses the same count
        _drive(run, lengths, pick)
    streams = [enc.finish() for enc in encoders]
    header = Header(run_fingerprint(run.path), torch.__version__, threads, len(data), zlib.crc32(data),
                    [(n, len(s)) for n, s in zip(lengths, streams)])
    return header.pack() + b"".join(streams)


def decompress_bytes(run, blob: bytes, name: str = "input") -> bytes:
    """Invert compress_bytes; refuses a file made with another run or torch build."""
    _require_cpu(run)
    header, pos = Header.unpack(blob, name)
    _check_compatible(header, run, name)
    lengths, decoders = [], []
    for n, size in header.chunks:
        lengths.append(n)
        decoders.append(Decoder(blob[pos : pos + size]))
        pos += size
    out = [[] for _ in lengths]
    pad = np.full(len(lengths), run.tokenizer.bos_id, dtype=np.int64)

    def pick(t, cum):
        nxt = pad.copy()
        for row, dec in enumerate(decoders):
            if t < lengths[row]:
                v = dec.target(int(cum[row, -1]))
                s = int(np.searchsorted(cum[row], v, side="right")) - 1
                dec.consume(int(cum[row, s]), int(cum[row, s + 1] - cum[row, s]))
                out[row].append(s)
                nxt[row] = s
        return nxt

    with TorchThreads(header.threads):
        _drive(run, lengths, pick)
    data = b"".join(run.tokenizer.decode(ids) for ids in out)
    if len(data) != header.length or zlib.crc32(data) != header.crc:
        raise SeqlabError(f"{name} did not decode to the original (CRC mismatch): the file is damaged, or "
                          "this machine computes the model differently from the one that compressed it")
    return data


def _require_cpu(run) -> None:
    if run.device.type != "cpu":
        raise SeqlabError("compress/decompress run on the CPU only (bit-exact arithmetic); "
                          "load the run with device=cpu")


def _check_compatible(header: Header, run, name: str) -> None:
    mine = run_fingerprint(run.path)
    if header.fingerprint != mine:
        raise SeqlabError(f"{name} was compressed with a different run (fingerprint {header.fingerprint.hex()}, "
                          f"{run.path} is {mine.hex()}); decompress it with the run that compressed it")
    if header.torch_version != torch.__version__:
        raise SeqlabError(f"{name} was compressed with torch {header.torch_version}, this is torch "
                          f"{torch.__version__}: probabilities may differ; "
                          f"decompress it with torch {header.torch_version}")


def add_cli(sub) -> None:
    for verb, help_text, default in (("compress", "compress a file with a run's model (range coding)", "FILE.sqz"),
                                     ("decompress", "restore a file made by `seqlab compress`", "FILE without .sqz")):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("run")
        p.add_argument("file")
        p.add_argument("-o", "--output", help=f"output path (default {default})")
        if verb == "compress":
            p.add_argument("--threads", type=int, default=1,
                           help="CPU threads (recorded for decompress; default 1: small steps gain little from more)")
            p.add_argument("--chunk", type=int, default=MIN_CHUNK,
                           help=f"least bytes per independently coded chunk (default {MIN_CHUNK}; "
                                f"at most {MAX_CHUNKS} chunks)")
        p.set_defaults(func=cli)


def _output_path(args) -> Path:
    if args.output:
        return Path(args.output)
    if args.verb == "compress":
        return Path(args.file + ".sqz")
    if not args.file.endswith(".sqz"):
        raise SeqlabError(f"{args.file} does not end in .sqz; give the output path with -o")
    return Path(args.file[: -len(".sqz")])


def cli(args) -> None:
    from .run import load

    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise SeqlabError(f"cannot read {args.file}: {e.strerror}") from None
    out = _output_path(args)
    run = load(args.run, device="cpu")
    t0 = time.perf_counter()
    if args.verb == "compress":
        if args.threads < 1:
            raise SeqlabError(f"--threads must be >= 1, got {args.threads}")
        result = compress_bytes(run, data, args.chunk, args.threads)
        original, coded = len(data), len(result)
    else:
        result = decompress_bytes(run, data, args.file)
        original, coded = len(result), len(data)
    try:
        out.write_bytes(result)
    except OSError as e:
        raise SeqlabError(f"cannot write {out}: {e.strerror}") from None
    seconds = time.perf_counter() - t0
    bpb = 8 * coded / max(original, 1)
    print(f"{args.file} -> {out}: {original:,} bytes <-> {coded:,} bytes ({bpb:.4f} bits/byte) "
          f"in {seconds:.1f}s ({original / max(seconds, 1e-9):,.0f} bytes/s)", file=sys.stderr)
