"""The web page in a real headless browser (Debian's chromium driven by Playwright; no browser is downloaded).

CI installs chromium (.ci/run), so there a missing browser fails the test; on a
developer machine without it the test is skipped with the reason.
"""

import os
import shutil
import time

import pytest
from playwright.sync_api import sync_playwright

from seqlab.run import load
from seqlab.serve.background import BackgroundServer
from seqlab.serve.server import create_app
from seqlab.serve.worker import ServeConfig

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and shutil.which("chromium")):
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; .ci/run installs it with apt-get")
        pytest.skip("no /usr/bin/chromium here (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def site(trained_runs):
    """A live server on the LSTM run (no context limit, so a long generation can be watched streaming)."""
    run = load(trained_runs["lstm"])
    app = create_app(lambda: run, ServeConfig(max_tokens=20_000))
    with BackgroundServer(app) as url:
        worker = app.state.worker
        deadline = time.monotonic() + 30
        while not worker.ready.is_set() and time.monotonic() < deadline:
            time.sleep(0.02)
        inner = worker.adapter.step

        def paced(tokens):  # about 300 tokens/s, so the page is seen mid-stream on any machine
            time.sleep(0.003)
            return inner(tokens)

        worker.adapter.step = paced
        yield url, worker


@pytest.fixture(scope="module")
def locked_site(trained_runs):
    """A live server that needs a token (--token)."""
    run = load(trained_runs["lstm"])
    app = create_app(lambda: run, ServeConfig(token="s3cret-Token"))
    with BackgroundServer(app) as url:
        yield url


def test_the_page_asks_for_the_token_once_and_keeps_it_for_the_tab(browser, locked_site):
    page = browser.new_page()
    page.goto(locked_site)
    page.wait_for_selector("#auth", state="visible")  # /ready got 401
    page.fill("#token", "wrong")
    page.click("#token-submit")
    page.wait_for_function("document.getElementById('token-label').textContent.includes('refused')")
    page.fill("#token", "s3cret-Token")
    page.click("#token-submit")
    page.wait_for_function("document.getElementById('model').textContent.includes('batching')")
    assert page.is_hidden("#auth")
    page.fill("#prompt", "bob")
    page.fill("#max_tokens", "5")
    page.click("#generate")
    page.wait_for_function("document.getElementById('output').dataset.state === 'done'")
    assert "finished" in page.text_content("#status")
    page.reload()  # the token is kept in sessionStorage: not asked again
    page.wait_for_function("document.getElementById('model').textContent.includes('batching')")
    assert page.is_hidden("#auth")
    assert page.evaluate("sessionStorage.getItem('seqlab-token')") == "s3cret-Token"
    page.close()


def test_tokens_stream_into_the_page_and_stop_frees_the_slot(browser, site):
    url, worker = site
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("document.getElementById('model').textContent.includes('batching')")
    page.fill("#prompt", "anna")
    page.fill("#max_tokens", "20000")
    page.fill("#seed", "1")
    page.click("#generate")
    # text keeps arriving while the request is still streaming: seen at two growing lengths mid-stream
    page.wait_for_function("document.getElementById('output').dataset.state === 'streaming' && "
                           "document.getElementById('output-text').textContent.length >= 5")
    first = len(page.text_content("#output-text"))
    page.wait_for_function(f"document.getElementById('output-text').textContent.length > {first + 20}")
    assert page.get_attribute("#output", "data-state") == "streaming"
    assert page.text_content("#output-prompt") == "anna"
    page.click("#stop")
    page.wait_for_function("document.getElementById('output').dataset.state === 'done'")
    assert "stopped" in page.text_content("#status")
    deadline = time.monotonic() + 5
    while worker.rows and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not worker.rows  # the browser's abort reached the worker
    page.close()


def test_a_short_generation_finishes_with_its_reason(browser, site):
    url, _ = site
    page = browser.new_page()
    page.goto(url)
    page.fill("#prompt", "bob")
    page.fill("#max_tokens", "12")
    page.fill("#temperature", "0")
    page.click("#generate")
    page.wait_for_function("document.getElementById('output').dataset.state === 'done'")
    assert "finished (length)" in page.text_content("#status")
    assert len(page.text_content("#output-text")) == 12  # byte tokens of ASCII text: one character each
    page.close()


def test_pasted_text_shows_as_a_heat_map_with_anomalies(browser, site):
    url, _ = site
    page = browser.new_page()
    page.goto(url)
    page.click("#tab-score")
    text = "anna sees the cat.\nbob takes it.\ncarl likes qqzx box.\n"
    page.fill("#score-text", text)
    page.click("#score")
    page.wait_for_function("document.querySelectorAll('#heatmap span').length > 0")
    spans = page.query_selector_all("#heatmap span")
    assert "".join(s.text_content() for s in spans) == text
    bits = [float(s.get_attribute("data-bits")) for s in spans]
    colours = [s.evaluate("e => getComputedStyle(e).backgroundColor") for s in spans]
    hottest = max(range(len(bits)), key=bits.__getitem__)
    assert spans[hottest].text_content() in "qqzx box"
    assert colours[hottest] != colours[min(range(len(bits)), key=bits.__getitem__)]
    items = page.query_selector_all("#anomalies li")
    assert items and any("q" in i.text_content() or "z" in i.text_content() for i in items)
    assert "bits per byte" in page.text_content("#score-summary")
    page.close()


def test_an_error_from_the_server_is_shown(browser, site):
    url, _ = site
    page = browser.new_page()
    page.goto(url)
    page.fill("#prompt", "anna")
    page.fill("#temperature", "9")
    page.click("#generate")
    page.wait_for_function("document.getElementById('output').dataset.state === 'error'")
    assert "temperature" in page.text_content("#status")
    page.close()
