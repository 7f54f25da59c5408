"""The model worker: one thread owns the model and serves every request from two queues.

Generation uses continuous batching: each loop turn samples one token for every
active row and runs ONE batched forward step for all of them. A request's rows
join after their prefill, at the next turn, and leave as soon as they finish or
their client goes away, so nobody waits for the slowest member of a batch.
Scoring requests are batched dynamically: they wait up to `score_delay_ms` for
company, then run together (see scorer.py).

The event loop never waits on the model: it submits a job and awaits events
that the worker hands back with `loop.call_soon_threadsafe`. A job that waited
longer than `max_queue_ms` is answered 503 and never run; a full queue is
refused at once (429). An exception in a forward pass fails the requests in it
(500), never the worker; /ready turns 503 only if the thread itself dies.
"""

import codecs
import collections
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..sampling import Sampler, SamplingConfig, StopMatcher
from .batching import RowByRow, hard_context, pick_adapter
from .scorer import score_texts

log = logging.getLogger("seqlab.serve")


@dataclass
class ServeConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_batch: int = 32  # rows generated together; 1 disables batching
    max_queue: int = 256  # waiting requests; more are refused with 429
    max_queue_ms: float = 10_000  # a request that waited longer is answered 503
    score_delay_ms: float = 5  # how long a score request waits for others to batch with
    max_score_batch: int = 16
    cache_size: int = 256  # answers kept for deterministic requests (entries)
    max_body_bytes: int = 1 << 20
    max_prompt_bytes: int = 16_384
    max_score_bytes: int = 65_536
    max_tokens: int = 1024  # upper bound on a request's max_tokens
    max_rows: int = 16  # prompts x n in one request
    max_stops: int = 4
    max_stop_chars: int = 64
    log_text: bool = False
    device: str = "cpu"
    index: str | None = None  # a passage index searched by /v1/search (serve/vectors.py)


