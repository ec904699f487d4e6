"""Shared helpers for the benchmark scripts: machine description, interleaved timing, output.

Every script prints a human-readable table and then exactly one line starting with ``JSON `` that
holds the machine-readable result (``json.loads(line[5:])``).
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python benchmarks/x.py` from anywhere
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from textgen_core.devices import cpu_name, cpu_summary  # noqa: E402

SHARED_DATA = ROOT.parent / "shared" / "data"
LOCAL_DATA = ROOT / ".data"   # git-ignored copy for machines without ../shared (e.g. the GPU box)


def find_corpus(name: str = "tinyshakespeare.txt") -> Path | None:
    """The shared corpus, or a local copy under benchmarks/data/, or None."""
    for folder in (SHARED_DATA, LOCAL_DATA):
        if (folder / name).is_file():
            return folder / name
    return None


def machine() -> dict:
    """What the numbers were measured on."""
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": cpu_name(),
        "cpu_flags": cpu_summary(),   # the CPU's name and the flags that decide its kernels
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def describe(info: dict) -> str:
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (f"machine: {info.get('cpu_flags') or info['cpu']}, {info['cpu_count']} cores, torch threads "
            f"{info['torch_threads']}, "
            f"torch {info['torch']}, python {info['python']}{gpu}; load average {info['load_avg']}")


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleave(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each run ``repeats`` times, alternating the order (A B, B A, ...) so that a shared,
    changing machine load falls on every variant alike. Returns the values per run name."""
    names = list(runs)
    values: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeats):
        for name in (names if rep % 2 == 0 else names[::-1]):
            values[name].append(runs[name]())
    return values


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Pairwise ratios of runs made next to each other."""
    return [a / b for a, b in zip(numerators, denominators)]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (of 2**20 bytes). The kernel's VmHWM, which
    starts afresh with the program: getrusage's ru_maxrss would also count what the parent process
    held when it started this one (fork copies it before exec)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    """A GitHub-flavoured Markdown table (pastes straight into BENCHMARKS.md)."""
    def cell(value) -> str:
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"
        return str(value)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def emit(name: str, result: dict) -> None:
    """The one machine-readable line every benchmark ends with."""
    print("JSON " + json.dumps({"benchmark": name, **result}, default=float), flush=True)


class Timer:
    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = device

    def __enter__(self) -> "Timer":
        sync(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        sync(self.device)
        self.seconds = time.perf_counter() - self.start
