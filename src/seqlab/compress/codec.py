"""`seqlab compress` / `seqlab decompress`: range coding driven by the model's next-token probabilities.

The file is coded as one stream, one token at a time through the model's
incremental `step`, from BOS. Each prediction is the one `seqlab eval` scores
the file with, so the compressed size is eval's bits per byte plus the header:
when the run has a count model, the network's log-probabilities are mixed with
the count experts by the run's OnlineMixer (countmodel/mixer.py), and the counts (from
countmodel.StepReader, eval's counts for a decoder that learns one token at a
time) and the mixing weights change after every `config.counts.chunk` tokens,
exactly as eval's one left-to-right pass changes them. Decompression repeats the
very same computation (same inputs at every step, same thread count), so both
sides see bit-identical probabilities. Why not several streams in one batch (a
few times faster per step): streams read in lockstep learn each other's text
later than eval's single pass does, which cost 20% on a 16 KB file.

Probabilities are quantised to integer frequencies summing to at most TOTAL
(every token gets at least 1), then coded with rangecoder.py.

File layout (little-endian); every header byte counts against the ratio:
    magic "SQZ\\x1a", format u8, mixed u8 (1 when the count model was mixed in),
    run fingerprint (4 bytes), count-model fingerprint (4 bytes, only when mixed),
    torch version (u8 length + ASCII), threads and tokens (varints), CRC-32 u32 of
    the original, the stream (the rest of the file).
The fingerprints only name a mismatch early: the CRC is what proves the round trip.
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

from ..countmodel import HISTORY_FILE, Experts, StepReader
from ..errors import SeqlabError
from ..options import InputFile, input_file, integer, output_file, run_dir
from ..progress import bar
from ..scoring import TorchThreads
from .rangecoder import Decoder, Encoder

MAGIC = b"SQZ\x1a"
FORMAT = 4  # 4: the count model gained the blend of the text's own counts (mixed streams differ)
TOTAL = 1 << 24
FINGERPRINT_BYTES = 4  # tells runs apart before decoding; a 1 in 2^32 miss is still caught by the CRC


@dataclass
class Header:
    fingerprint: bytes
    counts_fingerprint: bytes | None  # the count model's, when it was mixed in
    torch_version: str
    threads: int
    tokens: int
    crc: int

    def pack(self) -> bytes:
        version = self.torch_version.encode()
        mixed = self.counts_fingerprint is not None
        return b"".join([MAGIC, bytes([FORMAT, mixed]), self.fingerprint, self.counts_fingerprint or b"",
                         bytes([len(version)]), version, _varints(self.threads, self.tokens),
                         struct.pack("<I", self.crc)])

    @classmethod
    def unpack(cls, data: bytes, name: str) -> tuple["Header", int]:
        """The header and the offset where the stream starts."""
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
            threads, tokens = r.varint(), r.varint()
            (crc,) = struct.unpack("<I", r.take(4))
        except (EOFError, UnicodeDecodeError):
            raise SeqlabError(f"{name} is truncated or damaged (cannot read its header)") from None
        return cls(fingerprint, counts, version, threads, tokens, crc), r.pos


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
    return hashlib.sha256((Path(run.path) / HISTORY_FILE).read_bytes()).digest()[:FINGERPRINT_BYTES]


def quantise(scores: torch.Tensor) -> np.ndarray:
    """Cumulative integer frequencies (V+1,) from logits or log-probs (V,): every token >= 1, total <= TOTAL."""
    probs = torch.softmax(scores.float(), dim=-1)
    freq = (probs * (TOTAL - scores.shape[-1])).floor().long() + 1  # (V,)
    cum = np.zeros(len(freq) + 1, dtype=np.int64)
    np.cumsum(freq.numpy(), out=cum[1:])
    return cum


class CountMixing:
    """The count model's half of each step, as eval's CountSession.mix does it for one text: mixes the
    counts into the network's prediction, and every `chunk` tokens takes a weight step on them, then
    counts them."""

    TEXT = np.zeros(1, dtype=np.int64)  # the StepReader's one text

    def __init__(self, run):
        session = run.count_model.session(torch.device("cpu"))
        self.mixer, self.chunk = session.mixer, run.config.counts.chunk
        self.reader = StepReader(session, 1, np.array([run.tokenizer.bos_id]))
        self.pending: list = []  # per step: (mixed log-probs, the network's, count experts, token), each of 1 row

    def mix(self, net_logp: torch.Tensor) -> torch.Tensor:
        """Mixed log-probabilities (1, V) of the next token, from the network's (1, V)."""
        experts = self.reader.distributions(self.TEXT)
        logp = self.mixer.mix(net_logp, experts)
        self.pending.append((logp, net_logp, experts))
        return logp

    def learn(self, token: int) -> None:
        """The token just mixed; updates once `chunk` tokens have been learnt since the last update."""
        self.reader.append(np.array([token]))
        self.pending[-1] += (torch.tensor([token]),)
        if len(self.pending) == self.chunk:
            logp, net_logp, experts, tokens = zip(*self.pending)
            self.mixer.update(torch.cat(logp), torch.cat(net_logp), Experts.concat(experts), torch.cat(tokens))
            self.reader.advance(0)
            self.pending = []


