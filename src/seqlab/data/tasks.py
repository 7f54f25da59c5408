"""Built-in synthetic tasks: `seqlab train task:reverse|task:add|task:brackets`.

Every example is a prompt, a separator and an answer, then a newline, e.g.

    reverse    abcde|edcba
    add        1011+0110=11001      (bits least-significant first: 13 + 6 = 19)
    brackets   ([]{<|>})            (close what the prompt left open, innermost first)

Each example is its own document (so it starts with BOS, as the prompt does when
accuracy is measured). The data are generated deterministically from a seed. The
held-out set of reverse and add has LONGER sequences than any seen in training:
it asks whether the model learned the algorithm or memorised lengths. Brackets
draws its held-out prompts from the training lengths (the point there is depth),
minus any prompt that also occurs in training.

Exact-match accuracy: the answer part generated greedily from BOS + prompt must
equal the answer and its newline byte for byte.
"""

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SeqlabError
from ..stats import wilson
from .corpus import Document

PREFIX = "task:"
DATA_SEED = 0  # fixed, so every run of a task sees the same examples


def reverse_example(rng: random.Random, n: int) -> tuple[str, str]:
    s = "".join(rng.choice("abcdefghij") for _ in range(n))
    return s + "|", s[::-1]


def _bits_lsb_first(value: int, width: int) -> str:
    return "".join(str((value >> i) & 1) for i in range(width))


def add_example(rng: random.Random, n: int) -> tuple[str, str]:
    a, b = rng.getrandbits(n), rng.getrandbits(n)
    # The sum always gets n + 1 bits, so its length is known from the prompt.
    return f"{_bits_lsb_first(a, n)}+{_bits_lsb_first(b, n)}=", _bits_lsb_first(a + b, n + 1)


BRACKETS = {"(": ")", "[": "]", "{": "}", "<": ">"}


def brackets_example(rng: random.Random, n: int) -> tuple[str, str]:
    """A random walk of n bracket moves that ends with something open; the answer closes it."""
    prompt, stack = [], []
    for i in range(n):
        last = i == n - 1
        if stack and not (last and len(stack) == 1) and rng.random() < 0.45:
            prompt.append(BRACKETS[stack.pop()])
        else:
            stack.append(rng.choice(list(BRACKETS)))
            prompt.append(stack[-1])
    return "".join(prompt) + "|", "".join(BRACKETS[c] for c in reversed(stack))


@dataclass(frozen=True)
class Task:
    name: str
    make: Callable[[random.Random, int], tuple[str, str]]  # (rng, length) -> (prompt, answer)
    train_lengths: tuple[int, int]  # inclusive range of the length argument
    held_out_lengths: tuple[int, int]
    n_train: int = 20000
    n_held_out: int = 500


TASKS = {
    "reverse": Task("reverse", reverse_example, (1, 10), (11, 16)),
    "add": Task("add", add_example, (1, 8), (9, 12)),
    "brackets": Task("brackets", brackets_example, (2, 16), (2, 16)),
}


def prompt_length(name: str, prompt: str) -> int:
    """The length an example was drawn with, read back from its prompt (the separators and operators aside)."""
    return (len(prompt) - 2) // 2 if name == "add" else len(prompt) - 1


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise SeqlabError(f"unknown task {PREFIX}{name}; choose one of: {', '.join(PREFIX + t for t in TASKS)}")
    return TASKS[name]


def task_name(paths: list[str]) -> str | None:
    """The task a corpus names ("task:NAME"), or None for a corpus of files."""
    named = [p for p in paths if p.startswith(PREFIX)]
    if not named:
        return None
    if len(paths) > 1:
        raise SeqlabError(f"{named[0]} must be the only corpus, got {' '.join(paths)}")
    return get_task(named[0][len(PREFIX):]).name


def examples(task: Task, lengths: tuple[int, int], n: int, seed: int,
             exclude: frozenset = frozenset()) -> list[tuple[str, str]]:
    """n (prompt, answer) pairs with lengths drawn uniformly from `lengths`; prompts in `exclude` are skipped."""
    rng = random.Random(f"{task.name}/{seed}")
    out = []
    for _ in range(100 * n):
        if len(out) == n:
            break
        prompt, answer = task.make(rng, rng.randint(*lengths))
        if prompt not in exclude:
            out.append((prompt, answer))
    assert len(out) == n, f"{task.name}: cannot draw {n} examples outside the training set"
    return out


