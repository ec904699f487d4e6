"""Shared fixtures: small real text, the shared corpora (tests skip when those are absent) and the
compiled CPU loops (skipped without a C++ compiler)."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

SMALL_TEXT = (
    "The quick brown fox jumps over the lazy dog.\n"
    "A stitch in time saves nine; the early bird catches the worm.\n"
    "All that glitters is not gold, and still waters run deep.\n"
) * 12


@pytest.fixture
def small_text() -> str:
    return SMALL_TEXT


def shared_corpus(name: str) -> Path:
    path = DATA_DIR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


@pytest.fixture(scope="session")
def native():
    """``native_step`` with its library built and loaded: the compiled sampling and GRU training loops."""
    from textgen_core import native_step

    if native_step.compiler() is None:
        pytest.skip("no C++ compiler on this machine: sampling and GRU training use the eager code")
    assert native_step.load(wait=True), native_step.reason()
    return native_step


@pytest.fixture(autouse=True)
def onednn_left_as_found():
    """oneDNN's switch is process-wide: a test (or the code it runs) that leaves it changed would
    change the kernels, numbers and memory of every later test. The one that does it fails here."""
    import torch

    before = torch.backends.mkldnn.enabled
    yield
    assert torch.backends.mkldnn.enabled == before, "this test left oneDNN switched " + (
        "off" if before else "on")
