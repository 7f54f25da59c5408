"""`seqlab compress` / `seqlab decompress`: range coding driven by the model's next-token probabilities.

The file is cut into up to MAX_CHUNKS chunks of at least MIN_CHUNK bytes, each
coded as its own stream starting from BOS; the chunks run as one batch through
the model's incremental `step`, one token per step. Decompression repeats the
very same computation (same batch shape, same inputs at every step, same thread
count), so both sides see bit-identical probabilities. Each chunk starts with
no context, which costs a little against `seqlab eval` (a few bits per chunk).

When the run has a count model, each step's prediction is the one `seqlab eval`
scores with: the network's log-probabilities mixed with the count experts by the
run's OnlineMixer (countmodel.py), whose counts and weights change every
`config.counts.chunk` tokens. The chunks then share one count-model session and
run in lockstep: at step t every chunk's next token is predicted from the
training counts plus all chunks' tokens before the last update (counts of
chunk-steps 0..256m-1 of every chunk, m = t // 256), and the weights as updated
so far; at each update the mixer takes one gradient step per chunk, in chunk
order, on that chunk's last 256 tokens (a chunk that has ended contributes what
it had), then the counts take every chunk's tokens. So the coded stream sees as
much text as eval's, in another order, and takes as many weight steps. The
count experts come from countmodel.StepReader, which hashes each position's
contexts from its last tokens alone (context_hashes' values), so the decoder can
follow one token at a time.

Probabilities are quantised to integer frequencies summing to at most TOTAL
(every token gets at least 1), then coded with rangecoder.py.

File layout (little-endian):
    magic "SQZ\\x1a", format u8, mixed u8 (1 when the count model was mixed in),
    run fingerprint (8 bytes), count-model fingerprint (8 bytes, only when mixed),
    torch version (u8 length + ASCII), threads and original length (varints),
    CRC-32 u32, chunk count, per chunk (tokens, stream bytes) (varints), the streams.
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
import torch.nn.functional as F

from .countmodel import HISTORY_FILE, StepReader
from .errors import SeqlabError
from .rangecoder import Decoder, Encoder

MAGIC = b"SQZ\x1a"
FORMAT = 2
TOTAL = 1 << 24
MIN_CHUNK = 8192
MAX_CHUNKS = 64
FINGERPRINT_BYTES = 8  # 64 bits tell runs apart; every header byte counts against the ratio


@dataclass
class Header:
    fingerprint: bytes
    counts_fingerprint: bytes | None  # the count model's, when it was mixed in
    torch_version: str
    threads: int
    length: int
    crc: int
    chunks: list[tuple[int, int]]  # (tokens, stream bytes) per chunk

    def pack(self) -> bytes:
        version = self.torch_version.encode()
        mixed = self.counts_fingerprint is not None
        parts = [MAGIC, bytes([FORMAT, mixed]), self.fingerprint, self.counts_fingerprint or b"",
                 bytes([len(version)]), version, _varints(self.threads, self.length),
                 struct.pack("<I", self.crc), _varints(len(self.chunks))]
        parts += [_varints(n, size) for n, size in self.chunks]
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes, name: str) -> tuple["Header", int]:
        """The header and the offset where the streams start."""
        if data[:4] != MAGIC:
            raise SeqlabError(f"{name} is not a seqlab compressed file (no SQZ header); "
                              "make one with `seqlab compress`")
        r = _ByteReader(data, 4)
        try:
            fmt, mixed = r.take(2)
            if fmt != FORMAT:
                raise SeqlabError(f"{name} has compressed format {fmt}; this seqlab reads format {FORMAT}")
            fingerprint = r.take(FINGERPRINT_BYTES)
            counts = r.take(FINGERPRINT_BYTES) if mixed else None
            version = r.take(r.take(1)[0]).decode()
            threads, length = r.varint(), r.varint()
            (crc,) = struct.unpack("<I", r.take(4))
            chunks = [(r.varint(), r.varint()) for _ in range(r.varint())]
        except (EOFError, UnicodeDecodeError):
            raise SeqlabError(f"{name} is truncated or damaged (cannot read its header)") from None
        return cls(fingerprint, counts, version, threads, length, crc, chunks), r.pos


def _varints(*values: int) -> bytes:
    """LEB128: 7 bits a byte, high bit set while more follow (the header is part of the compressed size)."""
    out = bytearray()
    for v in values:
        while v >= 0x80:
            out.append(v & 0x7F | 0x80)
            v >>= 7
        out.append(v)
    return bytes(out)


class _ByteReader:
    def __init__(self, data: bytes, pos: int):
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EOFError
        self.pos += n
        return self.data[self.pos - n : self.pos]

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
    return h.digest()[:FINGERPRINT_BYTES]


def counts_fingerprint(run) -> bytes | None:
    """FINGERPRINT_BYTES identifying the count model's training tokens, or None when the run has no count model."""
    if run.count_model is None:
        return None
    return hashlib.sha256((Path(run.path) / HISTORY_FILE).read_bytes()).digest()[:FINGERPRINT_BYTES]


