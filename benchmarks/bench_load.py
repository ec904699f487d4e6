"""Several browser sessions on one `streamlit run` server: isolation, the job cap, server memory.

    .venv/bin/python benchmarks/bench_load.py              # 4 sessions, TEXTGEN_MAX_JOBS=2
    .venv/bin/python benchmarks/bench_load.py --quick      # 2 sessions, 1 slot, the shortest runs

Every session is its own browser context in one headless Chromium (Playwright, /usr/bin/chromium):
it uploads the lyrics corpus, trains a tiny GRU for a few steps and generates text. All sessions
press Start together, so when more sessions train than the server has slots, the later ones get the
server's "machine is busy" message and press Start again once a second until a slot frees.

Checks: each session lists only its own trained model, no session shows an exception, the cap
message appears when sessions > slots, the server log holds no traceback. Records the server's
peak resident memory (psutil when installed, else /proc) and the wall time; exits 1 when a check
fails. Skips cleanly (exit 0, a JSON line with "skipped") without Chromium, Playwright or the corpus.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from common import ROOT, describe, emit, find_corpus, machine, table

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
BUSY = "the machine is busy"
FINISHED = "finished: reached the step budget"


@dataclass
class SessionResult:
    session: int
    busy_refusals: int = 0          # Start answered with the cap message
    upload_s: float = 0.0
    wait_s: float = 0.0             # from the common Start until a slot was granted
    train_s: float = 0.0            # from the granted Start until the run finished
    generate_s: float = 0.0
    own_models: list[str] = field(default_factory=list)   # "trained here" entries on Generate
    generated_chars: int = 0
    exceptions: int = 0
    error: str = ""


# --- the server and its memory -----------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp: Path, max_jobs: int) -> tuple[subprocess.Popen, str, Path]:
    port, log = free_port(), tmp / "server.log"
    env = dict(os.environ, TEXTGEN_RUNS_DIR=str(tmp / "runs"), TEXTGEN_PRETRAINED_DIR=str(tmp / "pretrained"),
               TEXTGEN_MAX_JOBS=str(max_jobs), HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port),
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return server, url, log
        except OSError:
            time.sleep(0.3)
    stop_server(server)
    raise RuntimeError(f"streamlit did not start: {log.read_text(errors='replace')[-2000:]}")


def stop_server(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(10)


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` now (0 when it is gone)."""
    try:
        import psutil
        return psutil.Process(pid).memory_info().rss
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess and friends
        return 0
    return _proc_status_kib(pid, "VmRSS") * 1024


def _proc_status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


class PeakRss:
    """Samples a process's resident memory in a thread; ``peak`` also counts the kernel's own
    high-water mark (VmHWM) where /proc has one."""

    def __init__(self, pid: int, every_s: float = 0.25) -> None:
        self.pid, self.every_s, self.peak = pid, every_s, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, _proc_status_kib(self.pid, "VmHWM") * 1024)

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            self.peak = max(self.peak, rss_bytes(self.pid))


# --- one browser session -----------------------------------------------------------------------
async def settle(page, ms: int = 300) -> None:
    """Wait until the app has finished its rerun (the 'running' indicator is gone)."""
    await page.wait_for_timeout(ms)
    await page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=120_000)


async def go(page, name: str) -> None:
    await page.get_by_test_id("stSidebar").get_by_role("link", name=name, exact=True).click()
    await page.get_by_role("heading", name=name, exact=True).wait_for()
    await settle(page)


async def fill(page, label: str, value) -> None:
    box = page.get_by_label(label, exact=True).first
    await box.fill(str(value))
    await box.press("Enter")
    await settle(page)


async def choose(page, label: str, option: str) -> None:
    """Pick ``option`` of a select box: its name, or its name before a colon ("tiny: 128 hidden ...")."""
    await page.get_by_label(label, exact=True).first.click()
    await page.get_by_role("option", name=re.compile(rf"^{re.escape(option)}(:|$)")).click()
    await settle(page)


async def pick(page, label: str, option: str) -> None:
    """Click ``option`` of the radio buttons ``label``."""
    await page.get_by_test_id("stRadio").filter(has_text=label).get_by_text(option, exact=True).click()
    await settle(page)


async def start_training(page, result: SessionResult) -> None:
    """Press Start until the server grants a slot (its cap message means: try again later).

    The progress bar is the sign of a granted start: a refused session has none. Start is never
    pressed while it is disabled (a granted run is going), so a session starts exactly one run.
    """
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    started = time.perf_counter()
    start, progress = page.get_by_role("button", name="Start"), page.locator("[data-testid=stProgress]")
    while not await progress.count() and await start.is_enabled():
        try:
            await start.click(timeout=2000)
            await progress.first.wait_for(timeout=5000)
        except PlaywrightTimeout:
            if await page.get_by_text(BUSY).count():
                result.busy_refusals += 1
                await page.wait_for_timeout(1000)
    result.wait_s = time.perf_counter() - started


async def models_listed(page) -> list[str]:
    """The Generate page's model choices, read from the open drop-down."""
    await page.get_by_label("Model", exact=True).first.click()
    options = await page.get_by_role("option").all_inner_texts()
    await page.keyboard.press("Escape")
    return [o.strip() for o in options]


