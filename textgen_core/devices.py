"""What a device can do, decided in one place for the CLI, the app, the defaults and the benchmarks.

The project's CPU machines differ: some have AVX512-BF16 (or AMX) units, some only AVX2. On a CPU
without bf16 units, bf16 autocast is emulated (slower than fp32) and oneDNN cannot even build an
LSTM in bf16 ("could not create a primitive descriptor"), so bf16 is offered and accepted only
where the device computes it natively.
"""
from __future__ import annotations

import contextlib
import os
import platform
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import cast

import torch

from .errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16")
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
# The flags worth naming beside a CPU figure: what decides which kernels run.
NOTABLE_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> tuple[str, ...]:
    """The CPU's feature flags as /proc/cpuinfo lists them (empty where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ()
    line = next((line for line in text.splitlines() if line.startswith(("flags", "Features"))), "")
    return tuple(line.split(":", 1)[1].split()) if ":" in line else ()


# oneDNN's instruction sets from the lowest, as its ONEDNN_MAX_CPU_ISA names them, and the first of
# them that lets it use a CPU flag: a process held below that (to see how an AVX2-only CPU behaves)
# computes as if the flag were absent. bf16 held off is emulated, and an LSTM in bf16 fails outright.
ONEDNN_ISAS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI",
               "AVX512_CORE_BF16", "AVX10_1_512", "AVX512_CORE_FP16", "AVX10_1_512_AMX",
               "AVX512_CORE_AMX", "AVX10_1_512_AMX_FP16", "AVX512_CORE_AMX_FP16")
FLAG_NEEDS_ISA = (("avx512_bf16", "AVX512_CORE_BF16"), ("avx512_vnni", "AVX512_CORE_VNNI"),
                  ("avx512", "AVX512_CORE"), ("amx", "AVX10_1_512_AMX"))   # flag prefixes, most specific first


# The variables that hold the libraries to a lower instruction set, named beside a CPU figure taken so.
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is held to by ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA), None when
    it may use all the CPU has."""
    value = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").strip().upper()
    return value if value in ONEDNN_ISAS else None


def _isa_needed(flag: str) -> str | None:
    return next((isa for prefix, isa in FLAG_NEEDS_ISA if flag.startswith(prefix)), None)


def usable_cpu_flags() -> tuple[str, ...]:
    """The CPU's flags the kernels may use: all of ``cpu_flags()`` unless ONEDNN_MAX_CPU_ISA holds
    oneDNN below some of them (AVX512, its bf16 dot products, AMX tiles)."""
    cap = onednn_isa_cap()
    if cap is None:
        return cpu_flags()
    return tuple(flag for flag in cpu_flags()
                 if (needs := _isa_needed(flag)) is None or ONEDNN_ISAS.index(cap) >= ONEDNN_ISAS.index(needs))


def cpu_prefers_avx2_products() -> bool:
    """Whether the GRU training loop makes its step products with its own AVX2 kernels
    (``native/avx2_gemm.cpp``) rather than MKL's: on a CPU with AVX2 and FMA but without AVX-512, where
    MKL's ran a GRU 1024's step products at 49-59 GFLOP/s on one core of an AMD EPYC and these at 67-73.
    With AVX-512 (and not held below it), MKL's kernels use it and stay."""
    flags = usable_cpu_flags()
    return "avx2" in flags and "fma" in flags and not any(flag.startswith("avx512") for flag in flags)


@lru_cache(maxsize=1)
def physical_cores() -> int:
    """The physical cores this process may run on: logical CPUs that are one core's hyperthreads count
    once (from /sys topology; every logical CPU where that cannot be read)."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text().strip(),
                       (topology / "core_id").read_text().strip()))
        except OSError:
            return len(cpus)
    return max(1, len(cores))


@lru_cache(maxsize=1)
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_summary() -> str:
    """The CPU's name and its notable flags, e.g. "AMD EPYC 9B14 (avx2 fma avx512f avx512_bf16)"."""
    flags = [flag for flag in NOTABLE_CPU_FLAGS if flag in usable_cpu_flags()]
    caps = [f"{name}={os.environ[name]}" for name in ISA_CAP_VARIABLES if os.environ.get(name)]
    held = f", held to {' '.join(caps)}" if caps else ""
    return f"{cpu_name()} ({' '.join(flags) or 'no AVX2'}{held})"


def bf16_held_back() -> bool:
    """True when the CPU has bf16 units but oneDNN is held below them (ONEDNN_MAX_CPU_ISA)."""
    return any(flag in cpu_flags() for flag in BF16_CPU_FLAGS) and not cpu_has_native_bf16()


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX) and oneDNN may use it."""
    return any(flag in usable_cpu_flags() for flag in BF16_CPU_FLAGS)


def bf16_supported(device: str | torch.device) -> bool:
    """Whether bf16 autocast runs (and pays) on ``device`` ("cpu" or "cuda")."""
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kind == "cpu" and cpu_has_native_bf16()


def precision_options(device: str | torch.device) -> tuple[str, ...]:
    """The precisions a user may choose for ``device``."""
    return PRECISIONS if bf16_supported(device) else ("auto", "fp32")


def resolve_precision(requested: str, device: str | torch.device) -> str:
    """The precision a run on ``device`` uses: "auto" is bf16 on a GPU that has it, else fp32; an
    explicit "bf16" where the device has no bf16 units is refused with what to use instead."""
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be auto, fp32 or bf16 (got {requested!r})")
    kind = torch.device(device).type
    if requested == "auto":
        return "bf16" if kind == "cuda" and bf16_supported(device) else "fp32"
    if requested == "bf16" and not bf16_supported(device):
        where = ("this GPU has no bf16 support" if kind == "cuda" else
                 f"oneDNN is held below this CPU's bf16 units ({cpu_summary()})" if bf16_held_back() else
                 f"this CPU has no bf16 units (it needs AVX512-BF16 or AMX; this one is {cpu_summary()})")
        raise ConfigError(f"bf16 precision is not available here: {where}; use precision fp32 or auto")
    return requested


# oneDNN's switch is one flag for the whole process. Blocks that turn it off in several threads at
# once (samplers of several sessions of one app server) share it: the first to enter turns it off,
# the last to leave sets back what the first found. torch.backends.mkldnn.flags saves and restores
# per block, so two overlapping blocks in two threads could leave it off for good (and a training
# started afterwards then ran other kernels, with other numbers, than the same training elsewhere).
_onednn_lock = threading.Lock()
_onednn_off_blocks = 0
_onednn_found = True


@contextlib.contextmanager
def onednn_off() -> Iterator[None]:
    """oneDNN off within the block, safe to overlap across threads."""
    global _onednn_off_blocks, _onednn_found
    with _onednn_lock:
        if _onednn_off_blocks == 0:
            _onednn_found = cast(bool, torch.backends.mkldnn.enabled)   # torch annotates it as a ContextProp
            torch.backends.mkldnn.enabled = False  # type: ignore[assignment]
        _onednn_off_blocks += 1
    try:
        yield
    finally:
        with _onednn_lock:
            _onednn_off_blocks -= 1
            if _onednn_off_blocks == 0:
                torch.backends.mkldnn.enabled = _onednn_found  # type: ignore[assignment]
