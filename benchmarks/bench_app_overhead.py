"""How much the live Train page slows training: the same run from the CLI and from the app.

The app run is driven by Chromium (Playwright) with the Train page left open, so the live chart
polls every 2 s for the whole run, as a user would see it. Runs alternate CLI, app, CLI, app, ...
and the training time each one reports in its run.json is compared (it covers the training loop,
evaluations and, for the app, the preview samples; not the tokenizer fit or the final save).

    .venv/bin/python benchmarks/bench_app_overhead.py --steps 300 --repeats 3 --closed-page

``--closed-page`` adds a third run per repeat whose page is closed once training has started: the
job runs on in the server, which separates the open page's cost from the server's.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, find_corpus, machine

from textgen_core import TrainConfig, read_text
from textgen_core.defaults import propose_settings

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")  # the app sets the same policy


def cli_run(corpus: Path, out: Path, steps: int) -> float:
    # what the Train page proposes for this corpus on the CPU (its patience is set to 0 there, see app_run)
    best = propose_settings(read_text(corpus.read_bytes(), corpus.name).stats.chars, "cpu").settings
    subprocess.run([sys.executable, "-m", "textgen_core", "train", str(corpus), "--out", str(out),
                    "--model", best["arch"], "--preset", best["preset"], "--dropout", str(best["dropout"]),
                    "--batch-size", str(best["batch_size"]), "--seq-len", str(best["seq_len"]),
                    "--weight-decay", str(best.get("weight_decay", TrainConfig.weight_decay)),
                    "--lr", str(best["lr"]), "--precision", best["precision"], "--max-steps", str(steps),
                    "--eval-every", str(best["eval_every"]), "--device", "cpu",
                    *(["--cpu-threads", str(best["cpu_threads"])] if best.get("cpu_threads") else [])],
                   cwd=ROOT, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((out / "run.json").read_text())["elapsed_s"]


def start_server(runs: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(ENV, TEXTGEN_RUNS_DIR=str(runs), TEXTGEN_PRETRAINED_DIR=str(runs / "none"))
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
                               "--server.address", "127.0.0.1", "--server.port", str(port)],
                              cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            return server, url
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("streamlit did not start")


def app_run(browser, url: str, corpus: Path, runs: Path, steps: int, keep_open: bool = True) -> float:
    """Training seconds of one app run; ``keep_open=False`` closes the page once training has started
    (the job runs on in the server), which separates the cost of the open page from the server's."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(f"{url}/corpus")  # a new session each time
    page.locator("input[type=file]").set_input_files(str(corpus))
    page.get_by_text("distinct characters").wait_for()
    page.get_by_test_id("stSidebar").get_by_role("link", name="Train", exact=True).click()
    page.get_by_role("heading", name="Train", exact=True).wait_for()
    page.get_by_test_id("stRadio").filter(has_text="Budget in").get_by_text("steps", exact=True).click()
    for label, value in (("Patience (evaluations)", 0), ("Budget (steps)", steps)):   # the same run as the CLI's
        box = page.get_by_label(label, exact=True)
        box.fill(str(value))
        box.press("Enter")
        page.wait_for_timeout(1000)
    before = set(runs.glob("*/*/run.json"))
    page.get_by_role("button", name="Start").click()
    if keep_open:
        page.get_by_text("finished: reached the step budget").wait_for(timeout=3_600_000)
        page.close()
    else:
        page.get_by_text("tokens/s").first.wait_for()
        page.close()
        while not set(runs.glob("*/*/run.json")) - before:
            time.sleep(0.5)
        time.sleep(0.5)  # the file is written atomically; this only spaces the next run
    (new,) = set(runs.glob("*/*/run.json")) - before
    return json.loads(new.read_text())["elapsed_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--corpus", default="lyrics_public_domain.txt")
    parser.add_argument("--closed-page", action="store_true",
                        help="also time app runs whose page is closed once training has started")
    args = parser.parse_args()
    corpus = find_corpus(args.corpus)
    if corpus is None or not Path(CHROMIUM).exists():
        sys.exit("needs ../shared/data and /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    tmp = Path(tempfile.mkdtemp(prefix="app-overhead-"))
    server, url = start_server(tmp / "runs")
    cli, app, closed = [], [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            for i in range(args.repeats):
                cli.append(cli_run(corpus, tmp / f"cli-{i}", args.steps))
                app.append(app_run(browser, url, corpus, tmp / "runs", args.steps))
                if args.closed_page:
                    closed.append(app_run(browser, url, corpus, tmp / "runs", args.steps, keep_open=False))
                print(f"repeat {i + 1}: CLI {cli[-1]:.1f} s, app {app[-1]:.1f} s"
                      + (f", app with the page closed {closed[-1]:.1f} s" if closed else ""), flush=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
    best = propose_settings(read_text(corpus.read_bytes(), corpus.name).stats.chars, "cpu").settings
    tokens = args.steps * best["batch_size"] * best["seq_len"]
    result = {
        "benchmark": "app_overhead", "machine": machine(), "steps": args.steps, "settings": best,
        "cli_s": cli, "app_s": app, "cli_tokens_per_s": tokens / statistics.median(cli),
        "app_tokens_per_s": tokens / statistics.median(app),
        "slowdown": statistics.median(app) / statistics.median(cli) - 1,
    }
    if closed:
        result.update(closed_s=closed, closed_slowdown=statistics.median(closed) / statistics.median(cli) - 1)
        print(f"median with the page closed: {statistics.median(closed):.1f} s: {result['closed_slowdown']:+.1%}")
    print(f"median training time: CLI {statistics.median(cli):.1f} s, app (Train page open) "
          f"{statistics.median(app):.1f} s: {result['slowdown']:+.1%}")
    print("JSON " + json.dumps(result))


if __name__ == "__main__":
    main()
