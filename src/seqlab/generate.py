"""`seqlab generate`: sample text from a run, streamed as it is produced.

The model is stepped one token at a time: the LSTM carries its state and the
transformer its KV cache, so each new token costs the same however long the
output is. Output is decoded as UTF-8 incrementally, so a character split
across tokens never breaks (invalid bytes show as U+FFFD).
"""

import codecs
import os
import sys
import time
from dataclasses import dataclass, field

import torch

from .config import MAX_TOKENS, SAMPLES, kind_of
from .errors import SeqlabError
from .models.style import conditioned, resolve_style
from .options import InputFile, device, run_dir, seed, text
from .sampling import Sampler, SamplingConfig, StopMatcher


@dataclass
class Sample:
    text: str = ""
    tokens: int = 0
    finish_reason: str = "length"  # "length", "stop" or "end" (the model ended the document)
    chunks: list[str] = field(default_factory=list, repr=False)


def _prompt_ids(run, prompt: bytes) -> list[int]:
    ids = [run.tokenizer.bos_id] + [int(i) for i in run.tokenizer.encode(prompt)]
    limit = run.model.max_context
    return ids[-limit:] if limit else ids


@torch.no_grad()
def stream(run, prompt: str | bytes = "", n: int = 1, max_tokens: int = 500, sampling: SamplingConfig | None = None,
           seed: int | None = None, stop: list[str] | None = None, style: str | None = None):
    """Yield (row, text_chunk) as tokens are produced; then (row, None) once per row at its end.

    style (a run trained with --style-by): a source's name, a mix "A:0.7,B:0.3", or "random" (a draw
    per row from a Gaussian fitted to the learned vectors, seeded by `seed` or else the run's seed).

    The finished Sample objects are returned by the generator (StopIteration.value).
    """
    sampling = (sampling or SamplingConfig()).validate()
    if n < 1 or max_tokens < 0:
        raise SeqlabError(f"need n >= 1 and max_tokens >= 0, got n={n}, max_tokens={max_tokens}")
    prompt = prompt.encode() if isinstance(prompt, str) else prompt
    styles = resolve_style(run, style, n, seed)  # (n, D) or None
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    model, tok, device = run.model, run.tokenizer, run.device
    ids = torch.tensor([_prompt_ids(run, prompt)] * n, device=device)
    sampler = Sampler([sampling] * n, [seed + i for i in range(n)], tok.vocab_size, device)
    sampler.observe(ids[:, 1:])
    stops = [StopMatcher([s.encode() for s in (stop or [])]) for _ in range(n)]
    decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(n)]
    samples = [Sample() for _ in range(n)]
    done = [False] * n

    def finish(row: int, reason: str):
        done[row] = True
        samples[row].finish_reason = reason
        return decoders[row].decode(stops[row].flush(), final=True)

    with conditioned(model, styles):
        logits, state = model(ids, model.init_state(n, device))
    logits = logits[:, -1]
    for _ in range(max_tokens):
        if all(done):
            break
        nxt = sampler(logits)
        for row in range(n):
            if done[row]:
                continue
            token = int(nxt[row])
            samples[row].tokens += 1
            if token == tok.bos_id:
                text = finish(row, "end")
            else:
                text = decoders[row].decode(stops[row].feed(tok.token_bytes[token]))
                if stops[row].stopped:
                    text += finish(row, "stop")
            if text:
                samples[row].chunks.append(text)
                yield row, text
            if done[row]:
                yield row, None
        with conditioned(model, styles):
            logits, state = model.step(nxt, state)
    for row in range(n):
        if not done[row]:
            text = finish(row, "length")
            if text:
                samples[row].chunks.append(text)
                yield row, text
            yield row, None
    for s in samples:
        s.text = "".join(s.chunks)
    return samples


def generate(run, prompt: str | bytes = "", n: int = 1, max_tokens: int = 500, **kwargs) -> list[Sample]:
    """Generate n samples; see `stream` for the arguments."""
    gen = stream(run, prompt, n, max_tokens, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as end:
            return end.value


def add_cli(sub) -> None:
    p = sub.add_parser("generate", help="sample text from a trained run")
    p.add_argument("run", type=run_dir)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--prompt", default=None, type=text, help="text to continue")
    src.add_argument("--prompt-file", default=None, type=InputFile(empty="is an empty prompt, as --prompt ''"),
                     help="file whose bytes are the prompt")
    p.add_argument("--n", type=SAMPLES, default=1, help="number of samples")
    p.add_argument("--max-tokens", type=MAX_TOKENS, default=500, help="default 500")
    sampling = lambda name: kind_of(SamplingConfig, name)  # noqa: E731 - the server's request takes the same ranges
    p.add_argument("--temperature", type=sampling("temperature"), default=0.8, help="0 = greedy; default 0.8")
    p.add_argument("--top-k", type=sampling("top_k"), default=0, help="default 0: no limit")
    p.add_argument("--top-p", type=sampling("top_p"), default=1.0, help="default 1: no limit")
    p.add_argument("--repetition-penalty", type=sampling("repetition_penalty"), default=1.0,
                   help="> 1 discourages tokens already in the prompt or output; default 1: off")
    p.add_argument("--seed", type=seed, default=None, help="default: a random one")
    p.add_argument("--stop", action="append", default=[], type=text, help="stop before this string (repeatable)")
    p.add_argument("--style", type=text,
                   help="a styled run's source (see seqlab styles), a mix \"A:0.7,B:0.3\", or random")
    p.add_argument("--device", default="auto", type=device, help="default auto: a GPU when there is one")
    p.add_argument("--check-novelty", action="store_true",
                   help="after generating, report each sample's longest copy from the training corpus")
    p.set_defaults(func=cli)


def cli(args) -> None:
    from .run import load, require_forward

    prompt = args.prompt.encode() if args.prompt is not None else b""
    if args.prompt_file:
        try:
            prompt = open(args.prompt_file, "rb").read()
        except OSError as e:
            raise SeqlabError(f"cannot read prompt file {args.prompt_file}: {e.strerror}") from None
    sampling = SamplingConfig(args.temperature, args.top_k, args.top_p, args.repetition_penalty)
    run = load(args.run, device=args.device)
    require_forward(run.path, run.config, "generate")
    out = sys.stdout
    t0 = time.perf_counter()
    gen = stream(run, prompt, args.n, args.max_tokens, sampling=sampling, seed=args.seed, stop=args.stop,
                 style=args.style)
    if args.n == 1:
        out.write(prompt.decode("utf-8", errors="replace"))
    while True:
        try:
            row, text = next(gen)
        except StopIteration as end:
            samples = end.value
            break
        if args.n == 1 and text:
            out.write(text)
            out.flush()
    seconds = time.perf_counter() - t0
    if args.n > 1:
        for i, s in enumerate(samples):
            out.write(f"\n──── sample {i + 1} ────\n{prompt.decode('utf-8', errors='replace')}{s.text}\n")
    out.write("\n")
    tokens = sum(s.tokens for s in samples)
    print(f"[{tokens} tokens in {seconds:.2f}s, {tokens / max(seconds, 1e-9):.0f} tokens/s]", file=sys.stderr)
    if args.check_novelty:  # the generated text only: a copied prompt is not the model's doing
        from .novelty import novelty, run_index, summary_line

        index = run_index(args.run)
        for i, s in enumerate(samples):
            print(f"[novelty of sample {i + 1}: {summary_line(novelty(index, s.text.encode()))}]", file=sys.stderr)
