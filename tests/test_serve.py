"""`seqlab serve`: the HTTP API, continuous batching, limits, deadlines, cancellation, auth, metrics.

Most tests run the app in-process (Starlette's TestClient); those that need real
connections (concurrency, disconnects) run uvicorn on 127.0.0.1 on a free port.
The worker's step can be slowed or held shut (`Steps`) so timing-dependent
behaviour (a request joining a running batch, a full queue, a deadline) is
made to happen rather than hoped for.
"""

import contextlib
import importlib.util
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from seqlab.generate import generate
from seqlab.models import ARCHS, SeqModel, build_model
from seqlab.run import load
from seqlab.sampling import SamplingConfig
from seqlab.scoring import token_bits
from seqlab.serve.background import BackgroundServer
from seqlab.serve.batching import RowByRow, StackedBatch, pick_adapter, verify
from seqlab.serve.scorer import score_texts
from seqlab.serve.server import create_app
from seqlab.serve.worker import ServeConfig, swap_remove_order

WAIT_S = 20


def wait_for(predicate, timeout: float = WAIT_S, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def metric(text: str, name: str, **labels) -> float:
    """The value of one Prometheus sample (0 if absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(m.group(3))
    return 0.0


class Steps:
    """Wraps the worker's batched step: records batch sizes, can sleep per step, and can be held shut."""

    def __init__(self, worker, delay: float = 0.0):
        self.inner, self.delay, self.sizes = worker.adapter.step, delay, []
        self.gate = threading.Event()
        self.gate.set()
        self.held = threading.Event()  # set once a step is waiting at the shut gate
        worker.adapter.step = self

    def __call__(self, tokens):
        deadline = time.monotonic() + WAIT_S
        while not self.gate.wait(0.01) and time.monotonic() < deadline:
            self.held.set()
        self.sizes.append(int(tokens.shape[0]))
        if self.delay:
            time.sleep(self.delay)
        return self.inner(tokens)


@contextlib.contextmanager
def started(app, headers=None):
    with TestClient(app) as client:
        wait_for(lambda: client.get("/ready", headers=headers).status_code == 200, what="/ready")
        yield client


@pytest.fixture(scope="module")
def runs(trained_runs):
    return {arch: load(trained_runs[arch]) for arch in ("transformer", "lstm")}


@pytest.fixture(scope="module")
def clients(runs):
    with contextlib.ExitStack() as stack:
        config = ServeConfig(max_tokens=400, cache_size=4)
        yield {arch: stack.enter_context(started(create_app(lambda r=run: r, config))) for arch, run in runs.items()}


@pytest.fixture
def live(runs):
    """Start a real server: live(arch, **config) -> (url, worker); stopped at the end of the test."""
    servers = []

    def start(arch: str, **config):
        app = create_app(lambda: runs[arch], ServeConfig(**config))
        server = BackgroundServer(app)
        url = server.__enter__()
        servers.append(server)
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="/ready")
        return url, app.state.worker

    yield start
    for s in servers:
        s.__exit__(None, None, None)


def post(url: str, body: dict, timeout: float = WAIT_S) -> httpx.Response:
    return httpx.post(f"{url}/v1/completions", json=body, timeout=timeout)


# ---- generation -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_seeded_completion_is_seqlab_generate(clients, runs, arch):
    body = {"prompt": "anna", "max_tokens": 20, "seed": 3, "temperature": 0.9, "top_k": 30, "top_p": 0.95}
    reply = clients[arch].post("/v1/completions", json=body).json()
    sampling = SamplingConfig(temperature=0.9, top_k=30, top_p=0.95, repetition_penalty=1.0)
    ref = generate(runs[arch], "anna", max_tokens=20, seed=3, sampling=sampling)[0]
    assert reply["choices"][0]["text"] == ref.text
    assert reply["choices"][0]["finish_reason"] == ref.finish_reason == "length"
    assert reply["usage"] == {"prompt_tokens": 4, "completion_tokens": 20, "total_tokens": 24}


