"""Workspaces in a real browser (Playwright + Debian's Chromium against `streamlit run`): a reload during
training finds the same job with every point so far and Stop still works; another browser gets another
workspace and reaches none of the first's runs; the first's address shows its runs anywhere; and a
server killed during a training lists the run as interrupted at its last checkpoint, whose resume on
the Runs page ends at exactly the validation loss of the same training without the kill."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from test_e2e_app import ARGS, CHROMIUM, LYRICS, choose, expect, fill, free_port, go, pick, settle

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "e2e-workspace"
WORKSPACE = re.compile(r"[?&]w=([0-9a-f]{32})")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not LYRICS.exists(), reason="../shared/data is not there"),
]


def start_server(runs: Path, log: Path, **settings: str) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free port with its runs under ``runs`` (``settings``: more environment
    variables, or other values of these); waits until it answers."""
    port = free_port()
    env = {**os.environ, "TEXTGEN_RUNS_DIR": str(runs), "TEXTGEN_PRETRAINED_DIR": str(runs.parent / "pretrained"),
           "HF_HUB_OFFLINE": "1", "OMP_WAIT_POLICY": "PASSIVE", **settings}
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port)],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return process, url
        except OSError:
            time.sleep(0.25)
    process.kill()
    pytest.fail(f"streamlit did not start: {log.read_text(errors='replace')[-2000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "lyrics-part.txt"   # a 40 KB slice keeps uploads quick
    path.write_text(LYRICS.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


def new_page(browser):
    """A page in a fresh browser context: no cookies, no storage, a session of its own."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    page.set_default_timeout(30_000)
    return page


def workspace_of(page) -> str:
    page.wait_for_url(WORKSPACE)
    return WORKSPACE.search(page.url).group(1)


def upload_and_set_up_training(page, url: str, corpus: Path, steps: int, every: int) -> str:
    """Open the app, upload ``corpus``, set a tiny model's training on the Train page; its workspace id."""
    page.goto(f"{url}/corpus")
    page.get_by_role("heading", name="Corpus").wait_for()
    workspace = workspace_of(page)
    page.locator("input[type=file]").set_input_files(str(corpus))
    page.get_by_text("distinct characters").wait_for()
    go(page, "Train")
    assert workspace_of(page) == workspace   # a page switch keeps the workspace in the address
    choose(page, "Size preset", "tiny")
    fill(page, "Sequence length", 64)
    fill(page, "Evaluate every (steps)", every)
    pick(page, "Budget in", "steps")
    fill(page, "Budget (steps)", steps)
    return workspace


def validation_steps(page) -> list[int]:
    """The steps of the live chart's validation points. While the chart is redrawn (a new point) its
    element can be there without its data for a moment: wait for the data."""
    found = page.wait_for_function("() => { const el = document.querySelector('.js-plotly-plot');"
                                   "const t = el && el.data && el.data.find(t => t.name === 'validation loss');"
                                   "return t ? Array.from(t.x) : null; }")
    return found.json_value()


def shown_step(page) -> int:
    text = page.locator("[data-testid=stProgress]").last.inner_text()
    return int(re.search(r"step ([\d,]+)", text).group(1).replace(",", ""))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-workspace")
    process, url = start_server(tmp / "runs", tmp / "server.log")
    try:
        yield url, tmp / "runs"
    finally:
        stop_server(process)
        log_text = (tmp / "server.log").read_text(errors="replace")
        assert "Traceback" not in log_text, log_text[-3000:]


def test_reload_during_training_then_other_workspaces(server, browser, corpus):
    url, runs = server
    page = new_page(browser)
    workspace = upload_and_set_up_training(page, url, corpus, steps=100_000, every=10)
    page.get_by_role("button", name="Start").click()
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')].some(el => (el.data || [])"
                           ".some(t => t.name === 'validation loss' && t.x.length >= 2))", timeout=60_000)
    page.wait_for_timeout(random.uniform(500, 4000))   # reload at a random step
    before, step_before = validation_steps(page), shown_step(page)
    page.reload()
    page.get_by_role("heading", name="Train").wait_for()
    assert workspace_of(page) == workspace
    page.get_by_role("button", name="Stop").wait_for()
    page.wait_for_function("n => { const el = document.querySelector('.js-plotly-plot');"
                           "const t = el && el.data && el.data.find(t => t.name === 'validation loss');"
                           "return t && t.x.length >= n; }", arg=len(before), timeout=30_000)
    after, step_after = validation_steps(page), shown_step(page)
    assert after[:len(before)] == before and step_after >= step_before, (before, after)
    settle(page)
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("stopped by request").first.wait_for(timeout=60_000)
    settle(page)
    page.screenshot(path=str(SHOTS / "1-train-after-reload.png"))
    (folder,) = [p for p in (runs / workspace).iterdir() if p.is_dir() and p.name not in ("corpora", "generations")]

    other = new_page(browser)   # another browser: another workspace, none of the first's runs
    other.goto(url)
    other.get_by_role("heading", name="Welcome").wait_for()
    assert workspace_of(other) != workspace
    go(other, "Runs")
    expect(other.get_by_text("No runs in this workspace yet")).to_be_visible()
    go(other, "Generate")
    expect(other.get_by_text("No model yet")).to_be_visible()
    refused = re.compile("is not a Hub repo id|HF_HUB_OFFLINE")
    for attempt in (str(folder), f"{workspace}/{folder.name}"):   # no box takes a server path
        other.get_by_label("Repo id", exact=True).first.fill(attempt)
        other.get_by_role("button", name="Load", exact=True).click()
        settle(other)
        expect(other.get_by_text(refused).first).to_be_visible()
        expect(other.get_by_text("No model yet")).to_be_visible()

    again = new_page(browser)   # the first workspace's address, in yet another browser
    again.goto(f"{url}/runs?w={workspace}")
    again.get_by_role("heading", name="Runs").wait_for()
    expect(again.get_by_text("stopped by request").first).to_be_visible()
    assert workspace_of(again) == workspace
    again.get_by_test_id("stDataFrame").wait_for()
    settle(again)
    again.screenshot(path=str(SHOTS / "2-runs-of-the-first-workspace.png"))


def test_a_killed_server_leaves_an_interrupted_run_that_resumes_to_the_same_loss(browser, corpus, tmp_path):
    from textgen_core import read_text, train_model
    from textgen_core.checkpoint import read_state
    from textgen_core.runs import settings_for_resume
    from textgen_core.training import TrainConfig

    runs, log = tmp_path / "runs", tmp_path / "server.log"
    process, url = start_server(runs, log)
    try:
        page = new_page(browser)
        workspace = upload_and_set_up_training(page, url, corpus, steps=200, every=40)
        page.get_by_role("button", name="Start").click()
        deadline = time.monotonic() + 60
        while not list((runs / workspace).glob("*/checkpoint/latest.json")):
            assert time.monotonic() < deadline, "no checkpoint within a minute"
            time.sleep(0.01)
        process.send_signal(signal.SIGSTOP)   # frozen between evaluations: the kill lands mid-run
        process.kill()
        process.wait(10)
    finally:
        process.kill()
    (latest,) = (runs / workspace).glob("*/checkpoint/latest.json")
    folder = latest.parent.parent
    state = read_state(folder / "checkpoint")
    assert 0 < state["step"] < 200
    saved = state["train_config"]   # what the page asked for
    assert (saved["max_steps"], saved["eval_every"], saved["seq_len"], saved["device"]) == (200, 40, 64, "cpu")
    settings = settings_for_resume(folder, train=TrainConfig(**saved))
    reference = {}   # the same training without the kill, here, while the server resumes its copy
    worker = threading.Thread(target=lambda: reference.update(loss=train_model(
        read_text(corpus.read_bytes(), corpus.name), settings, tmp_path / "reference").history.end.best_val_loss))
    worker.start()

    process, url = start_server(runs, log)
    try:
        page.goto(f"{url}/runs?w={workspace}")
        page.get_by_role("heading", name="Runs").wait_for()
        page.get_by_text(f"was interrupted at step {state['step']}:").wait_for()
        page.get_by_test_id("stDataFrame").wait_for()
        settle(page)
        page.screenshot(path=str(SHOTS / "3-interrupted.png"))
        page.get_by_role("button", name="Resume").click()
        page.get_by_text("finished: reached the step budget (200 steps)").wait_for(timeout=120_000)
        settle(page)
        page.screenshot(path=str(SHOTS / "4-resumed.png"))
    finally:
        stop_server(process)
        worker.join(120)
    resumed = json.loads((folder / "run.json").read_text())
    assert resumed["steps"] == 200 and "loss" in reference
    assert resumed["best_val_loss"] == reference["loss"]   # exactly the uninterrupted run's
    assert "Traceback" not in log.read_text(errors="replace")
