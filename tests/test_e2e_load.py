"""Two browser sessions at once on one server (benchmarks/bench_load.py --quick): each sees only
its own run, the one-slot cap answers the second with its message, nobody sees an exception."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
LYRICS = ROOT.parent / "shared" / "data" / "lyrics_public_domain.txt"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium"),
    pytest.mark.skipif(not LYRICS.exists(), reason="../shared/data is not there"),
]


def test_two_sessions_are_isolated_and_the_cap_answers(tmp_path):
    pytest.importorskip("playwright.async_api")
    corpus = tmp_path / "lyrics-part.txt"   # a 40 KB slice keeps the uploads quick
    corpus.write_text(LYRICS.read_text(encoding="utf-8")[:40_000], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "benchmarks/bench_load.py", "--quick", "--steps", "10", "--timeout", "40",
         "--corpus", str(corpus)],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
        env=dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1")))
    lines = [line for line in done.stdout.splitlines() if line.startswith("JSON ")]
    assert len(lines) == 1, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(lines[0][5:])
    assert result["sessions"] == 2 and result["max_jobs"] == 1
    assert result["checks"] == {"all_sessions_done": True, "isolated": True, "no_exception": True,
                                "cap_message_seen": True}, done.stdout[-3000:]
    assert done.returncode == 0
    assert result["runs_per_session"] == [1, 1] and result["server_peak_rss_mb"] > 0
    assert all(len(row["own_models"]) == 1 and row["generated_chars"] > 0 for row in result["rows"])
