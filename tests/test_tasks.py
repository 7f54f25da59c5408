"""Built-in synthetic tasks: generators, held-out lengths, exact-match accuracy, CLI."""

import pytest
import torch

from seqlab.__main__ import main
from seqlab.config import DataConfig
from seqlab.data.tasks import TASKS, answer_scores, exact_match, splits, task_documents
from seqlab.data.tokenizer import ByteTokenizer
from seqlab.evaluate import evaluate
from seqlab.models import SeqModel
from seqlab.run import load
from seqlab.train import train

from conftest import TINY, tiny_config

SEPARATOR = {"reverse": "|", "add": "=", "brackets": "|"}
CLOSER = {"(": ")", "[": "]", "{": "}", "<": ">"}


def from_lsb_first(bits: str) -> int:
    return sum(int(b) << i for i, b in enumerate(bits))


def solve(task: str, prompt: str) -> str:
    """An independent solver, written from the task's definition."""
    body = prompt[:-1]
    if task == "reverse":
        return body[::-1]
    if task == "add":
        a, b = body.split("+")
        total = from_lsb_first(a) + from_lsb_first(b)
        return "".join(str((total >> i) & 1) for i in range(len(a) + 1))
    stack = []
    for c in body:
        if c in CLOSER:
            stack.append(c)
        else:
            assert CLOSER[stack.pop()] == c, prompt
    return "".join(CLOSER[c] for c in reversed(stack))


@pytest.mark.parametrize("task", list(TASKS))
def test_generators_are_deterministic_and_seeded(task):
    assert splits(task) == splits(task)
    assert splits(task, seed=5)[0][:50] != splits(task)[0][:50]


@pytest.mark.parametrize("task", list(TASKS))
def test_answers_are_correct(task):
    train_set, held_out = splits(task)
    for prompt, answer in train_set[:3000] + held_out:
        assert prompt.endswith(SEPARATOR[task]) and prompt.count(SEPARATOR[task]) == 1
        assert answer and solve(task, prompt) == answer, (prompt, answer)


def test_add_example_from_the_definition():
    # 13 + 6 = 19: LSB-first 1011 + 0110 = 11001
    assert solve("add", "1011+0110=") == "11001"
    assert solve("add", "1+1=") == "01"


@pytest.mark.parametrize("task", ["reverse", "add"])
def test_held_out_sequences_are_longer_than_any_in_training(task):
    train_set, held_out = splits(task)
    assert min(len(p) for p, _ in held_out) > max(len(p) for p, _ in train_set)


@pytest.mark.parametrize("task", list(TASKS))
def test_held_out_prompts_never_occur_in_training(task):
    train_set, held_out = splits(task)
    assert not {p for p, _ in held_out} & {p for p, _ in train_set}


def test_task_documents_are_one_example_each():
    docs, val = task_documents(DataConfig(paths=["task:reverse"]))
    train_set, held_out = splits("reverse")
    assert [d.data for d in docs] == [f"{p}{a}\n".encode() for p, a in train_set]
    assert [d.data for d in val] == [f"{p}{a}\n".encode() for p, a in held_out]
    assert task_documents(DataConfig(paths=["notes.txt"])) is None


class Oracle(SeqModel):
    """Predicts the next byte of BOS + prompt + answer + newline; `wrong(prompt)` makes it err."""

    def __init__(self, task: str, wrong=lambda prompt: False, newline: bool = True):
        super().__init__()
        self.task, self.wrong, self.newline = task, wrong, newline
        self.tok = ByteTokenizer()

    def init_state(self, batch_size, device):
        return [[] for _ in range(batch_size)]

    def forward(self, idx, state=None):
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.tok.vocab_size)
        for row, history in enumerate(state):
            history.extend(idx[row].tolist())
            text = self.tok.decode(history).decode()
            cut = text.index(SEPARATOR[self.task]) + 1
            prompt, produced = text[:cut], text[cut:]
            answer = solve(self.task, prompt)
            if self.wrong(prompt):
                answer = answer[:-1] + ("x" if answer[-1] != "x" else "y")
            target = answer.encode() + (b"\n" if self.newline else b"")
            nxt = target[len(produced)] if len(produced) < len(target) else self.tok.bos_id
            logits[row, -1, nxt] = 1.0
        return logits, state


