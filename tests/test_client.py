"""seqlab.client against a live server: requests built, replies parsed, errors raised, never retried."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from seqlab.client import Client, ServerError, completion_request, parse_sse
from seqlab.run import load
from seqlab.serve.background import BackgroundServer
from seqlab.serve.server import create_app
from seqlab.serve.worker import ServeConfig


def serve(run, **config):
    app = create_app(lambda: run, ServeConfig(**config))
    server = BackgroundServer(app)
    url = server.__enter__()
    deadline = time.monotonic() + 30
    while not app.state.worker.ready.is_set() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, url, app.state.worker


@pytest.fixture(scope="module")
def lstm(trained_runs):
    return load(trained_runs["lstm"])


@pytest.fixture(scope="module")
def client(lstm):
    server, url, _ = serve(lstm, token="tok")
    with Client(url, token="tok") as c:
        yield c
    server.__exit__(None, None, None)


def test_complete_stream_and_score(client):
    done = client.complete("anna", max_tokens=15, seed=3, temperature=0.9)
    pieces = list(client.stream("anna", max_tokens=15, seed=3, temperature=0.9))
    assert "".join(p.text for p in pieces) == done.text and len(done.text) > 0
    assert pieces[-1].finish_reason == done.choices[0].finish_reason == "length"
    assert done.usage["completion_tokens"] == 15
    two = client.complete(["anna", "bob"], max_tokens=5, seed=1)
    assert [c.index for c in two.choices] == [0, 1]
    score = client.score("anna sees the cat.\n")
    assert score.bytes == 19 and score.bits_per_byte == pytest.approx(score.total_bits / 19)
    assert len(score.tokens) == 19 and score.most_surprising
    assert client.health() and client.ready() and "seqlab_requests_total" in client.metrics()


def test_parallel_requests_with_a_thread_pool_match_sequential_ones(client):
    prompts = ["anna", "bob", "carl", "it", "a red", "the", "bob sees", "c"]
    ask = lambda p: client.complete(p, max_tokens=10, seed=7, temperature=0.8).text
    sequential = [ask(p) for p in prompts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(ask, prompts)) == sequential


def test_errors_carry_the_envelope(client):
    with pytest.raises(ServerError) as err:
        client.complete("anna", max_tokens=5, temperature=3)
    assert err.value.status == 400 and err.value.param == "temperature" and err.value.type == "invalid_request_error"
    with pytest.raises(ServerError) as err:
        list(client.stream("anna", max_tokens=5, n=99))
    assert err.value.status == 400 and err.value.param == "n"
    with Client(client.http.base_url.__str__().rstrip("/"), token="wrong") as bad:
        with pytest.raises(ServerError) as err:
            bad.complete("anna")
        assert err.value.status == 401
        assert bad.health()  # /health needs no token


def test_a_429_is_raised_at_once_with_retry_after_and_not_retried(lstm):
    server, url, worker = serve(lstm, max_batch=1, max_queue=1)
    gate = threading.Event()
    inner = worker.adapter.step
    worker.adapter.step = lambda tokens: gate.wait(20) and inner(tokens)
    try:
        with Client(url) as c, ThreadPoolExecutor(2) as pool:
            running = pool.submit(c.complete, "anna", max_tokens=3)
            while not worker.rows:
                time.sleep(0.01)
            queued = pool.submit(c.complete, "bob", max_tokens=3)
            while not worker.gen_queue:
                time.sleep(0.01)
            with pytest.raises(ServerError) as err:
                c.complete("carl", max_tokens=3)
            assert err.value.status == 429 and err.value.retry_after == 1 and err.value.code == "queue_full"
            gate.set()
            assert running.result().text and queued.result().text
            metrics = c.metrics()
            assert 'seqlab_requests_total{route="/v1/completions",status="429"} 1.0' in metrics  # one try only
    finally:
        gate.set()
        server.__exit__(None, None, None)


def test_completion_request_leaves_out_unset_params():
    assert completion_request("hi", 5, temperature=None, seed=2) == {"prompt": "hi", "max_tokens": 5, "seed": 2}


def test_sse_parser_is_strict():
    ok = ['data: {"choices": []}', "", "data: [DONE]", ""]
    assert list(parse_sse(ok)) == [{"choices": []}]
    with pytest.raises(ServerError, match="without data: \\[DONE\\]"):
        list(parse_sse(['data: {"a": 1}', ""]))
    with pytest.raises(ServerError, match="boom") as err:
        list(parse_sse(['data: {"error": {"message": "boom", "type": "server_error"}}', ""]))
    assert err.value.type == "server_error"
    assert list(parse_sse(["data: {\"a\":", "data: 1}", "", "data: [DONE]", ""])) == [{"a": 1}]