@torch.no_grad()
def _drive(run, n_tokens: int, pick, mixed: bool, desc: str) -> None:
    """Step through the text; pick(t, cum) returns its token t given cum (V+1,), the quantised prediction."""
    model = run.model
    x = torch.tensor([run.tokenizer.bos_id])
    state = model.init_state(1, torch.device("cpu"))
    mixing = CountMixing(run) if mixed else None
    for t in bar(iterable=range(n_tokens), total=n_tokens, desc=desc, unit="tok"):
        logits, state = model.step(x, state)  # (1, V)
        scores = mixing.mix(F.log_softmax(logits.float(), dim=-1)) if mixing else logits  # as scoring.score_run
        token = pick(t, quantise(scores[0]))
        if mixing:
            mixing.learn(token)
        x = torch.tensor([token])


def compress_bytes(run, data: bytes, threads: int = 1) -> bytes:
    """Compress `data` with the model of `run` (a loaded Run on the CPU)."""
    _require_cpu(run)
    tokens = run.tokenizer.encode(data)
    encoder = Encoder()

    def pick(t, cum):
        s = int(tokens[t])
        encoder.encode(int(cum[s]), int(cum[s + 1] - cum[s]), int(cum[-1]))
        return s

    mixed_with = counts_fingerprint(run)
    with TorchThreads(threads):  # recorded: decompress uses the same count
        _drive(run, len(tokens), pick, mixed=mixed_with is not None, desc="compress")
    header = Header(run_fingerprint(run.path), mixed_with, torch.__version__, threads, len(tokens),
                    zlib.crc32(data))
    return header.pack() + encoder.finish()


def decompress_bytes(run, blob: bytes, name: str = "input") -> bytes:
    """Invert compress_bytes; refuses a file made with another run or torch build."""
    _require_cpu(run)
    header, pos = Header.unpack(blob, name)
    _check_compatible(header, run, name)
    decoder, out = Decoder(blob[pos:]), []

    def pick(t, cum):
        v = decoder.target(int(cum[-1]))
        s = int(np.searchsorted(cum, v, side="right")) - 1
        decoder.consume(int(cum[s]), int(cum[s + 1] - cum[s]))
        out.append(s)
        return s

    with TorchThreads(header.threads):
        _drive(run, header.tokens, pick, mixed=header.counts_fingerprint is not None, desc="decompress")
    data = run.tokenizer.decode(out)
    if zlib.crc32(data) != header.crc:
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


EMPTY = InputFile(empty="compresses to the header alone, and no bits/byte figure is printed")


def add_cli(sub) -> None:
    for verb, help_text, default, file_kind in (
            ("compress", "compress a file with a run's model (range coding)", "FILE.sqz", EMPTY),
            ("decompress", "restore a file made by `seqlab compress`", "FILE without .sqz", input_file)):
        p = sub.add_parser(verb, help=help_text)
        p.add_argument("run", type=run_dir)
        p.add_argument("file", type=file_kind)
        p.add_argument("-o", "--output", type=output_file, help=f"output path (default {default})")
        if verb == "compress":
            p.add_argument("--threads", type=integer(min=1), default=1,
                           help="CPU threads (recorded for decompress; default 1: small steps gain little from more)")
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
    from ..checkpoint import atomic_write_bytes
    from ..run import load

    try:
        data = Path(args.file).read_bytes()
    except OSError as e:
        raise SeqlabError(f"cannot read {args.file}: {e.strerror}") from None
    out = _output_path(args)
    run = load(args.run, device="cpu")
    t0 = time.perf_counter()
    if args.verb == "compress":
        result = compress_bytes(run, data, args.threads)
        original, coded, blob = len(data), len(result), result
    else:
        result = decompress_bytes(run, data, args.file)
        original, coded, blob = len(result), len(data), data
    try:
        atomic_write_bytes(out, result)  # never a half-written output
    except OSError as e:
        raise SeqlabError(f"cannot write {out}: {e.strerror}") from None
    seconds = time.perf_counter() - t0
    mixed = Header.unpack(blob, args.file)[0].counts_fingerprint is not None
    model = "network + count model" if mixed else "network alone"
    # an empty file has no bits per byte: its .sqz is the header alone
    rate = f"{8 * coded / original:.4f} bits/byte, {model}" if original else "an empty file: no bits/byte figure"
    print(f"{args.file} -> {out}: {original:,} bytes <-> {coded:,} bytes ({rate}) "
          f"in {seconds:.1f}s ({original / max(seconds, 1e-9):,.0f} bytes/s)", file=sys.stderr)