class Rejected(Exception):
    """A request the server will not take now: status, error type, message."""

    def __init__(self, status: int, message: str, type_: str = "server_busy", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.code = status, message, type_, code


@dataclass
class Job:
    """What a handler hands the worker; events for it are put in `events`, an asyncio.Queue of `loop`."""

    kind: str  # "generate" or "score"
    loop: object
    events: object
    prompts: list = field(default_factory=list)  # generate: token ids per row, BOS first; score: token arrays
    seeds: list = field(default_factory=list)
    sampling: SamplingConfig | None = None
    max_tokens: int = 0
    stops: list = field(default_factory=list)
    logprobs: int | None = None
    enqueued: float = field(default_factory=time.monotonic)
    cancelled: bool = False  # set by the handler when the client goes away
    checked: float = 0.0  # when the handler last checked that its client is still connected


class Row:
    """One sequence being generated: its decoder, stop matcher and counters."""

    def __init__(self, job: Job, index: int, token_bytes: list[bytes], bos_id: int):
        self.job, self.index = job, index
        self.token_bytes, self.bos_id = token_bytes, bos_id
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.stop = StopMatcher(job.stops)
        self.tokens = 0
        self.finish: str | None = None

    def feed(self, token: int) -> str:
        """Text made safe to show by this token (as generate.stream does); sets finish when the row is done."""
        self.tokens += 1
        if token == self.bos_id:
            self.finish = "stop"  # the model ended the document
            return self.decoder.decode(self.stop.flush(), final=True)
        text = self.decoder.decode(self.stop.feed(self.token_bytes[token]))
        if self.stop.stopped:
            self.finish = "stop"
        elif self.tokens >= self.job.max_tokens:
            self.finish = "length"
        if self.finish:
            text += self.decoder.decode(self.stop.flush(), final=True)
        return text


class RowSampler:
    """A Sampler whose rows can join and leave; each row keeps its own settings and generator."""

    ROW_TENSORS = ("temperature", "top_k", "top_p", "penalty", "seen")

    def __init__(self):
        self.sampler: Sampler | None = None

    def join(self, other: Sampler) -> None:
        if self.sampler is None:
            self.sampler = other
            return
        for name in self.ROW_TENSORS:
            setattr(self.sampler, name, torch.cat([getattr(self.sampler, name), getattr(other, name)]))
        self.sampler.generators = self.sampler.generators + other.generators

    def keep(self, order: list[int]) -> None:
        if not order:
            self.sampler = None
            return
        idx = torch.tensor(order)
        for name in self.ROW_TENSORS:
            setattr(self.sampler, name, getattr(self.sampler, name)[idx.to(getattr(self.sampler, name).device)])
        self.sampler.generators = [self.sampler.generators[i] for i in order]

    def __call__(self, logits):
        return self.sampler(logits)


def _put_all(items) -> None:
    for queue, events in items:
        queue.put_nowait(events)


def swap_remove_order(n: int, leaving: set[int]) -> list[int]:
    """New row j = old row order[j]: rows past the new end fill the places of leaving rows, so few rows move."""
    size = n - len(leaving)
    holes = [i for i in range(size) if i in leaving]
    movers = [i for i in range(size, n) if i not in leaving]
    order = list(range(size))
    for hole, src in zip(holes, movers):
        order[hole] = src
    return order


class Worker:
    def __init__(self, load_run, config: ServeConfig, metrics):
        self.load_run, self.cfg, self.metrics = load_run, config, metrics
        self.run = None
        self.context: int | None = None  # prompt + max_tokens must fit in it (a transformer's KV cache)
        self.adapter = None
        self.batching_note = ""
        self.ready = threading.Event()
        self.dead: str | None = None
        self.lock = threading.Condition()
        self.gen_queue: collections.deque[Job] = collections.deque()
        self.score_queue: collections.deque[Job] = collections.deque()
        self.rows: list[Row] = []
        self.sampler = RowSampler()
        self.logits = None  # (B, V): the next-token logits of every active row
        self.stopping = False
        self.thread = threading.Thread(target=self._main, name="seqlab-model-worker", daemon=True)

    # ---- called from the event loop ----
    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self.lock:
            self.stopping = True
            self.lock.notify_all()
        self.thread.join(timeout)

    def submit(self, job: Job) -> None:
        if self.dead:
            raise Rejected(503, f"the model worker has stopped: {self.dead}", "server_error")
        if not self.ready.is_set():
            raise Rejected(503, "the model is still loading; retry shortly", "server_busy")
        with self.lock:
            if len(self.gen_queue) + len(self.score_queue) >= self.cfg.max_queue:
                self.metrics.dropped.labels(reason="queue_full").inc()
                raise Rejected(429, f"the queue is full ({self.cfg.max_queue} waiting requests); retry shortly",
                               "rate_limit_exceeded", "queue_full")
            (self.gen_queue if job.kind == "generate" else self.score_queue).append(job)
            self._gauge_queue()
            self.lock.notify_all()

    def cancel(self, job: Job) -> None:
        job.cancelled = True  # the worker drops it at its next turn, queued or running
        with self.lock:
            self.lock.notify_all()

    # ---- the worker thread ----
    def _main(self) -> None:
        try:
            self._load()
            self.ready.set()
            while True:
                with self.lock:
                    if self.stopping:
                        break
                    admitted = self._admit()
                    scores = self._due_scores()
                    if not admitted and not scores and not self.rows:
                        self.lock.wait(self._idle_wait())
                        continue
                if admitted:
                    self._guard(admitted, self._prefill, admitted)
                if scores:
                    self._guard(scores, self._score, scores)
                if self.rows:
                    self._guard(None, self._step)
        except BaseException as e:  # a bug in the loop itself: say so, and refuse work from now on
            self.dead = f"{type(e).__name__}: {e}"
            log.error("model worker died: %s", traceback.format_exc())
            self.metrics.worker_up.set(0)
        finally:
            self.ready.clear()
            self._fail_everything(Rejected(503, "the server is shutting down", "server_error"))

    def _load(self) -> None:
        self.run = self.load_run()
        model, device = self.run.model, self.run.device
        self.context = hard_context(model, device)
        self.adapter, self.batching_note = pick_adapter(model, device, self.cfg.max_batch)  # also the warm-up
        if isinstance(self.adapter, RowByRow):
            log.warning("batching: %s", self.batching_note)
        # also loads the count model now, not on the first request
        score_texts(model, [np.full(4, self.run.tokenizer.bos_id, dtype=np.int64)], device, self.run.count_model)
        self.metrics.worker_up.set(1)

    def _idle_wait(self) -> float | None:
        if self.score_queue:
            waited = time.monotonic() - self.score_queue[0].enqueued
            return max(0.0, self.cfg.score_delay_ms / 1000 - waited)
        if self.gen_queue:
            return 0.05  # a job that does not fit yet: look again soon (deadlines, cancellations)
        return None

    def _expire(self, queue: collections.deque, now: float) -> None:
        """Drop cancelled jobs and answer 503 to those that waited past the deadline (they never run)."""
        limit = self.cfg.max_queue_ms / 1000
        for job in list(queue):
            if job.cancelled:
                queue.remove(job)
                self.metrics.dropped.labels(reason="cancelled_in_queue").inc()
            elif now - job.enqueued > limit:
                queue.remove(job)
                self.metrics.dropped.labels(reason="deadline").inc()
                self._send(job, [("error", Rejected(
                    503, f"the request waited more than {self.cfg.max_queue_ms:g} ms in the queue and was not run",
                    "server_busy", "queue_deadline"))])

    def _admit(self) -> list[Job]:
        """Queued generation jobs that fit in the free rows now, first come first served."""
        now = time.monotonic()
        self._expire(self.gen_queue, now)
        self._expire(self.score_queue, now)
        admitted, used = [], len(self.rows)
        while self.gen_queue and used + len(self.gen_queue[0].prompts) <= self.cfg.max_batch:
            job = self.gen_queue.popleft()
            admitted.append(job)
            used += len(job.prompts)
            self.metrics.queue_seconds.observe(now - job.enqueued)
        self._gauge_queue()
        return admitted

    def _due_scores(self) -> list[Job]:
        q = self.score_queue
        if not q:
            return []
        waited = time.monotonic() - q[0].enqueued
        if len(q) < self.cfg.max_score_batch and waited < self.cfg.score_delay_ms / 1000:
            return []
        jobs = [q.popleft() for _ in range(min(len(q), self.cfg.max_score_batch))]
        now = time.monotonic()
        for job in jobs:
            self.metrics.queue_seconds.observe(now - job.enqueued)
        self._gauge_queue()
        return jobs

    def _guard(self, jobs: list[Job] | None, fn, *args) -> None:
        """Run fn; if it raises, fail these jobs (None: every running one) with 500, keeping the worker alive.

        If the batch's parts no longer agree (rows, adapter, logits), every running row is failed and the
        batch is emptied: a wrong answer is worse than an error.
        """
        try:
            fn(*args)
        except Exception as e:
            log.error("forward failed: %s", traceback.format_exc())
            consistent = self.logits is None or self.adapter.size == len(self.rows) == self.logits.shape[0]
            if jobs is None or not consistent:
                jobs = (jobs or []) + [r.job for r in self.rows]
            ids = {id(j) for j in jobs}
            keep = [i for i, r in enumerate(self.rows) if id(r.job) not in ids]
            if not consistent:
                self.adapter.size = len(self.rows)  # so keep([]) below empties it
            self._keep(keep)
            error = Rejected(500, f"internal error while running the model: {type(e).__name__}", "server_error")
            for job in {id(j): j for j in jobs}.values():
                self._send(job, [("error", error)])

    @torch.no_grad()
    def _prefill(self, jobs: list[Job]) -> None:
        """Every admitted request's prompts in one prefill; their rows join the batch for the next step."""
        jobs = [j for j in jobs if not j.cancelled]
        if not jobs:
            return
        tok, device = self.run.tokenizer, self.run.device
        last, part = self.adapter.prefill([ids for job in jobs for ids in job.prompts])
        self.adapter.join(part)  # only after the forward succeeded, so a failure leaves the batch whole
        offset = 0
        for job in jobs:
            n = len(job.prompts)
            sampler = Sampler([job.sampling] * n, job.seeds, tok.vocab_size, device)
            for i, ids in enumerate(job.prompts):  # the prompt counts as seen, as in generate.stream
                sampler.seen[i, torch.tensor(ids[1:], dtype=torch.long, device=device)] = True
            self._join_rows(job, sampler, last[offset : offset + n])
            offset += n
        assert self.adapter.size == len(self.rows) == self.logits.shape[0]
        for job in jobs:
            self._send(job, [("start", time.monotonic() - job.enqueued)])

    def _join_rows(self, job: Job, sampler: Sampler, logits) -> None:
        tok = self.run.tokenizer
        self.rows.extend(Row(job, i, tok.token_bytes, tok.bos_id) for i in range(len(job.prompts)))
        self.sampler.join(sampler)
        self.logits = logits if self.logits is None else torch.cat([self.logits, logits])

    @torch.no_grad()
    def _step(self) -> None:
        """Sample a token for every active row, hand out the text, drop finished rows, step the rest once."""
        cancelled = {i for i, r in enumerate(self.rows) if r.job.cancelled}
        if cancelled:
            self._keep(swap_remove_order(len(self.rows), cancelled))
            if not self.rows:
                return
        logits = self.logits
        want_logprobs = any(r.job.logprobs is not None for r in self.rows)
        logp = F.log_softmax(logits.float(), dim=-1) if want_logprobs else None
        tokens = self.sampler(logits)
        events: dict[int, tuple[Job, list]] = {}
        leaving = set()
        token_list = tokens.tolist()
        for i, row in enumerate(self.rows):
            token = token_list[i]
            text = row.feed(token)
            entry = ("token", row.index, text, self._logprob(logp, i, token, row.job.logprobs))
            batch = events.setdefault(id(row.job), (row.job, []))[1]
            batch.append(entry)
            if row.finish:
                batch.append(("end", row.index, row.finish, row.tokens))
                leaving.add(i)
        self.metrics.batch_size.observe(len(self.rows))
        self.metrics.tokens.inc(len(self.rows))
        self._send_all(events.values())  # before the forward, so the text reaches clients sooner
        if leaving:
            order = swap_remove_order(len(self.rows), leaving)
            self._keep(order)
            tokens = tokens[torch.tensor(order, dtype=torch.long)]
        if self.rows:
            self.logits = self.adapter.step(tokens.to(self.run.device))

    def _logprob(self, logp, i: int, token: int, top: int | None):
        if logp is None or top is None:
            return None
        row = logp[i]
        best = row.topk(top) if top > 0 else None
        tb = self.run.tokenizer.token_bytes
        return {
            "token": tb[token].decode("utf-8", errors="replace"),
            "logprob": float(row[token]),
            "top": {tb[j].decode("utf-8", errors="replace"): float(v)
                    for v, j in zip(best.values.tolist(), best.indices.tolist())} if best is not None else None,
        }

    def _keep(self, order: list[int]) -> None:
        self.rows = [self.rows[i] for i in order]
        self.adapter.keep(order)
        self.sampler.keep(order)
        self.logits = self.logits[torch.tensor(order, dtype=torch.long)] if order and self.logits is not None \
            else None
        self.metrics.active_rows.set(len(self.rows))

    def _score(self, jobs: list[Job]) -> None:
        live = [j for j in jobs if not j.cancelled]
        if not live:
            return
        self.metrics.score_batch_size.observe(len(live))
        scored = score_texts(self.run.model, [j.prompts[0] for j in live], self.run.device, self.run.count_model)
        for job, (bits, network) in zip(live, scored):
            self._send(job, [("score", bits, network)])

    def _send(self, job: Job, events: list) -> None:
        self._send_all([(job, events)])

    @staticmethod
    def _send_all(pairs) -> None:
        """Hand (job, events) pairs to their event loops: one thread-safe call per loop, however many jobs."""
        by_loop: dict[int, tuple[object, list]] = {}
        for job, events in pairs:
            by_loop.setdefault(id(job.loop), (job.loop, []))[1].append((job.events, events))
        for loop, items in by_loop.values():
            try:
                loop.call_soon_threadsafe(_put_all, items)
            except RuntimeError:  # that event loop is closed (shutdown): nobody is listening
                pass

    def _gauge_queue(self) -> None:
        self.metrics.queue_depth.set(len(self.gen_queue) + len(self.score_queue))

    def _fail_everything(self, error: Rejected) -> None:
        with self.lock:
            jobs = list(self.gen_queue) + list(self.score_queue)
            self.gen_queue.clear()
            self.score_queue.clear()
        jobs += list({id(r.job): r.job for r in self.rows}.values())
        self.rows = []
        for job in jobs:
            self._send(job, [("error", error)])