def test_n_rows_use_seed_plus_i_and_prompt_lists_keep_order(clients):
    c = clients["lstm"]
    both = c.post("/v1/completions", json={"prompt": ["anna", "bob"], "n": 2, "max_tokens": 12, "seed": 5}).json()
    assert [ch["index"] for ch in both["choices"]] == [0, 1, 2, 3]
    for j, prompt in enumerate(["anna", "bob"]):
        for i in range(2):
            alone = c.post("/v1/completions", json={"prompt": prompt, "max_tokens": 12, "seed": 5 + i}).json()
            assert both["choices"][j * 2 + i]["text"] == alone["choices"][0]["text"]
    assert both["usage"]["prompt_tokens"] == 4 + 3  # each prompt counted once, however large n is


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_seeded_request_same_text_alone_and_inside_a_running_batch(live, arch):
    url, worker = live(arch, max_batch=16, max_tokens=400, cache_size=0)  # the probe must run twice
    steps = Steps(worker)
    prefills = []
    inner_prefill = worker.adapter.prefill
    worker.adapter.prefill = lambda seqs: prefills.append(len(seqs)) or inner_prefill(seqs)
    probe = {"prompt": "carl", "max_tokens": 12, "seed": 11, "temperature": 1.0}
    alone = post(url, probe).json()["choices"][0]["text"]
    assert set(steps.sizes) == {1}
    steps.sizes.clear()
    steps.delay = 0.05  # the first requests run for over a second: still running when the gate closes
    long_tokens = 28 if arch == "transformer" else 40
    others = [{"prompt": p, "max_tokens": long_tokens - len(p), "seed": s, "temperature": 0.7}
              for s, p in enumerate(["a", "bob", "anna ta", "c", "bob likes", "it"])]
    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(post, url, b) for b in others[:3]]
        wait_for(lambda: len(worker.rows) >= 3, what="a running batch")
        steps.gate.clear()  # hold the batch so the late ones queue up and are prefilled together, ragged
        wait_for(steps.held.is_set, what="the batch held")  # not between steps, where it would admit them
        late = [pool.submit(post, url, b) for b in others[3:]]
        joined = pool.submit(post, url, probe)
        wait_for(lambda: len(worker.gen_queue) == 4, what="queued requests")
        steps.gate.set()
        assert all(f.result().status_code == 200 for f in running + late)
        assert joined.result().json()["choices"][0]["text"] == alone
    assert max(steps.sizes) >= 7 and max(prefills) == 4


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_stop_strings_cut_exactly_and_logprobs_add_up(clients, arch):
    reply = clients[arch].post("/v1/completions", json={
        "prompt": "anna", "max_tokens": 25, "seed": 1, "stop": ["."], "logprobs": 2}).json()
    choice = reply["choices"][0]
    assert "." not in choice["text"] and choice["finish_reason"] == "stop"
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == reply["usage"][
        "completion_tokens"]
    assert all(v <= 0 for v in lp["token_logprobs"]) and all(len(t) <= 2 for t in lp["top_logprobs"])


def test_stream_is_strict_server_sent_events_and_matches_the_plain_reply(clients):
    body = {"prompt": "bob", "max_tokens": 15, "seed": 2, "n": 2, "stream_options": {"include_usage": True}}
    plain = clients["lstm"].post("/v1/completions", json=body).json()
    raw = clients["lstm"].post("/v1/completions", json={**body, "stream": True})
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    events = raw.text.split("\n\n")
    assert events[-1] == "" and events[-2] == "data: [DONE]"
    texts, finish, usage = ["", ""], [None, None], None
    for event in events[:-2]:
        assert event.startswith("data: ") and "\n" not in event  # one data line per event, nothing else
        chunk = json.loads(event[len("data: "):])
        assert chunk["object"] == "text_completion" and chunk["id"].startswith("cmpl-")
        if not chunk["choices"]:
            usage = chunk["usage"]
        for c in chunk["choices"]:
            texts[c["index"]] += c["text"]
            finish[c["index"]] = c["finish_reason"] or finish[c["index"]]
    assert texts == [c["text"] for c in plain["choices"]]
    assert finish == [c["finish_reason"] for c in plain["choices"]]
    assert usage == plain["usage"]