async def session(index: int, browser, url: str, corpus: Path, steps: int, start_together,
                  timeout_s: float) -> SessionResult:
    result = SessionResult(index)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(60_000)
    try:
        clock = time.perf_counter()
        await page.goto(f"{url}/corpus")
        await page.get_by_role("heading", name="Corpus").wait_for()
        await page.locator("input[type=file]").set_input_files(str(corpus))
        await page.get_by_text("distinct characters").wait_for()
        result.upload_s = time.perf_counter() - clock
        await go(page, "Train")
        await choose(page, "Size preset", "tiny")
        await fill(page, "Sequence length", 64)
        await fill(page, "Evaluate every (steps)", 10)
        await fill(page, "Patience (evaluations)", 0)
        await pick(page, "Budget in", "steps")
        await fill(page, "Budget (steps)", steps)
        await start_together.wait()
        await start_training(page, result)
        clock = time.perf_counter()
        await page.get_by_text(FINISHED).wait_for(timeout=timeout_s * 1000)
        await page.get_by_text("Download the model (.zip)").wait_for()
        result.train_s = time.perf_counter() - clock
        result.exceptions += await page.get_by_test_id("stException").count()
        await go(page, "Generate")
        result.own_models = [m for m in await models_listed(page) if "trained here" in m]
        clock = time.perf_counter()
        await page.get_by_role("button", name="Generate", exact=True).click()
        await page.get_by_text("Download the text").wait_for()
        result.generate_s = time.perf_counter() - clock
        result.generated_chars = len(await page.locator("[data-testid=stCode] code").first.inner_text())
        result.exceptions += await page.get_by_test_id("stException").count()
    except Exception as exc:  # one failed session is reported, the others go on
        result.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        start_together.abort()
    finally:
        await context.close()
    return result


async def drive(url: str, corpus: Path, sessions: int, steps: int, timeout_s: float) -> list[SessionResult]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            together = asyncio.Barrier(sessions)
            return list(await asyncio.gather(*(session(i + 1, browser, url, corpus, steps, together, timeout_s)
                                               for i in range(sessions))))
        finally:
            await browser.close()


# --- checks and report -------------------------------------------------------------------------
def runs_per_owner(runs: Path) -> list[int]:
    """How many model folders each session (one folder per owner) wrote."""
    from textgen_core.workspace import Workspace
    return sorted(len(Workspace(owner).runs()) for owner in runs.iterdir() if owner.is_dir()) \
        if runs.is_dir() else []


def check(results: list[SessionResult], sessions: int, max_jobs: int, log_text: str,
          runs: list[int]) -> dict[str, bool]:
    return {
        "all_sessions_done": all(not r.error and r.generated_chars > 0 for r in results),
        "isolated": all(len(r.own_models) == 1 for r in results) and runs == [1] * sessions,
        "no_exception": all(r.exceptions == 0 for r in results) and "Traceback" not in log_text,
        "cap_message_seen": sum(r.busy_refusals for r in results) > 0 if sessions > max_jobs else True,
    }


def skip(reason: str, quick: bool) -> None:
    print(f"skipped: {reason}")
    emit("load", {"skipped": reason, "quick": quick})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, help="concurrent browser sessions (default 4; --quick 2)")
    parser.add_argument("--max-jobs", type=int, help="the server's TEXTGEN_MAX_JOBS (default 2; --quick 1)")
    parser.add_argument("--steps", type=int, help="training steps per session (default 60; --quick 20)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a session may wait for its run")
    parser.add_argument("--corpus", type=Path, help="the text each session uploads (default: the lyrics corpus)")
    parser.add_argument("--quick", action="store_true", help="2 sessions, 1 slot, 20 steps")
    args = parser.parse_args(argv)
    sessions = args.sessions or (2 if args.quick else 4)
    max_jobs = args.max_jobs or (1 if args.quick else 2)
    steps = args.steps or (20 if args.quick else 60)

    corpus = args.corpus or find_corpus("lyrics_public_domain.txt")
    if corpus is None or not corpus.is_file():
        skip(f"the corpus ({corpus or '../shared/data/lyrics_public_domain.txt'}) is absent", args.quick)
        return 0
    if not CHROMIUM.exists():
        skip(f"no Chromium at {CHROMIUM}", args.quick)
        return 0
    try:
        import playwright  # noqa: F401
    except ImportError:
        skip("Playwright is not installed", args.quick)
        return 0

    info = machine()
    print(describe(info))
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        wall = time.perf_counter()
        server, url, log = start_server(Path(tmp), max_jobs)
        startup_s = time.perf_counter() - wall
        try:
            with PeakRss(server.pid) as rss:
                results = asyncio.run(drive(url, corpus, sessions, steps, args.timeout))
        finally:
            stop_server(server)
        wall_s = time.perf_counter() - wall
        log_text = log.read_text(errors="replace")
        runs = runs_per_owner(Path(tmp) / "runs")

    checks = check(results, sessions, max_jobs, log_text, runs)
    print(f"\n{sessions} sessions, {max_jobs} training slot(s), {steps} steps each, corpus {corpus.name}\n")
    print(table(["session", "busy refusals", "upload s", "wait s", "train s", "generate s", "own models",
                 "exceptions", "error"],
                [[r.session, r.busy_refusals, r.upload_s, r.wait_s, r.train_s, r.generate_s, len(r.own_models),
                  r.exceptions, r.error or "-"] for r in results]))
    print(f"\nserver peak RSS {rss.peak / 2**20:,.0f} MB · wall {wall_s:.1f} s (server start {startup_s:.1f} s)")
    print("checks: " + ", ".join(f"{name} {'ok' if ok else 'FAILED'}" for name, ok in checks.items()))
    if "Traceback" in log_text:
        print(log_text[-3000:])
    emit("load", {"quick": args.quick, "machine": info, "sessions": sessions, "max_jobs": max_jobs,
                  "steps": steps, "server_peak_rss_mb": round(rss.peak / 2**20, 1), "wall_s": round(wall_s, 2),
                  "server_start_s": round(startup_s, 2), "runs_per_session": runs, "checks": checks,
                  "ok": all(checks.values()), "rows": [asdict(r) for r in results]})
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
