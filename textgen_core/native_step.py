"""The CPU loops compiled: ``native/rnn_sampler.cpp`` (batch-1 GRU/LSTM sampling) and
``native/gru_train.cpp`` (the GRU layer's training loop, ``gru_layer.py``, with the AVX2 products of
``native/avx2_gemm.cpp``), one library built once per machine.

``fused_step.FusedRnnStep`` already makes a step few, large ops; what is left at batch 1 is the Python
between them (about 30 ATen calls a step, each a few microseconds of interpreter). The C++ loop calls
the same ATen kernels on the same buffers (past the dispatcher), the matrix products as the BLAS call
ATen's addmm makes where that gives addmm's bits (checked when a sampler is set up), and the cells'
elementwise sums and products and the draw's divisions and argmax as plain loops that give ATen's
results, so its ids are the eager loop's for the same seed, bit for bit (``tests/test_native_step.py``);
it runs chunks of ``CHUNK`` tokens per call.

Where a C++ compiler is present, the library is compiled against the installed torch (about 40 s on
one core) into ``TEXTGEN_NATIVE_DIR`` (default ``~/.cache/textgen/native``), named by a digest of the
sources, the flags, the torch version and the compiler, so a new torch or a changed source builds
anew. ``make install`` builds it; otherwise the first batch-1 sampling or GRU training on the CPU
starts the build in a detached, low-priority process and uses the eager code meanwhile. Without a
compiler, or with ``TEXTGEN_NATIVE=0``, the eager code is used: the same text, the same training to
float rounding, somewhat slower.

    python -m textgen_core.native_step        # build now (or say why not), print the library's path
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Optional

import torch

# the batch-1 sampling loop, and the GRU layer's training loop (gru_layer.py) with its AVX2 products: one library
SOURCES = tuple(Path(__file__).with_name("native") / name
                for name in ("rnn_sampler.cpp", "gru_train.cpp", "avx2_gemm.cpp"))
DIR_ENV, SWITCH_ENV = "TEXTGEN_NATIVE_DIR", "TEXTGEN_NATIVE"
CHUNK = 32               # tokens per call into the loop: about 5 ms of a 2x256 LSTM on one core
BUILD_TIMEOUT_S = 300
# -O3: the GRU training loop's gate passes and the sampler's cells are plain loops for the compiler to
# vectorize; -ffp-contract=off: no product and sum fused into one rounding, so they round as ATen's ops
# -fopenmp where torch runs its threads with OpenMP: the GRU loop's gate passes split the batch between
# them (at::parallel_for); the library then uses torch's own OpenMP runtime, which it loads first
FLAGS = ("-O3", "-ffp-contract=off", "-std=c++20", "-shared", "-fPIC", "-w",
         *(("-fopenmp",) if torch.backends.openmp.is_available() else ()))

_lock = threading.Lock()
_loaded: Optional[bool] = None        # None: not tried in this process; True/False: the outcome
_background_started = False
_reason = ""


def enabled() -> bool:
    """False when TEXTGEN_NATIVE is 0, off, false or no."""
    return os.environ.get(SWITCH_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def build_dir() -> Path:
    return Path(os.environ.get(DIR_ENV) or Path.home() / ".cache" / "textgen" / "native")


def compiler() -> Optional[str]:
    """The C++ compiler to build with: $CXX, else c++ or g++ on the PATH (None: none found)."""
    for name in (os.environ.get("CXX"), "c++", "g++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@functools.lru_cache(maxsize=8)
def _compiler_version(cxx: str) -> str:
    try:
        return subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=1)
def _source_bytes() -> bytes:
    return b"".join(source.read_bytes() for source in SOURCES)


def library_path(cxx: Optional[str] = None) -> Optional[Path]:
    """Where the library for this source, torch and compiler lives (None without a compiler)."""
    cxx = cxx or compiler()
    if cxx is None:
        return None
    digest = hashlib.sha256(_source_bytes())
    for part in (torch.__version__, str(torch._C._GLIBCXX_USE_CXX11_ABI), _compiler_version(cxx), *FLAGS):
        digest.update(part.encode())
    return build_dir() / f"rnn_sampler-{digest.hexdigest()[:16]}.so"


def _command(cxx: str, output: Path) -> list[str]:
    from torch.utils.cpp_extension import include_paths, library_paths

    torch_lib = library_paths()[0]
    return [cxx, *FLAGS,
            f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}",
            *[f"-I{path}" for path in include_paths()], *map(str, SOURCES), f"-L{torch_lib}",
            f"-Wl,-rpath,{torch_lib}", "-ltorch_cpu", "-lc10", "-o", str(output)]


def build() -> Path:
    """Compile the library unless it is there; its path. Raises RuntimeError saying why it cannot.

    One build at a time per folder (a lock file); the compiler writes a temporary file that is renamed
    into place only when complete, so a reader never loads half a library."""
    cxx = compiler()
    if cxx is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    target = library_path(cxx)
    assert target is not None
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / "build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not target.exists():   # else built by another process while this one waited
                _compile(cxx, target)
    except OSError as exc:
        raise RuntimeError(f"cannot write the compiled loop into {target.parent}: {exc.strerror or exc} "
                           f"(set {DIR_ENV} to a writable folder)") from exc
    return target


def _compile(cxx: str, target: Path) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        output = Path(work) / target.name
        try:
            done = subprocess.run(_command(cxx, output), capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        except subprocess.SubprocessError as exc:
            raise RuntimeError(f"the C++ compiler did not finish: {exc}") from exc
        except OSError as exc:
            raise RuntimeError(f"the C++ compiler could not run: {exc}") from exc
        if done.returncode != 0 or not output.exists():
            tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise RuntimeError("the C++ build failed: " + " | ".join(tail))
        os.replace(output, target)


def _load(path: Path) -> bool:
    global _reason
    try:
        torch.ops.load_library(str(path))
        return True
    except (OSError, RuntimeError) as exc:   # a library built for another torch, a damaged file
        _reason = f"the compiled loops did not load: {exc}"
        return False


def _start_background_build() -> None:
    """``python -m textgen_core.native_step --background``, detached: it outlives a short command."""
    global _background_started
    if _background_started:
        return
    _background_started = True
    try:
        subprocess.Popen([sys.executable, "-m", "textgen_core.native_step", "--background"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    except OSError:
        pass


def available(build_in_background: bool = True) -> bool:
    """Whether the compiled loop is loaded in this process (loading it when built). When it is not
    built yet, a background build is started (once per process) and this returns False meanwhile."""
    global _loaded, _reason
    if not enabled():
        return False
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is not None:
            return _loaded
        path = library_path()
        if path is None:
            _reason, _loaded = "no C++ compiler found (set CXX, or install g++)", False
            return False
        if path.exists():
            _loaded = _load(path)
            return _loaded
    if build_in_background:
        _start_background_build()
    return False


def load(wait: bool = True) -> bool:
    """Build (waiting for it when ``wait``) and load the compiled loop; False with ``reason()`` set."""
    global _reason
    if not enabled():
        _reason = f"{SWITCH_ENV} turns it off"
        return False
    if available(build_in_background=not wait):
        return True
    if not wait or _loaded is False:   # no compiler, or a library that would not load
        return False
    try:
        build()
    except RuntimeError as exc:
        _reason = str(exc)
        return False
    return available(build_in_background=False)


def reason() -> str:
    """Why the compiled loop is not in use (empty when it is, or when nothing was tried)."""
    return _reason


class NativeSampler:
    """The C++ loop over a ``FusedRnnStep``'s weights and buffers' shapes: ``sample(first, steps,
    feed_last)`` -> (steps,) ids, the state carried between calls."""

    def __init__(self, fused, temperature: float, top_k: Optional[int], top_p: Optional[float],
                 generator: torch.Generator) -> None:
        cls = torch.classes.textgen_native.RnnSampler
        self.loop = cls(fused.lstm, fused.w_ih, fused.w_hh, fused.b_ih, fused.b_hh, fused.head_w,
                        fused.head_b, fused.embedding, min(fused.embedding.shape[0], fused.max_rows))
        self.settings = (float(temperature), int(top_k or 0), 1.0 if top_p is None else float(top_p), generator)

    def load_state(self, state) -> None:
        h, c = state if isinstance(state, tuple) else (state, None)
        self.loop.load_state(h, c)

    def sample(self, first: Optional[torch.Tensor], steps: int, feed_last: bool) -> torch.Tensor:
        empty = torch.empty(0)
        return self.loop.sample(empty if first is None else first, steps, feed_last, *self.settings)

    def step_logits(self, token_id: int) -> torch.Tensor:
        return self.loop.step_logits(token_id)


def _main(argv: list[str]) -> int:
    background = "--background" in argv
    if background:
        try:
            os.nice(10)   # a build started by sampling yields the CPU to whatever else runs
        except OSError:
            pass
    if not enabled():
        print(f"the compiled loops are off ({SWITCH_ENV}=0)")
        return 0
    try:
        path = build()
    except RuntimeError as exc:
        print(f"the compiled loops were not built: {exc}; sampling and GRU training use the eager code "
              "(same text, slower)")
        return 0 if background or "--optional" in argv else 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