def test_the_official_openai_client_works(clients):
    openai = pytest.importorskip("openai")
    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=clients["lstm"])
    done = api.completions.create(model="seqlab", prompt="anna", max_tokens=10, seed=4, temperature=0.8)
    pieces = api.completions.create(model="seqlab", prompt="anna", max_tokens=10, seed=4, temperature=0.8,
                                    stream=True)
    streamed = "".join(chunk.choices[0].text for chunk in pieces if chunk.choices)
    assert streamed == done.choices[0].text and done.usage.completion_tokens == 10
    with pytest.raises(openai.BadRequestError) as err:
        api.completions.create(model="seqlab", prompt="anna", max_tokens=10, temperature=7)
    assert err.value.body["param"] == "temperature"
    assert [m.id for m in api.models.list()] == [clients["lstm"].get("/ready").json()["model"]]


# ---- validation and errors --------------------------------------------------------------------------------------

BAD = [
    ({"max_tokens": 3}, "prompt", None),  # missing
    ({"prompt": 7}, "prompt", None),
    ({"prompt": []}, "prompt", None),
    ({"prompt": "a", "max_tokens": "9"}, "max_tokens", None),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens", None),
    ({"prompt": "a", "max_tokens": 10_000}, "max_tokens", None),
    ({"prompt": "a", "temperature": -0.1}, "temperature", None),
    ({"prompt": "a", "temperature": 2.5}, "temperature", None),
    ({"prompt": "a", "top_p": 0}, "top_p", None),
    ({"prompt": "a", "top_p": 1.5}, "top_p", None),
    ({"prompt": "a", "n": 0}, "n", None),
    ({"prompt": "a", "n": 17}, "n", None),
    ({"prompt": "a", "stop": ["1", "2", "3", "4", "5"]}, "stop", None),
    ({"prompt": "a", "stop": "x" * 65}, "stop", None),
    ({"prompt": "a", "stop": [""]}, "stop", None),
    ({"prompt": "a", "logprobs": 6}, "logprobs", None),
    ({"prompt": "a", "seed": -1}, "seed", None),
    ({"prompt": "a", "echo": True}, "echo", "extra_forbidden"),
    ({"prompt": "a" * 17_000}, "prompt", "prompt_too_long"),
    ({"prompt": "anna", "max_tokens": 29}, "max_tokens", "context_length_exceeded"),  # 4 + 29 > 32
    ({"prompt": "x" * 40, "max_tokens": 1}, "prompt", "context_length_exceeded"),
]


@pytest.mark.parametrize("body,param,code", BAD)
def test_bad_requests_get_400_naming_the_field(clients, body, param, code):
    r = clients["transformer"].post("/v1/completions", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]
    if code:
        assert error["code"] == code


