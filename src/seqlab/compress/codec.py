"""`seqlab compress` / `seqlab decompress`: range coding driven by the model's next-token probabilities.

Each prediction is made as `seqlab eval` makes it: the network's log-probabilities
mixed with the run's count model by its OnlineMixer (countmodel/mixer.py), the
counts and mixing weights learning from the text as they go. A token at a time that
is slow (450-800 bytes/s), so the file is read in blocks of up to BLOCK_BYTES, each
cut into up to 256 segments of at least 4,096 tokens that are read side by side, in
lockstep (lockstep.py): one model step and one count-model blend give the next token
of every segment at once. Both count the text's own tokens every COUNT_EVERY tokens
(steps). Each segment starts cold, from BOS or (formats 15-18, seams.py) after a newline at a line start, and the
count model sees the segments'
texts in another order than eval's one pass: docs/compress.md measures the gap. Decompression
repeats the very same computation (same batch shapes, same thread count, recorded
in the header), so both sides see bit-identical probabilities; a block is coded by
constriction's range coder (its Categorical model quantises them to 24 bits).

File layout (little-endian); every header byte counts against the ratio:
    magic "SQZ\\x1a", format u8, mixed u8 (1 when the count model was mixed in),
    run fingerprint (4 bytes), count-model fingerprint (4 bytes, only when mixed),
    torch version (u8 length + ASCII), threads and original bytes (varints), CRC-32 u32
    of the original; then per block: its tokens and its coded 32-bit words (varints), in formats
    15-18, 23-26, 135-138 and 143-146 the span of its segments at line starts (a varint, seams.py), the words. Formats
    135-138 (15-18 with counts.bitcm) code the mix through the count model's bitwise model (lockstep.py); formats 23-26
    and 143-146 are 15-18 and 135-138 with the network's step in bf16 (lockstep.step_in_bf16: a transformer, on a CPU
    that computes bf16 natively).
The fingerprints only name a mismatch early: the CRC is what proves the round trip.
"""

import io
import sys
import time
import zlib
from pathlib import Path

import constriction
import numpy as np
import torch

from ..adapt import add_adapt_options, adapt_options
from ..checkpoint import atomic_file
from ..errors import SeqlabError
from ..options import InputFile, input_file, integer, output_file, run_dir
from ..progress import bar
from .header import (LONGEST, ByteReader, Header, bitcm_on, check_compatible, counts_fingerprint, run_fingerprint,
                     varints)
from . import seams
from .lockstep import Layout, code_block, step_in_bf16

LINE_STARTS = True  # runs with the warmth sets write formats 15-18 (segments at line starts); False: 11-14, as before
BLOCK_BYTES = 1 << 22  # bytes of the original coded as one block (memory stays bounded however large the file)
_MODEL = constriction.stream.model.Categorical(perfect=False)  # quantises each row to the coder's 24 bits


def _probabilities(logp: torch.Tensor, active: np.ndarray) -> np.ndarray:
    return logp[torch.from_numpy(active)].exp().double().numpy()


def encode_stream(run, blocks, write, threads: int = 1, progress=None, adapter=None, lines: bool = False,
                  bf16: bool = False) -> None:
    """Code the byte blocks `blocks` (an iterable) after a header already written; write(bytes) takes the output.
    adapter: an adapt.Adapter when the network adapts as it codes (compress --adapt); lines: segments start at line
    starts (formats 15-18, seams.py); bf16: the network's step in bf16 (formats 23-26, 143-146)."""
    session = run.count_model.session(torch.device("cpu")) if run.count_model is not None else None
    for data in blocks:
        tokens = np.asarray(run.tokenizer.encode(data), dtype=np.int64)
        layout, moves = block_layout(run, tokens, lines)
        rows = layout.rows(tokens)
        encoder = constriction.stream.queue.RangeEncoder()

        def pick(j, active, logp, rows=rows, encoder=encoder):
            symbols = np.ascontiguousarray(rows[:, j])
            encoder.encode(symbols[active].astype(np.int32), _MODEL, _probabilities(logp, active))
            return symbols

        code_block(run, session, len(tokens), threads, pick, _per_token(progress, data, tokens), adapter, layout,
                   bf16)
        words = encoder.get_compressed()
        write(varints(len(tokens), len(words)) + moves + words.astype("<u4").tobytes())


def block_layout(run, tokens: np.ndarray, lines: bool) -> tuple[Layout, bytes]:
    """A block's segments and the framing bytes that say where they start (none before format 15)."""
    if not lines:
        return Layout.nominal(len(tokens), run.tokenizer.bos_id), b""
    return seams.line_starts(tokens, run.tokenizer)


