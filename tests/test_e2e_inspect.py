"""The Inspect page in a real browser (Debian's Chromium driven by Playwright against `streamlit run`),
on the pretrained models: the surprise heat map with a token's tooltip, two models compared, the
next-token explorer, an LSTM's neurons, attention weights and a CNN's receptive field. A screenshot
of each view goes to test-output/e2e-inspect/."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from textgen_core.pretrained import pretrained_dir

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
PRETRAINED = pretrained_dir()   # the bundled models' folder the app itself would use
MODELS = ("shakespeare-char-lstm", "shakespeare-char-gru", "lyrics-char-attention", "lyrics-char-cnn")
SHOTS = ROOT / "test-output" / "e2e-inspect"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not all((PRETRAINED / name).is_dir() for name in MODELS),
                       reason=f"the pretrained models are not all in {PRETRAINED}"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-inspect")
    port = free_port()
    env = dict(os.environ, TEXTGEN_RUNS_DIR=str(tmp / "runs"), TEXTGEN_PRETRAINED_DIR=str(PRETRAINED),
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
        page.goto(server)
        page.get_by_test_id("stSidebar").get_by_role("link", name="Inspect", exact=True).click()
        page.get_by_role("heading", name="Inspect", exact=True).wait_for()
        settle(page)
        yield page
        browser.close()


def settle(page, ms: int = 300) -> None:
    """Wait until the app has finished its rerun (the 'running' indicator is gone)."""
    page.wait_for_timeout(ms)
    page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=60_000)


def choose(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).first.click()
    page.get_by_role("option", name=option, exact=True).click()
    settle(page)


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()
    settle(page)


def shot(page, name: str, hover=None) -> None:
    """A screenshot of the whole page (the app scrolls inside its main element, so grow the viewport);
    ``hover``: a locator to hover last, so that its tooltip is in the picture."""
    settle(page, 400)
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": 1400, "height": max(1000, min(int(height) + 40, 4000))})
    page.wait_for_timeout(300)
    if hover is not None:
        hover.hover()
        page.wait_for_timeout(200)
    page.screenshot(path=str(SHOTS / f"{name}.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})


def visible_maps(page):
    return page.locator(".tgi-map:visible")


def test_surprise_heat_map_and_a_tooltip(page):
    maps = visible_maps(page)
    maps.first.wait_for()
    token = maps.first.locator(".tgi-t").nth(40)
    tip = token.get_attribute("data-tip")
    assert "bits" in tip and "the model expected:" in tip
    # the tooltip is drawn by the page's style sheet (st.html keeps it)
    token.hover()
    content = token.evaluate("el => getComputedStyle(el, '::after').content")
    assert "the model expected:" in content
    shot(page, "1-surprise", hover=token)


def test_two_models_compared(page):
    choose(page, "Compare with", "shakespeare-char-gru · pretrained")
    page.get_by_text("Where one beats the other").wait_for()
    assert visible_maps(page).count() == 3
    shot(page, "2-compare")
    choose(page, "Compare with", "(none)")


def test_next_token_explorer(page):
    tab(page, "Next token")
    page.locator(".js-plotly-plot:visible").wait_for()   # the first token's bars, none marked
    page.get_by_role("button", name="Next 10").click()
    # The click's rerun can start after settle's first look (a loaded machine): wait for the redrawn
    # chart itself, where the sampled token's bar is marked red.
    page.wait_for_function("""() => [...document.querySelectorAll('.js-plotly-plot')]
        .some(el => el.offsetParent !== null && el.data && el.data[0].marker.color.includes('#d62728'))""")
    settle(page)
    shot(page, "3-next-token")


def test_lstm_neurons(page):
    tab(page, "Neurons")
    page.get_by_test_id("stDataFrame").wait_for()
    assert visible_maps(page).count() == 1
    shot(page, "4-neurons")


def test_attention_weights(page):
    choose(page, "Model", "lyrics-char-attention · pretrained")
    tab(page, "Attention")
    here = page.locator(".tgi-map:visible .tgi-here")
    here.wait_for()
    shot(page, "5-attention", hover=here)


def test_cnn_receptive_field(page):
    choose(page, "Model", "lyrics-char-cnn · pretrained")
    tab(page, "Receptive field")
    here = page.locator(".tgi-map:visible .tgi-here")
    here.wait_for()
    shot(page, "6-receptive-field")