def test_malformed_bodies_and_odd_text_are_400_never_500(clients):
    c = clients["transformer"]
    for raw in [b"{", b"[1, 2]", b"null", b'{"prompt": "a", "temperature": NaN}', b'{"prompt": "\\ud800"}',
                b'{"prompt": "a", "max_tokens": 1e400}', b"\xff\xfe"]:
        r = c.post("/v1/completions", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 400 and "error" in r.json(), (raw, r.text)
    r = c.post("/v1/score", json={"text": ""})
    assert r.status_code == 400 and r.json()["error"]["param"] == "text"


def test_body_over_the_limit_is_413_before_parsing(runs):
    with TestClient(create_app(lambda: runs["lstm"], ServeConfig(max_body_bytes=1000))) as c:
        r = c.post("/v1/completions", json={"prompt": "a" * 2000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"


def test_unknown_routes_and_methods_use_the_envelope(clients):
    c = clients["lstm"]
    assert c.get("/v2/nothing").json()["error"]["type"] == "not_found"
    r = c.get("/v1/completions")
    assert r.status_code == 405 and r.json()["error"]["type"] == "method_not_allowed"


def test_a_failing_forward_fails_its_requests_not_the_worker(runs):
    with started(create_app(lambda: runs["lstm"], ServeConfig())) as c:
        worker = c.app.state.worker
        inner = worker.adapter.step
        calls = []

        def broken_once(tokens):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("simulated fault")
            return inner(tokens)

        worker.adapter.step = broken_once
        r = c.post("/v1/completions", json={"prompt": "anna", "max_tokens": 5})
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        assert c.post("/v1/completions", json={"prompt": "anna", "max_tokens": 5}).status_code == 200
        assert c.get("/ready").status_code == 200
        # a reply is sent before its rows leave the batch, so the worker may still be finishing that step
        wait_for(lambda: not worker.rows, what="the worker to drop the finished rows")


# ---- readiness, auth, metrics, logs, cache ----------------------------------------------------------------------


def test_ready_waits_for_the_model_and_reports_a_dead_worker(runs):
    release = threading.Event()

    def slow_load():
        release.wait(WAIT_S)
        return runs["lstm"]

    with TestClient(create_app(slow_load, ServeConfig())) as c:
        assert c.get("/health").status_code == 200
        r = c.get("/ready")
        assert r.status_code == 503 and r.headers["retry-after"]
        r = c.post("/v1/completions", json={"prompt": "a"})
        assert r.status_code == 503 and r.headers["retry-after"]
        release.set()
        wait_for(lambda: c.get("/ready").status_code == 200, what="/ready")

    def broken_load():
        raise OSError("disk on fire")

    with TestClient(create_app(broken_load, ServeConfig())) as c:
        wait_for(lambda: c.get("/ready").json()["status"] == "dead", what="a dead worker")
        assert "disk on fire" in c.get("/ready").json()["detail"]
        assert c.get("/health").status_code == 200
        assert c.post("/v1/completions", json={"prompt": "a"}).status_code == 503


def test_bearer_token_on_everything_but_health_and_the_page(runs):
    app = create_app(lambda: runs["lstm"], ServeConfig(token="s3cret-Token"))
    with started(app, headers={"Authorization": "Bearer s3cret-Token"}) as c:
        for path in ("/health", "/", "/web/app.js"):  # the page loads without the token, then asks for it
            assert c.get(path, headers={}).status_code == 200, path
        assert c.get("/web/../v1/models", headers={}).status_code in (401, 404)
        for method, path in [("GET", "/ready"), ("GET", "/metrics"), ("GET", "/openapi.json"), ("GET", "/docs"),
                             ("POST", "/v1/completions"), ("POST", "/v1/score"), ("GET", "/v1/models")]:
            for header in [None, "Bearer s3cret-token", "Bearer s3cret-Token2", "s3cret-Token", "Basic s3cret-Token"]:
                r = c.request(method, path, headers={"Authorization": header} if header else {})
                assert r.status_code == 401, (path, header)
                assert r.json()["error"]["type"] == "authentication_error" and r.headers["www-authenticate"]
        good = {"Authorization": "Bearer s3cret-Token"}
        assert c.get("/ready", headers=good).status_code == 200
        assert c.post("/v1/completions", json={"prompt": "a", "max_tokens": 2}, headers=good).status_code == 200


def test_metrics_count_requests_tokens_batches_and_the_cache(clients):
    c = clients["transformer"]
    body = {"prompt": "bob", "max_tokens": 6, "temperature": 0}
    first = c.post("/v1/completions", json=body).json()
    before = c.get("/metrics").text
    second = c.post("/v1/completions", json=body).json()
    after = c.get("/metrics").text
    assert second["choices"] == first["choices"] and second["id"] != first["id"]
    assert metric(after, "seqlab_cache_hits_total") == metric(before, "seqlab_cache_hits_total") + 1
    assert metric(after, "seqlab_generated_tokens_total") == metric(before, "seqlab_generated_tokens_total")
    c.post("/v1/completions", json={"prompt": "bob", "max_tokens": 6})  # random seed: not cacheable
    assert metric(c.get("/metrics").text, "seqlab_cache_misses_total") == metric(after, "seqlab_cache_misses_total")
    for i in range(6):  # the cache holds at most cache_size=4 answers
        c.post("/v1/completions", json={"prompt": "bob", "max_tokens": 2, "seed": 100 + i})
    text = c.get("/metrics").text
    assert metric(text, "seqlab_cache_entries") == 4
    assert metric(text, "seqlab_requests_total", route="/v1/completions", status="200") >= 9
    for name in ["seqlab_queue_depth", "seqlab_active_rows", "seqlab_batch_size_count", "seqlab_queue_seconds_count",
                 "seqlab_time_to_first_token_seconds_count", "seqlab_worker_up"]:
        assert f"\n{name}" in text, name
    assert metric(text, "seqlab_time_to_first_token_seconds_count") >= 1 and metric(text, "seqlab_worker_up") == 1


def test_one_json_log_line_per_request_without_text(clients, caplog):
    caplog.set_level(logging.INFO, logger="seqlab.serve.requests")
    r = clients["lstm"].post("/v1/completions", json={"prompt": "secret words", "max_tokens": 3})
    lines = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "seqlab.serve.requests"]
    assert len(lines) == 1
    line = lines[0]
    assert line["id"] == r.headers["x-request-id"] and line["status"] == 200 and line["path"] == "/v1/completions"
    assert line["prompt_tokens"] == 12 and line["completion_tokens"] == 3 and line["bytes_in"] > 0
    assert "queue_ms" in line and "total_ms" in line
    assert "secret" not in json.dumps(line)


# ---- scoring ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_batched_scoring_matches_token_bits(runs, arch):
    run = runs[arch]
    texts = [b"a", b"anna sees it.", b"bob likes a red box.\n" * 5, b"zq" * 60]
    tokens = [np.concatenate([[run.tokenizer.bos_id], run.tokenizer.encode(t)]).astype(np.int64) for t in texts]
    batched = score_texts(run.model, tokens, run.device)
    for t, (bits, network) in zip(tokens, batched):
        assert np.array_equal(bits, network)  # no count model given: the network alone
        assert np.allclose(bits, token_bits(run.model, t, 1, run.device), atol=1e-4)


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_score_reports_the_same_bits_per_byte_as_seqlab_eval(clients, runs, trained_runs, tmp_path, arch):
    run = runs[arch]
    assert run.count_model is not None  # the figure must include the count model, as eval's does
    text = "anna sees the cat.\nbob likes a red box.\n" * 3 + "carl qxzv it.\n"
    path = tmp_path / "text.txt"
    path.write_text(text)
    reply = clients[arch].post("/v1/score", json={"text": text}).json()
    out = subprocess.run([sys.executable, "-m", "seqlab", "eval", str(trained_runs[arch]), str(path), "--json"],
                         capture_output=True, text=True, check=True).stdout
    evaluated = json.loads(out)
    assert reply["bits_per_byte"] == pytest.approx(evaluated["bpb"], abs=1e-4)
    assert reply["bits_per_byte_network"] == pytest.approx(evaluated["bpb_network"], abs=1e-4)
    assert abs(evaluated["bpb"] - evaluated["bpb_network"]) > 1e-3  # so the first check tells mixed from network


def test_score_reply_has_per_token_surprisal_and_bits_per_byte(clients):
    c = clients["transformer"]
    text = "anna sees the cat.\nbob qxzv it.\n"
    reply = c.post("/v1/score", json={"text": text, "top": 3}).json()
    tokens = reply["tokens"]
    assert "".join(t["text"] for t in tokens) == text and tokens[0]["start"] == 0 and tokens[-1]["end"] == len(text)
    assert reply["bytes"] == len(text)
    assert reply["bits_per_byte"] == pytest.approx(sum(t["bits"] for t in tokens) / len(text))
    assert [s["bits"] for s in reply["most_surprising"]] == sorted((t["bits"] for t in tokens), reverse=True)[:3]
    assert any(s["text"] in "qxzv" for s in reply["most_surprising"])
    if importlib.util.find_spec("seqlab.surprise"):  # spans as `seqlab surprise` finds them
        assert reply["anomalies"] and any("qxzv" in a["text"] or a["text"] in "qxzv" for a in reply["anomalies"])
        assert all(a["line"] == 2 for a in reply["anomalies"] if a["text"] in "qxzv")
    plain = c.post("/v1/score", json={"text": "anna sees the cat.\nbob likes it.\n"}).json()
    assert plain["bits_per_byte"] < reply["bits_per_byte"]


def test_concurrent_scores_share_one_batch(live):
    url, worker = live("lstm", score_delay_ms=20, max_score_batch=8)
    steps = Steps(worker)
    steps.gate.clear()  # hold the worker inside a generation step while the score requests queue up
    with ThreadPoolExecutor(6) as pool:
        gen = pool.submit(post, url, {"prompt": "a", "max_tokens": 3})
        wait_for(lambda: len(worker.rows) == 1, what="a running row")
        texts = [f"anna sees it {i}.\n" * (i + 1) for i in range(4)]
        scores = [pool.submit(httpx.post, f"{url}/v1/score", json={"text": t}, timeout=WAIT_S) for t in texts]
        wait_for(lambda: len(worker.score_queue) == 4, what="queued scores")
        steps.gate.set()
        assert all(f.result().status_code == 200 for f in scores) and gen.result().status_code == 200
    text = httpx.get(f"{url}/metrics").text
    assert metric(text, "seqlab_score_batch_size_count") == 1 and metric(text, "seqlab_score_batch_size_sum") == 4


# ---- queue limits, deadlines and cancellation -------------------------------------------------------------------


def test_full_queue_is_429_and_a_stale_request_is_503_and_never_run(live):
    url, worker = live("transformer", max_batch=1, max_queue=1, max_queue_ms=300)
    steps = Steps(worker)
    prefills = []
    inner_prefill = worker.adapter.prefill
    worker.adapter.prefill = lambda seqs: prefills.append(len(seqs)) or inner_prefill(seqs)
    steps.gate.clear()
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(post, url, {"prompt": "anna", "max_tokens": 4})
        wait_for(lambda: len(worker.rows) == 1, what="the first request running")
        queued = pool.submit(post, url, {"prompt": "bob", "max_tokens": 4})
        wait_for(lambda: len(worker.gen_queue) == 1, what="the second request queued")
        refused = post(url, {"prompt": "carl", "max_tokens": 4})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "queue_full"
        time.sleep(0.4)  # past --max-queue-ms for the queued one
        steps.gate.set()
        stale = queued.result()
        assert stale.status_code == 503 and stale.headers["retry-after"] and \
            stale.json()["error"]["code"] == "queue_deadline"
        assert first.result().status_code == 200
    assert len(prefills) == 1  # only the first request ever reached the model
    text = httpx.get(f"{url}/metrics").text
    assert metric(text, "seqlab_dropped_total", reason="deadline") == 1
    assert metric(text, "seqlab_dropped_total", reason="queue_full") == 1
    assert metric(text, "seqlab_requests_total", route="/v1/completions", status="429") == 1


def test_a_client_that_disconnects_mid_stream_frees_its_slot(live):
    url, worker = live("lstm", max_batch=1, max_tokens=5000)
    Steps(worker, delay=0.003)
    with httpx.Client(timeout=WAIT_S) as http:
        with http.stream("POST", f"{url}/v1/completions",
                         json={"prompt": "anna", "max_tokens": 5000, "stream": True}) as r:
            lines = r.iter_lines()
            assert next(lines).startswith("data: ")
        # leaving the block closes the connection mid-stream
    wait_for(lambda: not worker.rows, timeout=5, what="the cancelled row to leave")
    generated = metric(httpx.get(f"{url}/metrics").text, "seqlab_generated_tokens_total")
    assert generated < 5000
    t0 = time.monotonic()
    assert post(url, {"prompt": "bob", "max_tokens": 3}).status_code == 200  # the one slot is free again
    assert time.monotonic() - t0 < 5


def test_a_client_that_disconnects_while_waiting_for_a_plain_reply_frees_its_slot(live):
    url, worker = live("lstm", max_batch=1, max_tokens=5000)
    Steps(worker, delay=0.003)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "anna", "max_tokens": 5000}).encode()
    with socket.create_connection((host, int(port))) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: len(worker.rows) == 1, what="the request running")
    wait_for(lambda: not worker.rows, timeout=5, what="the cancelled row to leave")
    assert metric(httpx.get(f"{url}/metrics").text, "seqlab_generated_tokens_total") < 5000


