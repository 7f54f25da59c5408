"""`seqlab embed RUN FILES... --unit U --out DIR`: a vector for every word, line, paragraph or document.

    DIR/vectors.safetensors (or vectors.npy)   (N, C) float32 or float16, unit length (the words pooling: sparse,
                                               as indptr, indices, values of its words and its dense `expected`)
    DIR/meta.jsonl                             what each row is: text or word, file, line, byte offset
    DIR/info.json                              run, fingerprint, unit, pooling, dtype, count, dim

Passages are streamed: counted first (no model), then embedded a chunk at a time into the preallocated
file, so memory stays bounded however large the corpus. Words are averaged over their occurrences in FILES
(see vectors/words.py); their sums take memory in proportion to the vocabulary, not the corpus.
"""

import json
import sys

from .errors import SeqlabError
from .options import corpus_path, device, integer, output_dir, run_dir
from .progress import bar
from .vectors import load_backward, load_forward
from .vectors.embed import (CENTRE, DEFAULT_POOLING, DTYPES, FORMATS, POOLINGS, VectorWriter, check_pooling, is_centred,
                            embed_stream, fingerprint, new_output_dir, vector_writer)
from .vectors.passages import UNITS, check_unit, corpus_files, count_passages, passages
from .vectors.skipgram import tuned_words
from .vectors.words import DEFAULT_STATES, FIT_COUNT, STATES, Accumulator, accumulate_text, check_states


def embed(run_dir, files, unit: str, out, pooling: str = DEFAULT_POOLING, dtype: str = "float32",
          fmt: str = "safetensors", backward=None, states: str | None = None, device: str = "cpu",
          show_progress: bool = True) -> dict:
    """Embed FILES' units with the run; returns info.json's content."""
    check_unit(unit)
    check_pooling(pooling)
    check_states(states or DEFAULT_STATES)
    if dtype not in DTYPES or fmt not in FORMATS:
        raise SeqlabError(f"--dtype must be one of {', '.join(DTYPES)} and --format one of {', '.join(FORMATS)}")
    if pooling == "words" and fmt == "npy" and unit != "word":
        raise SeqlabError("the words pooling's vectors are sparse: they are written as safetensors only (leave out "
                          "--format npy)")
    if backward is not None and unit != "word":
        raise SeqlabError("--backward joins a backward run's states into word vectors: use it with --unit word")
    paths = corpus_files(files)
    out = new_output_dir(out)
    run = load_forward(run_dir, "embed", device)
    back = load_backward(backward, device) if backward is not None else None
    info = {"run": str(run_dir), "fingerprint": fingerprint(run_dir), "unit": unit}
    if unit == "word":
        tuned = tuned_words(run_dir, backward, states)
        states = tuned.states if tuned is not None else states or DEFAULT_STATES
        return _embed_words(run, back, paths, out, info | {"states": states, "backward": backward,
                                                           "tuned_words": tuned and tuned.form}, dtype, fmt, states,
                            tuned, show_progress)
    info["pooling"], info["centre"] = pooling, CENTRE and is_centred(pooling)
    total = count_passages(paths, unit)
    if total == 0:
        raise SeqlabError(f"no {unit} passages in the files given (all empty or blank)")
    writer = None
    try:
        with bar(total=total, desc="embed", unit=unit, enabled=None if show_progress else False) as b:
            for chunk, vectors in embed_stream(run, passages(paths, unit), pooling):
                writer = writer or vector_writer(out, total, vectors, dtype, fmt, info)
                writer.write(vectors, [p.meta() for p in chunk])
                b.update(len(chunk))
        writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return writer.info | {"out": str(out)}


def _embed_words(run, back, paths, out, info, dtype, fmt, states, tuned, show_progress) -> dict:
    acc = Accumulator()
    runs = [run] + ([back] if back is not None else [])
    with bar(total=sum(p.stat().st_size for p in paths), desc="embed words",
             enabled=None if show_progress else False) as b:
        for path in paths:
            data = path.read_bytes()
            accumulate_text(acc, runs, data, states, where=str(path))
            b.update(len(data))
    wv = acc.vectors(fit_count=FIT_COUNT, tuned=tuned)  # every word, made as `similar` makes its vocabulary's
    if not len(wv):
        raise SeqlabError("no words in the files given (a word is a run of letters)")
    writer = VectorWriter(out, len(wv), wv.vectors.shape[1], dtype, fmt, info)
    metas = [{"word": w, "count": int(c), "file": f, "line": line, "offset": at}
             for w, c, (f, line, at) in zip(wv.words, wv.counts, acc.first)]
    writer.write(wv.vectors, metas)
    writer.close()
    return writer.info | {"out": str(out)}


def add_cli(sub) -> None:
    p = sub.add_parser("embed", help="vectors for the words, lines, paragraphs or documents of files",
                       description="Embed files with a run: one vector per unit, streamed to DIR.")
    p.add_argument("run", type=run_dir)
    p.add_argument("files", nargs="+", type=corpus_path, help="files, directories (recursive) or globs")
    p.add_argument("--unit", choices=UNITS, default="paragraph")
    p.add_argument("--out", required=True, type=output_dir, help="output directory (new or empty)")
    p.add_argument("--pooling", choices=POOLINGS, default=DEFAULT_POOLING,
                   help=f"how a passage's token states become one vector (default {DEFAULT_POOLING}; surprisal: "
                        "the tokens the run did not expect and what it expects, 2x vocabulary dims; words: the "
                        "words it did not expect, sparse, and what it expects: the best for retrieval in "
                        "docs/vectors.md, safetensors only)")
    p.add_argument("--dtype", choices=list(DTYPES), default="float32")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="safetensors")
    p.add_argument("--backward", metavar="RUN", type=run_dir, help="--unit word: join a backward run's states")
    p.add_argument("--states", choices=STATES,
                   help=f"--unit word: the states around each occurrence that are averaged (default {DEFAULT_STATES}; "
                        f"a run tuned with --objective words: its own)")
    p.add_argument("--device", default="cpu", type=device)
    p.add_argument("--threads", type=integer(min=1), help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cli)


def set_threads(args) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def cli(args) -> None:
    set_threads(args)
    info = embed(args.run, args.files, args.unit, args.out, args.pooling, args.dtype, args.fmt, args.backward,
                 args.states, args.device, show_progress=not args.json)
    if args.json:
        print(json.dumps(info))
    else:
        how = f"{info['pooling']} pooling" if "pooling" in info else f"{info['states']} states"
        print(f"{info['count']:,} {args.unit} vectors of {info['dim']} {info['dtype']} ({how}) in {info['out']}/"
              f"vectors.{'npy' if args.fmt == 'npy' else 'safetensors'} + meta.jsonl", file=sys.stdout)