def _per_token(progress, data: bytes, tokens: np.ndarray):
    """progress(bytes) called as tokens are coded, at the block's bytes per token."""
    if progress is None:
        return None
    per = len(data) / max(len(tokens), 1)
    return lambda n: progress(n * per)


def decode_stream(run, reader: ByteReader, header: Header, write, progress=None) -> int:
    """Decode the blocks after the header; write(bytes) takes the original. Returns its CRC-32."""
    with _adapting(run, header.adapt_options()) as adapter:
        return _decode_blocks(run, reader, header, write, progress, adapter)


def _decode_blocks(run, reader: ByteReader, header: Header, write, progress, adapter) -> int:
    session = None
    if header.counts_fingerprint is not None:  # a file coded without the word model or warmth is decoded without it
        model = run.count_model if header.words else run.count_model.without_words()
        session = model.with_warmth(header.warmth).session(torch.device("cpu"))
    done, crc = 0, 0
    while done < header.n_bytes:
        n_tokens, n_words = reader.varint(), reader.varint()
        layout = seams.read_layout(reader, n_tokens, run.tokenizer) if header.lines else \
            Layout.nominal(n_tokens, run.tokenizer.bos_id)
        words = np.frombuffer(reader.take(4 * n_words), dtype="<u4").astype(np.uint32)
        decoder = constriction.stream.queue.RangeDecoder(words)
        out = np.zeros((len(layout.lengths), int(layout.lengths.max(initial=0))), dtype=np.int64)

        def pick(j, active, logp, out=out, decoder=decoder):
            out[active, j] = decoder.decode(_MODEL, _probabilities(logp, active))
            return out[:, j].copy()

        code_block(run, session, n_tokens, header.threads, pick, progress and (lambda n: progress(n)), adapter,
                   layout, header.bf16)
        data = run.tokenizer.decode(layout.text(out).tolist()) if n_tokens else b""
        if not n_tokens and done < header.n_bytes:
            raise EOFError
        write(data)
        crc = zlib.crc32(data, crc)
        done += len(data)
    return crc


def _adapting(run, options):
    """An adapt.Adapter for a file (the weights put back when it is done), or a context giving None."""
    from contextlib import nullcontext

    from ..adapt import Adapter

    return Adapter(run.model, "cpu", options) if options is not None else nullcontext()


def _header(run, threads: int, n_bytes: int, crc: int, adapt, fp32: bool) -> Header:
    lr, chunk = (adapt.lr, adapt.chunk) if adapt is not None else (0.0, 0)
    words = run.count_model is not None and run.count_model.words is not None
    lines = with_warmth(run) and LINE_STARTS
    # segments at line starts (formats 15-18) come with the warmth sets: a run without them writes 7-10 as before;
    # the step in bf16 (23-26, 143-146) with the line starts, unless asked for fp32 (a file that needs no bf16)
    return Header(run_fingerprint(run.path), counts_fingerprint(run), torch.__version__, threads, n_bytes, crc,
                  lr, chunk, words, with_warmth(run), lines, bitcm_on(run), lines and step_in_bf16(run) and not fp32)


def with_warmth(run) -> bool:
    """Whether compress mixes with the warmth sets (formats 11-18)."""
    return run.count_model is not None and "warmth" in run.count_model.config.select


def _with_threads(adapt, threads: int):
    """AdaptOptions at the file's thread count (its steps round as the network's do), or None."""
    from dataclasses import replace

    return replace(adapt, threads=threads) if adapt is not None else None


def compress_bytes(run, data: bytes, threads: int = 1, progress=None, adapt=None, fp32: bool = False) -> bytes:
    """Compress `data` with the model of `run` (a loaded Run on the CPU); adapt: adapt.AdaptOptions to let the
    network learn from what it has coded (recorded in the header; decompress repeats it); fp32: the network's step
    in fp32 where it would take bf16 (slower; the file then needs no native bf16 to decode)."""
    _require_cpu(run, threads)
    adapt = _with_threads(adapt, threads)
    out = io.BytesIO()
    header = _header(run, threads, len(data), zlib.crc32(data), adapt, fp32)
    out.write(header.pack())
    with _adapting(run, adapt) as adapter:
        encode_stream(run, (data[i : i + BLOCK_BYTES] for i in range(0, len(data), BLOCK_BYTES)), out.write,
                      threads, progress, adapter, header.lines, header.bf16)
    return out.getvalue()


