"""Curricula on the built-in tasks: `seqlab train task:reverse --curriculum`.

Training starts on the task's shortest examples only (e.g. reversals of 1 letter) and lets in the next length
once the training error at the current lengths falls below a threshold, as the stack-RNN and LSTM tutorials
that inspired these tasks do. The training error is 1 - exact match of the greedy answers to
`curriculum.examples` training examples of the current lengths, checked every `check_every_steps` steps. The
longest length let in is saved with the checkpoint and restored on --resume; each lengthening is a
"curriculum" event in metrics.jsonl.

    seqlab train task:reverse --arch stack --max-steps 1000 --curriculum --set curriculum.threshold=0.05
"""

import numpy as np

from .data.tasks import exact_match, get_task, prompt_length, splits, task_name
from .errors import SeqlabError


class Curriculum:
    """Which training examples a task run reads: those up to `max_length`, which grows as training error falls."""

    def __init__(self, cfg, name: str, pairs: list[tuple[str, str]], doc_tokens, train_tokens, make_batcher,
                 seed: int = 0):
        self.cfg, self.task = cfg, get_task(name)
        self.pairs, self.train, self.make_batcher, self.seed = pairs, train_tokens, make_batcher, seed
        self.lengths = np.array([prompt_length(name, p) for p, _ in pairs])
        self.doc_tokens = np.asarray(doc_tokens)
        assert len(self.lengths) == len(self.doc_tokens), "one training document per example"
        self.max_length = self.task.train_lengths[0]

    @classmethod
    def for_run(cls, cfg, data, make_batcher) -> "Curriculum":
        """The curriculum of a run config (cfg.curriculum.enabled, checked) over its encoded task data."""
        name = task_name(cfg.data.paths)
        return cls(cfg.curriculum, name, splits(name)[0], data.doc_tokens, data.train, make_batcher,
                   cfg.train.seed)

    @staticmethod
    def check(cfg, world: int = 1) -> None:
        """One-line errors for a curriculum that cannot run, before anything is written."""
        if not cfg.curriculum.enabled:
            return
        if task_name(cfg.data.paths) is None:
            raise SeqlabError(f"--curriculum works on the built-in tasks (task:reverse, task:add, task:brackets), "
                              f"got corpus {' '.join(cfg.data.paths) or '(bundled)'}; drop --curriculum")
        if world > 1:
            raise SeqlabError("--curriculum trains in one process; drop --nproc")
        if cfg.style.by:
            raise SeqlabError("--curriculum and --style-by cannot be combined; drop one")

    @property
    def done(self) -> bool:
        return self.max_length >= self.task.train_lengths[1]

    def tokens(self) -> np.ndarray:
        """The training tokens of the examples let in so far (each example is one document, BOS first)."""
        keep = np.repeat(self.lengths <= self.max_length, self.doc_tokens)
        return np.asarray(self.train)[keep]

    def batcher(self):
        return self.make_batcher(self.tokens())

    def due(self, step: int) -> bool:
        return not self.done and step % self.cfg.check_every_steps == 0

    def training_error(self, model, tokenizer, device, step: int) -> float:
        """1 - exact match on training examples of the current lengths (drawn afresh at each step checked)."""
        rng = np.random.default_rng([self.seed, step])
        allowed = np.flatnonzero(self.lengths <= self.max_length)
        picked = rng.choice(allowed, min(self.cfg.examples, len(allowed)), replace=False)
        was_training = model.training
        model.eval()
        try:
            return 1.0 - exact_match(model, tokenizer, [self.pairs[i] for i in picked], device)
        finally:
            model.train(was_training)

    def update(self, error: float) -> bool:
        """Let in the next length when `error` is below the threshold; True when it did."""
        if self.done or not error < self.cfg.threshold:
            return False
        self.max_length += 1
        return True

    def state_dict(self) -> dict:
        return {"max_length": self.max_length}

    def load_state_dict(self, state: dict) -> None:
        self.max_length = int(state["max_length"])