@pytest.mark.parametrize("task", list(TASKS))
def test_exact_match_of_a_perfect_predictor_is_one(task):
    _, held_out = splits(task)
    assert exact_match(Oracle(task), ByteTokenizer(), held_out[:60], "cpu") == 1.0


def test_exact_match_counts_each_wrong_answer():
    _, held_out = splits("reverse")
    pairs = held_out[:80]
    odd = lambda prompt: len(prompt) % 2 == 1
    expected = sum(not odd(p) for p, _ in pairs) / len(pairs)
    assert 0 < expected < 1
    assert exact_match(Oracle("reverse", wrong=odd), ByteTokenizer(), pairs, "cpu") == pytest.approx(expected)


def test_byte_accuracy_counts_each_wrong_byte():
    """The oracle errs in the last answer byte of odd-length prompts: one wrong byte, no exact match, each."""
    _, held_out = splits("reverse")
    pairs = held_out[:80]
    odd = lambda prompt: len(prompt) % 2 == 1
    n_bytes = sum(len(a) + 1 for _, a in pairs)
    scores = answer_scores(Oracle("reverse", wrong=odd), ByteTokenizer(), pairs, "cpu")
    assert scores["byte_accuracy"] == pytest.approx(1 - sum(odd(p) for p, _ in pairs) / n_bytes)
    assert scores["exact_match"] == pytest.approx(sum(not odd(p) for p, _ in pairs) / len(pairs))


def test_exact_match_requires_the_closing_newline():
    _, held_out = splits("add")
    assert exact_match(Oracle("add", newline=False), ByteTokenizer(), held_out[:20], "cpu") == 0.0


def test_unknown_task_is_a_one_line_error(capsys):
    assert main(["train", "task:sort", "--max-steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "task:sort" in err and "task:reverse, task:add, task:brackets" in err


def test_task_must_be_the_only_corpus(capsys, corpus_file):
    assert main(["train", "task:add", str(corpus_file), "--max-steps", "1"]) == 2
    assert "only corpus" in capsys.readouterr().err


@torch.no_grad()
def greedy_by_hand(model, prompt: str, n: int) -> bytes:
    """The model's n most likely next bytes after BOS + prompt, one prompt and one byte at a time; BOS ends it."""
    bos, out = ByteTokenizer().bos_id, b""
    logits, state = model(torch.tensor([[bos, *prompt.encode()]]), model.init_state(1, "cpu"))
    token = int(logits[0, -1].argmax())
    while token != bos and len(out) < n:
        out += bytes([token])
        logits, state = model.step(torch.tensor([token]), state)
        token = int(logits[0].argmax())
    return out


def test_tiny_model_trains_on_a_task_and_eval_reports_accuracy(tmp_path, capsys):
    cfg = tiny_config("task:add", "lstm", steps=30)
    cfg.model = dict(TINY["lstm"])
    run_dir = train(cfg, tmp_path / "run", log=lambda *a: None)
    run = load(run_dir)
    result = evaluate(run)
    acc = result["task"]
    _, held_out = splits("add")
    got = [greedy_by_hand(run.model, prompt, len(answer) + 1) for prompt, answer in held_out]
    wanted = [f"{answer}\n".encode() for _, answer in held_out]
    assert acc["exact_match"] == pytest.approx(sum(g == w for g, w in zip(got, wanted)) / len(held_out))
    right = sum(a == b for g, w in zip(got, wanted) for a, b in zip(g, w))
    assert acc["byte_accuracy"] == pytest.approx(right / sum(map(len, wanted)))
    assert 0.0 < acc["byte_accuracy"] < 1.0  # so the comparison above tells a right count from a wrong one
    assert 0.0 <= acc["exact_match_train_lengths"] <= 1.0 and acc["examples"] == len(held_out)
    assert result["bytes"] == sum(len(p) + len(a) + 1 for p, a in held_out)
    assert main(["eval", str(run_dir)]) == 0
    assert "task:add exact match" in capsys.readouterr().out