def plan_chunks(n_bytes: int, min_chunk: int = MIN_CHUNK) -> list[tuple[int, int]]:
    """(start, stop) byte ranges: chunks of at least min_chunk bytes (but one at least), at most MAX_CHUNKS."""
    if n_bytes == 0:
        return []
    n = min(MAX_CHUNKS, max(1, n_bytes // min_chunk))
    size = -(-n_bytes // n)
    return [(s, min(s + size, n_bytes)) for s in range(0, n_bytes, size)]


def quantise(scores: torch.Tensor) -> np.ndarray:
    """Cumulative integer frequencies (B, V+1) from logits or log-probs: every token >= 1, row totals <= TOTAL."""
    probs = torch.softmax(scores.float(), dim=-1)
    freq = (probs * (TOTAL - scores.shape[-1])).floor().long() + 1  # (B, V)
    cum = np.zeros((freq.shape[0], freq.shape[1] + 1), dtype=np.int64)
    np.cumsum(freq.cpu().numpy(), axis=1, out=cum[:, 1:])
    return cum


class CountMixing:
    """The count model's half of each step: mixes it into the network's prediction for the live chunks,
    learns their tokens, and every `chunk` steps updates the weights and counts (see the module docstring)."""

    def __init__(self, run, n_chunks: int):
        session = run.count_model.session(torch.device("cpu"))
        self.mixer, self.chunk, self.n_chunks = session.mixer, run.config.counts.chunk, n_chunks
        self.reader = StepReader(session, n_chunks, np.array([run.tokenizer.bos_id]))
        self.pending: list = []  # per step: (rows, mixed log-probs, mixer features, buckets, tokens)

    def mix(self, net_logp: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """Mixed log-probabilities (len(rows), V) of the next token of chunks `rows`."""
        experts, bucket = self.reader.distributions(rows)
        logp, feats, b = self.mixer.mix(net_logp[torch.from_numpy(rows)], experts, bucket)
        self.pending.append((rows, logp, feats, b))
        return logp

    def learn(self, tokens: np.ndarray) -> None:
        """The tokens of the rows just mixed; updates once `chunk` steps have been learnt since the last."""
        self.reader.append(tokens)
        self.pending[-1] += (torch.from_numpy(tokens),)
        if len(self.pending) == self.chunk:
            self._update()

    def _update(self) -> None:
        owner = np.concatenate([step[0] for step in self.pending])  # the chunk of every pending row
        logp, feats, bucket, tokens = (torch.cat([step[i] for step in self.pending]) for i in range(1, 5))
        for row in range(self.n_chunks):
            mine = torch.from_numpy(np.flatnonzero(owner == row))
            if len(mine):
                self.mixer.update(logp[mine], feats[mine], bucket[mine], tokens[mine])
                self.reader.advance(row)
        self.pending = []


@torch.no_grad()
def _drive(run, lengths: list[int], pick, mixed: bool) -> None:
    """Step all chunks together; pick(t, rows, cum) returns the token at step t of each chunk in rows
    (those not yet ended), cum (len(rows), V+1) their quantised predictions."""
    model, bos = run.model, run.tokenizer.bos_id
    x = torch.full((len(lengths),), bos, dtype=torch.long)
    state = model.init_state(len(lengths), torch.device("cpu"))
    mixing = CountMixing(run, len(lengths)) if mixed else None
    ends = np.array(lengths)
    for t in range(max(lengths, default=0)):
        logits, state = model.step(x, state)
        rows = np.flatnonzero(t < ends)
        if mixing:
            scores = mixing.mix(F.log_softmax(logits.float(), dim=-1), rows)  # as scoring.score_logits
        else:
            scores = logits[torch.from_numpy(rows)]
        tokens = pick(t, rows, quantise(scores))
        if mixing:
            mixing.learn(tokens)
        x = x.clone()  # ended chunks keep stepping on their last token: the batch shape stays fixed
        x[torch.from_numpy(rows)] = torch.from_numpy(tokens)


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

    def pick(t, rows, cum):
        tokens = np.array([chunks[row][t] for row in rows], dtype=np.int64)
        for i, (row, s) in enumerate(zip(rows, tokens)):
            encoders[row].encode(int(cum[i, s]), int(cum[i, s + 1] - cum[i, s]), int(cum[i, -1]))
        return tokens

    mixed_with = counts_fingerprint(run)
    with TorchThreads(threads):  # recorded: decompress uses the same count
        _drive(run, lengths, pick, mixed=mixed_with is not None)
    streams = [enc.finish() for enc in encoders]
    header = Header(run_fingerprint(run.path), mixed_with, torch.__version__, threads, len(data),
                    zlib.crc32(data), [(n, len(s)) for n, s in zip(lengths, streams)])
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

    def pick(t, rows, cum):
        tokens = np.zeros(len(rows), dtype=np.int64)
        for i, row in enumerate(rows):
            dec = decoders[row]
            v = dec.target(int(cum[i, -1]))
            s = int(np.searchsorted(cum[i], v, side="right")) - 1
            dec.consume(int(cum[i, s]), int(cum[i, s + 1] - cum[i, s]))
            out[row].append(s)
            tokens[i] = s
        return tokens

    with TorchThreads(header.threads):
        _drive(run, lengths, pick, mixed=header.counts_fingerprint is not None)
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
    if header.counts_fingerprint is not None:
        counts = counts_fingerprint(run)
        if counts is None:
            raise SeqlabError(f"{name} was compressed with the run's count model mixed in, but {run.path} has none "
                              f"(no {HISTORY_FILE}); decompress it with the run directory that compressed it")
        if counts != header.counts_fingerprint:
            raise SeqlabError(f"{name} was compressed with a different count model ({HISTORY_FILE} of {run.path} "
                              "differs); decompress it with the run directory that compressed it")
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
        original, coded, blob = len(data), len(result), result
    else:
        result = decompress_bytes(run, data, args.file)
        original, coded, blob = len(result), len(data), data
    try:
        out.write_bytes(result)
    except OSError as e:
        raise SeqlabError(f"cannot write {out}: {e.strerror}") from None
    seconds = time.perf_counter() - t0
    bpb = 8 * coded / max(original, 1)
    mixed = Header.unpack(blob, args.file)[0].counts_fingerprint is not None
    model = "network + count model" if mixed else "network alone"
    print(f"{args.file} -> {out}: {original:,} bytes <-> {coded:,} bytes ({bpb:.4f} bits/byte, {model}) "
          f"in {seconds:.1f}s ({original / max(seconds, 1e-9):,.0f} bytes/s)", file=sys.stderr)