def decompress_bytes(run, blob: bytes, name: str = "input", threads: int | None = None, progress=None) -> bytes:
    """Invert compress_bytes; refuses a file made with another run, torch build or thread count."""
    _require_cpu(run, 1)
    header, pos = Header.unpack(blob, name)
    check_compatible(header, run, name, threads)
    out = io.BytesIO()
    try:
        crc = decode_stream(run, ByteReader(io.BytesIO(blob[pos:])), header, out.write, progress)
    except (EOFError, ValueError, RuntimeError) as e:
        raise SeqlabError(f"{name} is truncated or damaged (its coded blocks end early or do not decode: "
                          f"{type(e).__name__})") from None
    data = out.getvalue()
    if zlib.crc32(data) != header.crc or crc != header.crc or len(data) != header.n_bytes:
        raise SeqlabError(f"{name} did not decode to the original (CRC mismatch): the file is damaged, or "
                          "this machine computes the model differently from the one that compressed it")
    return data


def _require_cpu(run, threads: int) -> None:
    if run.device.type != "cpu":
        raise SeqlabError("compress/decompress run on the CPU only (bit-exact arithmetic); "
                          "load the run with device=cpu")
    if threads < 1:
        raise SeqlabError(f"--threads must be >= 1, got {threads}")


# ---------------------------------------------------------------- files and the CLI


def compress_file(run, source: Path, target: Path, threads: int = 1, progress=None, adapt=None,
                  fp32: bool = False) -> None:
    """Compress file `source` into `target`, a block at a time (written beside it, then renamed); fp32 as in
    compress_bytes."""
    _require_cpu(run, threads)
    adapt = _with_threads(adapt, threads)
    n_bytes, crc = _size_and_crc(source)
    header = _header(run, threads, n_bytes, crc, adapt, fp32)
    with atomic_file(target) as out, open(source, "rb") as f, _adapting(run, adapt) as adapter:
        out.write(header.pack())
        encode_stream(run, iter(lambda: f.read(BLOCK_BYTES), b""), out.write, threads, progress, adapter,
                      header.lines, header.bf16)


def decompress_file(run, source: Path, target: Path, threads: int | None = None, progress=None) -> None:
    """Invert compress_file, a block at a time."""
    _require_cpu(run, 1)
    name = str(source)
    with open(source, "rb") as f:
        header, pos = Header.unpack(f.read(LONGEST), name)
        check_compatible(header, run, name, threads)
        f.seek(pos)
        with atomic_file(target) as out:
            try:
                crc = decode_stream(run, ByteReader(f), header, out.write, progress)
            except (EOFError, ValueError, RuntimeError) as e:
                raise SeqlabError(f"{name} is truncated or damaged (its coded blocks end early or do not decode: "
                                  f"{type(e).__name__})") from None
            if crc != header.crc or out.tell() != header.n_bytes:
                raise SeqlabError(f"{name} did not decode to the original (CRC mismatch): the file is damaged, or "
                                  "this machine computes the model differently from the one that compressed it")


def _size_and_crc(path: Path) -> tuple[int, int]:
    n, crc = 0, 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n, crc = n + len(block), zlib.crc32(block, crc)
    return n, crc


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
                           help="torch threads for the network (recorded for decompress; default 1: the count "
                                "model runs beside it on a second core)")
            p.add_argument("--fp32", action="store_true",
                           help="the network's step in fp32 even where this CPU computes bf16 natively: slower, "
                                "but decoding the file then needs no native bf16 either")
            add_adapt_options(p, "the network learns from each chunk once coded (recorded in the header; "
                                 "decompress repeats it); slower, see docs/adapt.md")
        else:
            p.add_argument("--threads", type=integer(min=1), default=None,
                           help="must be the file's own count, which decompress uses when this is left out")
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
    from ..run import load

    source = Path(args.file)
    out = _output_path(args)
    run = load(args.run, device="cpu")
    t0 = time.perf_counter()
    with bar(total=source.stat().st_size if args.verb == "compress" else None, desc=args.verb) as b:
        if args.verb == "compress":
            compress_file(run, source, out, args.threads, b.update, adapt_options(args), args.fp32)
        else:
            decompress_file(run, source, out, args.threads, b.update)
    seconds = time.perf_counter() - t0
    original, coded = (source, out) if args.verb == "compress" else (out, source)
    original, coded = original.stat().st_size, coded.stat().st_size
    with open(out if args.verb == "compress" else source, "rb") as f:
        mixed = Header.unpack(f.read(LONGEST), str(f.name))[0].counts_fingerprint is not None
    model = "network + count model" if mixed else "network alone"
    # an empty file has no bits per byte: its .sqz is the header alone
    rate = f"{8 * coded / original:.4f} bits/byte, {model}" if original else "an empty file: no bits/byte figure"
    print(f"{args.file} -> {out}: {original:,} bytes <-> {coded:,} bytes ({rate}) "
          f"in {seconds:.1f}s ({original / max(seconds, 1e-9):,.0f} bytes/s)", file=sys.stderr)
