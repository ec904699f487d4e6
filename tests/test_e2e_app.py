"""The app in a real browser: Debian's Chromium driven by Playwright against `streamlit run`.

Upload the lyrics corpus, train a few steps and see the plotly chart, generate text, compare two
architectures, and look at the Models page; a screenshot of each page goes to test-output/e2e/.
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LYRICS = ROOT.parent / "shared" / "data" / "lyrics_public_domain.txt"
SHOTS = ROOT / "test-output" / "e2e"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not LYRICS.exists(), reason="../shared/data is not there"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    env = dict(os.environ, TEXTGEN_RUNS_DIR=str(tmp / "runs"), TEXTGEN_PRETRAINED_DIR=str(tmp / "pretrained"),
               HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    log = open(tmp / "server.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"streamlit did not start: {(tmp / 'server.log').read_text()[-2000:]}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
        log_text = (tmp / "server.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]


@pytest.fixture(scope="module")
def page(server):
    sync_api = pytest.importorskip("playwright.sync_api")
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        page.goto(f"{server}/corpus")
        yield page
        browser.close()


def settle(page, ms: int = 400) -> None:
    """Wait until the app has finished its rerun (the 'running' indicator is gone)."""
    page.wait_for_timeout(ms)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)


def go(page, name: str) -> None:
    page.get_by_test_id("stSidebar").get_by_role("link", name=name, exact=True).click()
    page.get_by_role("heading", name=name, exact=True).wait_for()
    settle(page)


def choose(page, label: str, option: str, nth: int = 0) -> None:
    """Pick ``option`` in a select box: its whole text, or the part before a colon (a size preset's
    option goes on with its sizes and parameters)."""
    page.get_by_label(label, exact=True).nth(nth).click()
    page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}(:|$)")).click()
    settle(page)


def pick(page, label: str, option: str) -> None:
    """Click ``option`` of the radio buttons ``label``."""
    page.get_by_test_id("stRadio").filter(has_text=label).get_by_text(option, exact=True).click()
    settle(page)


def fill(page, label: str, value, nth: int = 0) -> None:
    box = page.get_by_label(label, exact=True).nth(nth)
    box.fill(str(value))
    box.press("Enter")
    settle(page)


def shot(page, name: str) -> None:
    """A screenshot of the whole page: the app scrolls inside its main element, so grow the viewport."""
    settle(page, 600)
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 40, 5000))})
    page.wait_for_timeout(400)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def expect(locator):
    """Playwright's auto-waiting assertion (imported lazily: the module skips without Playwright)."""
    return pytest.importorskip("playwright.sync_api").expect(locator)


def test_corpus_upload(page):
    page.get_by_role("heading", name="Corpus").wait_for()
    page.locator("input[type=file]").set_input_files(str(LYRICS))
    page.get_by_text("distinct characters").wait_for()
    expect(page.get_by_text("279,856").first).to_be_visible()
    expect(page.get_by_text("lyrics_public_domain.txt").first).to_be_visible()
    shot(page, "1-corpus")


def test_train_shows_live_chart(page):
    go(page, "Train")
    choose(page, "Size preset", "tiny")
    fill(page, "Sequence length", 64)
    fill(page, "Evaluate every (steps)", 10)
    pick(page, "Budget in", "steps")
    fill(page, "Budget (steps)", 40)
    page.get_by_role("button", name="Start").click()
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # drawn while training runs
    page.get_by_text("finished: reached the step budget").wait_for(timeout=120_000)
    page.get_by_text("Download the model (.zip)").wait_for()  # the page reran once at the end
    settle(page)
    chart = page.locator(".js-plotly-plot")
    assert chart.count() == 1
    traces = chart.evaluate("el => el.data.map(t => [t.name, t.x.length])")
    names = [name for name, _ in traces]
    assert "train loss" in names and "validation loss" in names and "best" in names, traces
    assert dict((n, k) for n, k in traces if n)["validation loss"] == 4, traces
    shot(page, "2-train")


def test_generate_streams_text(page):
    go(page, "Generate")
    page.get_by_role("button", name="Generate", exact=True).click()
    page.get_by_text("Download the text").wait_for()
    text = page.locator("[data-testid=stCode] code").first.inner_text()
    assert len(text) >= 60, text
    shot(page, "3-generate")


def test_compare_two_architectures(page):
    go(page, "Compare")
    for nth in (0, 1):
        choose(page, "Size", "tiny", nth)
    fill(page, "Steps each", 20)
    fill(page, "Sequence length", 64)
    fill(page, "Evaluate every", 10)
    page.get_by_role("button", name="Start comparison").click()
    page.get_by_role("heading", name="Samples side by side").wait_for(timeout=180_000)
    settle(page)
    page.get_by_test_id("stDataFrame").wait_for()
    charts = page.locator(".js-plotly-plot")
    assert charts.count() == 2
    names = charts.first.evaluate("el => el.data.filter(t => t.name).map(t => t.name)")
    assert names == ["gru-tiny-char", "lstm-tiny-char"], names
    page.get_by_role("button", name="Sample from each").click()
    page.locator("[data-testid=stCode]").nth(1).wait_for()
    settle(page)
    assert page.locator("[data-testid=stCode]").count() == 2
    shot(page, "4-compare")


def test_models_page(page):
    go(page, "Models")
    page.get_by_text("gru-tiny-char · trained here").first.wait_for()
    page.get_by_label("Repo id", exact=True).first.fill("nobody/nothing")
    page.get_by_role("button", name="Load", exact=True).click()
    expect(page.get_by_text("HF_HUB_OFFLINE")).to_be_visible()
    shot(page, "5-models")


def test_recipe_in_one_click(page):
    go(page, "Recipes")
    fill(page, "Minutes per run", 0.2)
    page.locator(".st-key-recipe_run_word-gru-paragraph button:visible").click()  # trains in seconds
    page.get_by_role("heading", name="Keras word-level GRU on one paragraph").wait_for()
    page.get_by_text("Samples from").wait_for(timeout=120_000)
    settle(page)
    names = page.locator(".js-plotly-plot").first.evaluate("el => el.data.filter(t => t.name).map(t => t.name)")
    assert "reference" in names and "reference (train)" in names, names
    expect(page.get_by_text("A model").first).to_be_visible()
    shot(page, "6-recipe")


def test_upload_limit(page, tmp_path_factory):
    """Just under the 50 MB limit is read; just over it is refused by the uploader, and the corpus
    the session had stays in use."""
    text = (ROOT.parent / "shared" / "data" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    folder = tmp_path_factory.mktemp("uploads")
    under, over = folder / "just-under.txt", folder / "just-over.txt"
    under.write_text((text * 50)[:49_000_000], encoding="utf-8")
    over.write_text((text * 50)[:53_000_000], encoding="utf-8")
    go(page, "Corpus")
    page.locator("input[type=file]").set_input_files(str(under))
    page.get_by_text("just-under.txt").first.wait_for(timeout=120_000)
    expect(page.get_by_text("49,000,000").first).to_be_visible(timeout=120_000)
    page.locator("input[type=file]").set_input_files(str(over))
    expect(page.get_by_text("or smaller").first).to_be_visible(timeout=60_000)
    settle(page)
    expect(page.get_by_text("49,000,000").first).to_be_visible()  # the corpus it had is still there
    shot(page, "7-upload-limit")