# ---- batching adapters ------------------------------------------------------------------------------------------


def test_swap_remove_order_moves_only_rows_past_the_new_end():
    assert swap_remove_order(5, {1}) == [0, 4, 2, 3]
    assert swap_remove_order(5, {0, 4}) == [3, 1, 2]
    assert swap_remove_order(3, {0, 1, 2}) == []
    assert swap_remove_order(4, set()) == [0, 1, 2, 3]


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_architecture_batches_correctly_or_falls_back_to_row_by_row(arch):
    from conftest import TINY

    torch.manual_seed(0)
    model = build_model(arch, dict(TINY.get(arch, {}))).eval()
    adapter, note = pick_adapter(model, torch.device("cpu"), 4)
    assert verify(adapter, model, torch.device("cpu"), 257) is None, note
    if arch == "lstm":
        assert isinstance(adapter, StackedBatch)


class Growing(SeqModel):
    """A toy whose state grows with the text: rows of different lengths cannot be stacked."""

    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(257, 257)

    def init_state(self, batch_size, device):
        return torch.zeros(batch_size, 0, 257, device=device)

    def forward(self, idx, state=None):
        past = state if state is not None else self.init_state(idx.shape[0], idx.device)
        seen = torch.cat([past, self.embed(idx)], dim=1)  # (B, t, V)
        return seen.cumsum(1)[:, -idx.shape[1]:], seen