def splits(name: str, seed: int = DATA_SEED) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(training examples, held-out examples) of a task; held-out prompts never occur in training."""
    task = get_task(name)
    train = examples(task, task.train_lengths, task.n_train, seed)
    seen = frozenset(p for p, _ in train)
    return train, examples(task, task.held_out_lengths, task.n_held_out, seed + 1, seen)


def to_documents(name: str, split: str, pairs: list[tuple[str, str]]) -> list[Document]:
    return [Document(f"{PREFIX}{name}/{split}/{i}", f"{p}{a}\n".encode()) for i, (p, a) in enumerate(pairs)]


def task_documents(data_cfg) -> tuple[list[Document], list[Document]] | None:
    """(training docs, held-out docs) when the corpus is "task:NAME", else None."""
    name = task_name(data_cfg.paths)
    if name is None:
        return None
    if data_cfg.val_paths:
        raise SeqlabError(f"{PREFIX}{name} brings its own held-out set; drop --val")
    train, held_out = splits(name)
    return to_documents(name, "train", train), to_documents(name, "held-out", held_out)


# ---------------------------------------------------------------- exact-match accuracy


@torch.no_grad()
def greedy_answers(model, tokenizer, prompts: list[str], n_bytes: list[int], device) -> list[bytes]:
    """For each prompt, the first n_bytes[i] bytes the model produces greedily after BOS + prompt."""
    ids = [[tokenizer.bos_id] + [int(t) for t in tokenizer.encode(p.encode())] for p in prompts]
    out = [b""] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, seq in enumerate(ids):
        by_length.setdefault(len(seq), []).append(i)
    for rows in by_length.values():  # prompts of one length run as one batch
        x = torch.tensor([ids[i] for i in rows], device=device)
        logits, state = model(x, model.init_state(len(rows), device))
        nxt = logits[:, -1].argmax(-1)  # (B,)
        produced = [b""] * len(rows)
        ended = [False] * len(rows)
        for _ in range(max(n_bytes[i] for i in rows)):
            for r, token in enumerate(nxt.tolist()):
                if token == tokenizer.bos_id:
                    ended[r] = True  # the model closed the document: nothing more is produced
                elif not ended[r]:
                    produced[r] += tokenizer.token_bytes[token]
            if all(ended[r] or len(produced[r]) >= n_bytes[i] for r, i in enumerate(rows)):
                break
            logits, state = model.step(nxt, state)
            nxt = logits.argmax(-1)
        for r, i in enumerate(rows):
            out[i] = produced[r][: n_bytes[i]]
    return out


def answer_scores(model, tokenizer, pairs: list[tuple[str, str]], device) -> dict:
    """Greedy continuations scored two ways: exact match of answer + newline, and the fraction of its bytes
    right position by position (partial credit: a reversal wrong in one of n bytes scores (n - 1) / n)."""
    targets = [f"{a}\n".encode() for _, a in pairs]
    got = greedy_answers(model, tokenizer, [p for p, _ in pairs], [len(t) for t in targets], device)
    right = sum(g == t for produced, target in zip(got, targets) for g, t in zip(produced, target))
    return {"exact_match": float(np.mean([g == t for g, t in zip(got, targets)])),
            "byte_accuracy": right / sum(len(t) for t in targets)}


def exact_match(model, tokenizer, pairs: list[tuple[str, str]], device) -> float:
    """Fraction of (prompt, answer) pairs whose greedy continuation is answer + newline exactly."""
    return answer_scores(model, tokenizer, pairs, device)["exact_match"]


def task_accuracy(model, tokenizer, name: str, device, seed: int = DATA_SEED) -> dict:
    """Exact match and byte accuracy on the held-out examples, and on fresh examples of training lengths.

    Exact match is a rate over examples: each comes with its 95% Wilson interval ([low, high]).
    """
    task = get_task(name)
    train, held_out = splits(name, seed)
    seen = frozenset(p for p, _ in train) | frozenset(p for p, _ in held_out)
    fresh = examples(task, task.train_lengths, task.n_held_out, seed + 2, seen)
    model.eval()
    held_out_scores, fresh_scores = answer_scores(model, tokenizer, held_out, device), \
        answer_scores(model, tokenizer, fresh, device)
    n_right = [round(scores["exact_match"] * len(pairs))
               for scores, pairs in ((held_out_scores, held_out), (fresh_scores, fresh))]
    return {
        "task": name,
        "exact_match": held_out_scores["exact_match"],
        "exact_match_interval": list(wilson(n_right[0], len(held_out))),
        "byte_accuracy": held_out_scores["byte_accuracy"],
        "exact_match_lengths": list(task.held_out_lengths),
        "exact_match_train_lengths": fresh_scores["exact_match"],
        "exact_match_train_lengths_interval": list(wilson(n_right[1], len(fresh))),
        "byte_accuracy_train_lengths": fresh_scores["byte_accuracy"],
        "train_lengths": list(task.train_lengths),
        "examples": len(held_out),
    }


def format_rate(rate: float, interval) -> str:
    """A rate with its 95% interval, e.g. "41.2% [37.0-45.6%]"."""
    return f"{rate:.1%} [{interval[0]:.1%}-{interval[1]:.1%}]"


def format_accuracy(acc: dict) -> str:
    (a, b), (c, d) = acc["exact_match_lengths"], acc["train_lengths"]
    held_out = format_rate(acc["exact_match"], acc["exact_match_interval"])
    fresh = format_rate(acc["exact_match_train_lengths"], acc["exact_match_train_lengths_interval"])
    return (f"task:{acc['task']} exact match of the answer (greedy, {acc['examples']} examples each; "
            f"95% Wilson intervals): {held_out} on held-out lengths {a}-{b}, "
            f"{fresh} on unseen examples of training lengths {c}-{d}")
