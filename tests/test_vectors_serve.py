"""Serve's vector routes: /v1/embeddings with the official openai client, /v1/search over an index."""

import contextlib
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from vectors_data import write_corpus

from seqlab.run import load
from seqlab.serve.server import create_app
from seqlab.serve.worker import ServeConfig
from seqlab.vectors.embed import embed_texts
from seqlab.vectors.index import PassageIndex


@contextlib.contextmanager
def started(app, headers=None):
    with TestClient(app) as client:
        deadline = time.monotonic() + 30
        while client.get("/ready", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "/ready"
            time.sleep(0.02)
        yield client


@pytest.fixture(scope="module")
def served(trained_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-vectors")
    run = load(trained_runs["lstm"])
    files = write_corpus(root / "docs", n_files=1, n_lines=200)
    PassageIndex.build(run, files, root / "idx", "paragraph", show_progress=False)
    with started(create_app(lambda: run, ServeConfig(index=str(root / "idx"), max_rows=4))) as client:
        yield {"client": client, "run": run, "index": root / "idx"}


def test_embeddings_with_the_official_openai_client(served):
    import openai

    api = openai.OpenAI(base_url="http://testserver/v1", api_key="unused", http_client=served["client"])
    texts = ["anna sees the cat.", "bob takes a red box."]
    reply = api.embeddings.create(model="seqlab", input=texts)  # the client asks for base64 and decodes it
    got = np.array([d.embedding for d in reply.data])
    assert np.allclose(got, embed_texts(served["run"], [t.encode() for t in texts]), atol=1e-5)
    assert [d.index for d in reply.data] == [0, 1] and reply.usage.prompt_tokens == sum(len(t) for t in texts)
    floats = api.embeddings.create(model="seqlab", input=texts[0], encoding_format="float")
    assert np.allclose(floats.data[0].embedding, got[0], atol=1e-6)
    with pytest.raises(openai.BadRequestError) as err:
        api.embeddings.create(model="seqlab", input=["a"] * 5)
    assert err.value.body["param"] == "input" and "--max-rows" in err.value.body["message"]


@pytest.mark.parametrize("body,param", [({"input": ""}, "input"), ({"input": []}, "input"),
                                        ({"input": ["ok", " "]}, "input"), ({"input": 7}, "input"),
                                        ({"input": "a", "encoding_format": "int8"}, "encoding_format"),
                                        ({"input": "a", "dimensions": 3}, "dimensions"),
                                        ({"input": "a", "extra": 1}, "extra")])
def test_bad_embedding_requests_are_400_in_the_envelope(served, body, param):
    r = served["client"].post("/v1/embeddings", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param, r.json()


def test_search_route_answers_as_seqlab_search(served):
    from seqlab.search import search

    client = served["client"]
    r = client.post("/v1/search", json={"query": "the cat sat on the mat.", "k": 3})
    assert r.status_code == 200
    expected = search(served["index"], "the cat sat on the mat.", 3,
                      opened=(PassageIndex.load(served["index"]), served["run"]))
    got = r.json()["results"]
    assert [(h["file"], h["line"], h["text"]) for h in got] == [(h["file"], h["line"], h["text"])
                                                               for h in expected["results"]]
    assert np.allclose([h["score"] for h in got], [h["score"] for h in expected["results"]], atol=1e-5)
    assert client.get("/v1/index").json()["count"] == PassageIndex.load(served["index"]).info["count"]
    for body in ({"query": " "}, {"query": "x", "k": 0}, {"query": "x", "k": 101}):
        assert client.post("/v1/search", json=body).status_code == 400


def test_without_an_index_search_is_404_and_a_token_guards_the_routes(trained_runs):
    run = load(trained_runs["lstm"])
    headers = {"Authorization": "Bearer t0ken"}
    with started(create_app(lambda: run, ServeConfig(token="t0ken")), headers) as client:
        assert client.post("/v1/embeddings", json={"input": "a"}).status_code == 401
        assert client.post("/v1/embeddings", json={"input": "a"}, headers=headers).status_code == 200
        r = client.post("/v1/search", json={"query": "a"}, headers=headers)
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_index"
        assert client.get("/v1/index", headers=headers).status_code == 404


def test_the_page_has_a_search_box(served):
    page = served["client"].get("/").text
    assert 'id="search-query"' in page and "/web/search.js" in page
    assert "/v1/search" in served["client"].get("/web/search.js").text