def test_a_state_that_cannot_be_stacked_falls_back_to_row_by_row():
    adapter, note = pick_adapter(Growing().eval(), torch.device("cpu"), 4)
    assert isinstance(adapter, RowByRow) and "row by row" in note


# ---- the CLI ----------------------------------------------------------------------------------------------------


def test_seqlab_serve_runs_and_logs_json(trained_runs, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "seqlab", "serve", str(trained_runs["lstm"]), "--port", str(port)],
                            stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def up():
            try:
                return httpx.get(f"{url}/ready").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60, what="seqlab serve")
        assert httpx.post(f"{url}/v1/completions", json={"prompt": "hidden", "max_tokens": 3}).status_code == 200
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=WAIT_S)
    logged = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert any(r["path"] == "/v1/completions" and r["status"] == 200 for r in logged)
    assert "hidden" not in err


def test_seqlab_serve_bad_run_is_one_line(tmp_path):
    from seqlab.__main__ import main

    assert main(["serve", str(tmp_path / "missing")]) == 2


# ---- schema-driven fuzzing --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_500_and_replies_match_the_schema(runs, tmp_path):
    """Schemathesis fuzzes every operation of the served OpenAPI schema: boundary values of each field (its
    coverage phase), then generated requests, valid and invalid.

    It runs as schemathesis's own command line against a live server rather than through its pytest plugin,
    which writes pytest's private node attributes and broke on pytest 9.2. Deterministic: the same requests
    every run, so CI's verdict is the code's.
    """
    app = create_app(lambda: runs["transformer"], ServeConfig(max_tokens=64, max_queue_ms=30_000))
    with BackgroundServer(app) as url:
        wait_for(lambda: httpx.get(f"{url}/ready").status_code == 200, what="/ready")
        fuzz = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{url}/openapi.json", "--no-color",
             "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
             "--phases", "examples,coverage,fuzzing", "--max-examples", "30", "--generation-deterministic",
             "--suppress-health-check", "all", "--request-timeout", "60"],
            capture_output=True, text=True, timeout=600, cwd=tmp_path)  # its report folder goes there
    assert fuzz.returncode == 0, fuzz.stdout[-6000:] + fuzz.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", fuzz.stdout)
    assert tested and int(tested.group(1)) >= 6, fuzz.stdout[-3000:]
