"""Hostile and careless input against the command line and the Python API: every probe must end in a
clean error (exit 2, one ``error:`` line, no traceback) or a correct result, quickly and in bounded
memory.

Each probe runs in a fresh process (`python -m textgen_core ...`, or a short Python script for the
API that turns a TextgenError into exit 2); the table gives its outcome, wall seconds and the peak
resident memory of that process (its VmHWM, sampled every 20 ms; loading torch alone is about 0.2 GB).

    .venv/bin/python benchmarks/bench_hostile.py [--quick] [--only NAME...]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from common import ROOT, describe, emit, machine, table

MAX_PEAK_MB = 2048
SONG = "the river runs to the sea and the sea runs to the sky\n" * 75   # 4 KB
TRAIN_FAST = ["--preset", "tiny", "--batch-size", "4", "--seq-len", "16", "--device", "cpu"]
# An API call that turns the engine's errors into the command line's: one line, exit 2.
API = """
import sys, textgen_core as tg
try:
{body}
except tg.TextgenError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Spec:
    """How to run one probe, made by its setup in a scratch folder."""
    argv: list[str]                                   # after `python`
    expect: str = "error"                             # error | ok | interrupted
    wait_for: Optional[Path] = None                   # a file to wait for before the signals
    signals: list[int] = field(default_factory=list)  # sent one after another, 50 ms apart
    check: Optional[Callable[[subprocess.CompletedProcess], Optional[str]]] = None  # None: fine
    env: dict = field(default_factory=dict)
    timeout_s: float = 120.0


def cli(*args: str, **options) -> Spec:
    return Spec(["-m", "textgen_core", *args], **options)


def api(body: str, **options) -> Spec:
    code = API.format(body="\n".join("    " + line for line in body.strip().splitlines()))
    return Spec(["-c", code], **options)


# --- fixtures made once -----------------------------------------------------------------------------
def make_base(root: Path) -> tuple[Path, Path]:
    """A small text and a model folder trained on it, copied into each probe that needs one."""
    song = root / "song.txt"
    song.write_text(SONG)
    model = root / "base-model"
    subprocess.run([sys.executable, "-m", "textgen_core", "train", str(song), "--out", str(model), *TRAIN_FAST,
                    "--max-steps", "20", "--eval-every", "10"], cwd=ROOT, env=child_env(), check=True,
                   capture_output=True)
    return song, model


def child_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_ENDPOINT",)}
    env.update(PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
               HF_HOME=str(Path(tempfile.gettempdir()) / "textgen-hostile-hf"))
    env.update(extra)
    return env


def copy_model(base: Path, target: Path) -> Path:
    shutil.copytree(base, target, ignore=shutil.ignore_patterns("checkpoint", ".textgen*"))
    return target


def edit_json(path: Path, **changes) -> None:
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def silent_endpoint() -> tuple[socket.socket, str]:
    """Listening but never accepting: connections open, requests are never answered."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


# --- the probes -----------------------------------------------------------------------------------
def probes(song: Path, base: Path, endpoint: str) -> dict[str, Callable[[Path], Spec]]:
    def folder_probe(edit: Callable[[Path], None], *args: str, **options):
        def setup(tmp: Path) -> Spec:
            folder = copy_model(base, tmp / "model")
            edit(folder)
            return cli("sample", str(folder), "--length", "20", "--seed", "1", *args, **options)
        return setup

    def huge_config(folder: Path) -> None:   # 137 GB of fp32 weights described (34B parameters), 300 KB present
        edit_json(folder / "config.json", arch="lstm", embedding=8192, hidden=8192, layers=64)

    def config_103gb(folder: Path) -> None:
        edit_json(folder / "config.json", arch="gru", embedding=8192, hidden=8192, layers=64)

    def nan_weights(folder: Path) -> None:
        from safetensors.torch import load_file, save_file
        weights = load_file(folder / "model.safetensors")
        next(iter(weights.values())).fill_(float("nan"))
        save_file(weights, folder / "model.safetensors")

    def no_arch(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        del config["arch"]
        (folder / "config.json").write_text(json.dumps(config))

    def fifo_config(folder: Path) -> None:
        (folder / "config.json").unlink()
        os.mkfifo(folder / "config.json")

    def nested(name: str):
        def edit(folder: Path) -> None:
            (folder / name).write_text("[" * 100_000 + "]" * 100_000)
        return edit

    def bad_run_json(folder: Path) -> None:
        edit_json(folder / "run.json", best_val_loss="x", corpus=5, steps=[], parameters=None)

    def run_json_outside(folder: Path) -> None:
        (folder / "run.json").unlink()
        (folder / "run.json").symlink_to("/etc/passwd")

    def big_history(folder: Path) -> None:
        line = json.dumps({"kind": "train", "step": 1, "train_loss": 1.0, "lr": 0.001, "tokens_per_s": 1.0,
                           "elapsed": 1.0, "progress": 0.1, "epoch": 0.1}) + "\n"
        with open(folder / "history.jsonl", "w") as handle:
            for _ in range(300_000_000 // len(line)):
                handle.write(line)

    def truncated_weights(folder: Path) -> None:
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])

    def pickle_only(folder: Path) -> None:
        (folder / "model.safetensors").rename(folder / "pytorch_model.bin")

    def corpus_probe(make: Callable[[Path], Path]):
        def setup(tmp: Path) -> Spec:
            return cli("train", str(make(tmp)), "--out", str(tmp / "out"), *TRAIN_FAST, "--max-steps", "5")
        return setup

    def fifo(tmp: Path) -> Path:
        os.mkfifo(tmp / "lyrics.txt")
        return tmp / "lyrics.txt"

    def dev_zero(tmp: Path) -> Path:
        (tmp / "lyrics.txt").symlink_to("/dev/zero")
        return tmp / "lyrics.txt"

    def many_code_points(tmp: Path) -> Path:   # 1.1M distinct code points, 4.4 MB
        chars = [chr(c) for c in range(0x100, 0x10FFFF) if not 0xD800 <= c <= 0xDFFF][:1_100_000]
        (tmp / "lyrics.txt").write_text("".join(chars), encoding="utf-8")
        return tmp / "lyrics.txt"

    def model_copy(tmp: Path) -> Path:
        return copy_model(base, tmp / "model")

    def prompt_probe(arch: str, chars: int, *args: str):
        def setup(tmp: Path) -> Spec:
            out = tmp / "model"
            subprocess.run([sys.executable, "-m", "textgen_core", "train", str(song), "--out", str(out), "--model",
                            arch, *TRAIN_FAST, "--max-steps", "10", "--eval-every", "10"], cwd=ROOT,
                           env=child_env(), check=True, capture_output=True)
            prompt = tmp / "prompt.txt"
            prompt.write_text(("the river runs " * (chars // 15 + 1))[:chars])
            body = (f"b = tg.load({str(out)!r})\n"
                    f"texts = tg.generate(b, open({str(prompt)!r}).read(), {', '.join(args) or 'length=20'})\n"
                    "print(len(texts), sum(len(t) for t in texts))")
            return api(body, expect="any")
        return setup

    def signal_probe(signals: list[int], wait: str = "checkpoint/latest.json"):
        def setup(tmp: Path) -> Spec:
            out = tmp / "out"

            def check(done) -> Optional[str]:
                info = out / "run.json"
                return None if info.is_file() and json.loads(info.read_text())["stop_reason"] == "stopped" \
                    else "no run.json saying stopped"
            return cli("train", str(song), "--out", str(out), *TRAIN_FAST, "--max-minutes", "2", "--eval-every", "5",
                       expect="interrupted", wait_for=out / wait, signals=signals, check=check)
        return setup

    def training(out: Path, minutes: str) -> subprocess.Popen:
        """A training in the background, once it has written its first checkpoint."""
        proc = subprocess.Popen([sys.executable, "-m", "textgen_core", "train", str(song), "--out", str(out),
                                 *TRAIN_FAST, "--max-minutes", minutes, "--eval-every", "5"], cwd=ROOT,
                                env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while not (out / "checkpoint" / "latest.json").exists() and proc.poll() is None:
            time.sleep(0.05)
        return proc

    def kill_9(tmp: Path) -> Spec:
        proc = training(tmp / "out", "2")
        proc.kill()
        proc.wait()
        return cli("sample", str(tmp / "out"), "--length", "20", "--seed", "1", expect="ok")

    def second_run(tmp: Path) -> Spec:
        first = training(tmp / "out", "1")
        spec = cli("train", str(song), "--out", str(tmp / "out"), *TRAIN_FAST, "--resume")
        spec.check = lambda done: (first.kill(), first.wait(), None)[-1]
        return spec

    def out_dot(tmp: Path) -> Spec:
        (tmp / "README.md").write_text("# mine\n")

        def check(done) -> Optional[str]:
            return None if (tmp / "README.md").read_text() == "# mine\n" else "README.md was changed"
        spec = cli("train", str(song), "--out", ".", *TRAIN_FAST, check=check)
        spec.env = {"cwd": str(tmp)}
        return spec

    def size_limit(limit: int):
        return lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN),
                        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))

    def full_disk_resume(tmp: Path) -> Spec:
        out = copy_model(base, tmp / "out")
        shutil.rmtree(out)
        shutil.copytree(base, out)
        spec = cli("train", str(song), "--out", str(out), "--resume", "--max-steps", "40", "--eval-every", "10")
        spec.env = {"preexec": size_limit(300_000)}
        return spec

    def unwritable(tmp: Path) -> Spec:
        spec = cli("train", str(song), "--out", str(tmp / "out"), *TRAIN_FAST)
        spec.env = {"preexec": size_limit(0)}
        return spec

    def resume_probe(*args: str):
        def setup(tmp: Path) -> Spec:
            out = tmp / "out"
            shutil.copytree(base, out)
            return cli("train", str(song), "--out", str(out), "--resume", "--max-steps", "40", *args)
        return setup

    def damaged_resume_json(tmp: Path) -> Spec:
        out = tmp / "out"
        shutil.copytree(base, out)
        unit = json.loads((out / "checkpoint" / "latest.json").read_text())["unit"]
        path = out / "checkpoint" / unit / "resume.json"
        state = json.loads(path.read_text())
        del state["optimizer"]
        path.write_text(json.dumps(state))
        return cli("train", str(song), "--out", str(out), "--resume", "--max-steps", "40")

    def push_probe(env: dict):
        def setup(tmp: Path) -> Spec:
            folder = copy_model(base, tmp / "model")
            return cli("push", str(folder), "--repo", "someone/model", env={"HF_TOKEN": "hf_probe_token",
                                                                            "HF_HUB_OFFLINE": "0", **env},
                       check=lambda done: "the token was printed" if "hf_probe_token" in done.stderr else None)
        return setup

    return {
        # model folders
        "config of 137 GB (LSTM), weights of 300 KB": folder_probe(huge_config),
        "config of 103 GB (GRU)": folder_probe(config_103gb),
        "NaN weights": folder_probe(nan_weights),
        "config without arch": folder_probe(no_arch),
        "config.json is a FIFO": folder_probe(fifo_config),
        "config.json nested 100k deep": folder_probe(nested("config.json")),
        "tokenizer.json nested 100k deep": folder_probe(nested("textgen_tokenizer.json")),
        "run.json with wrong types": folder_probe(bad_run_json, expect="ok"),
        "run.json symlinked to /etc/passwd": folder_probe(run_json_outside, expect="any"),
        "history.jsonl of 300 MB": folder_probe(big_history, expect="ok"),
        "truncated model.safetensors": folder_probe(truncated_weights),
        "only a pickle file": folder_probe(pickle_only),
        "empty model name": lambda tmp: cli("sample", ""),
        "mixin from_pretrained, base class": lambda tmp: api(
            f"from textgen_core.models import LanguageModel\n"
            f"m = LanguageModel.from_pretrained({str(model_copy(tmp))!r})\n"
            "assert m.num_parameters() > 0, 'no parameters'\nprint(type(m).__name__)", expect="ok"),
        "mixin from_pretrained, CNN class on a GRU folder": lambda tmp: api(
            f"from textgen_core.models import CNNLanguageModel\n"
            f"CNNLanguageModel.from_pretrained({str(model_copy(tmp))!r})"),
        # corpora and settings
        "corpus is a FIFO": corpus_probe(fifo),
        "corpus is a symlink to /dev/zero": corpus_probe(dev_zero),
        "corpus of 1.1M distinct code points": lambda tmp: cli(
            "train", str(many_code_points(tmp)), "--out", str(tmp / "out"), *TRAIN_FAST, "--max-steps", "2",
            "--eval-every", "2", expect="ok"),
        "LSTM at batch 1024 x 2048 on a 4 KB text": lambda tmp: cli(
            "train", str(song), "--out", str(tmp / "out"), "--model", "lstm", "--batch-size", "1024",
            "--seq-len", "2048", "--max-steps", "1"),
        "learning rate 1e9": lambda tmp: cli("train", str(song), "--out", str(tmp / "out"), *TRAIN_FAST,
                                             "--lr", "1e9"),
        "bf16 precision on this CPU": lambda tmp: cli(
            "train", str(song), "--out", str(tmp / "out"), *TRAIN_FAST, "--model", "lstm", "--precision", "bf16",
            "--max-steps", "2", "--eval-every", "2", expect="any"),
        # sampling
        "temperature 1e-40": lambda tmp: cli("sample", str(model_copy(tmp)), "--temperature", "1e-40",
                                             "--length", "20", expect="any"),
        "API seed 1.5": lambda tmp: api(f"tg.generate(tg.load({str(model_copy(tmp))!r}), 'the', length=5, seed=1.5)"),
        "attention, 10k-character prompt": prompt_probe("attention", 10_000),
        "attention, 20k-character prompt": prompt_probe("attention", 20_000),
        "GRU, 256 samples of a 1 MB prompt": prompt_probe("gru", 1_000_000, "length=20", "num_samples=256"),
        "evaluate a NaN model": lambda tmp: cli("evaluate", str(_nan_copy(base, tmp)), str(song)),
        # output folders, resumes and signals
        "--out . holding a README": out_dot,
        "a second training into a busy folder": second_run,
        "resume with another --model": resume_probe("--model", "lstm"),
        "resume with another --hidden": resume_probe("--hidden", "64"),
        "resume with --val-fraction 0.5": resume_probe("--val-fraction", "0.5"),
        "resume.json without its optimizer": damaged_resume_json,
        "full disk during a resume": full_disk_resume,
        "a folder that cannot be written": unwritable,
        "SIGTERM while training": signal_probe([signal.SIGTERM]),
        "SIGHUP while training": signal_probe([signal.SIGHUP]),
        "double Ctrl-C while training": signal_probe([signal.SIGINT, signal.SIGINT]),
        "Ctrl-C while starting up": lambda tmp: cli("train", str(song), "--out", str(tmp / "out"), *TRAIN_FAST,
                                                    expect="interrupted", signals=[signal.SIGINT],
                                                    wait_for=Path("0.4s")),
        "kill -9, then sample": kill_9,
        # the network
        "push to a Hub that never answers": push_probe({"HF_ENDPOINT": endpoint}),
        "push with the Hub's name unresolvable": push_probe({"HF_ENDPOINT": "http://hub.invalid"}),
    }


def _nan_copy(base: Path, tmp: Path) -> Path:
    """A model folder whose weights are NaN, written without the loader's checks (as a broken
    run or a hostile download would leave it)."""
    from safetensors.torch import load_file, save_file
    folder = copy_model(base, tmp / "nan-model")
    weights = {k: v.fill_(float("nan")) for k, v in load_file(folder / "model.safetensors").items()}
    save_file(weights, folder / "model.safetensors")
    return folder


QUICK = ("config of 137 GB (LSTM), weights of 300 KB", "corpus is a FIFO", "run.json with wrong types")


# --- running ---------------------------------------------------------------------------------------
def run_probe(name: str, setup: Callable[[Path], Spec], scratch: Path) -> dict:
    tmp = scratch / "".join(c if c.isalnum() else "-" for c in name)[:60]
    tmp.mkdir(parents=True)
    spec = setup(tmp)
    env_extra = dict(spec.env)
    cwd, preexec = env_extra.pop("cwd", str(ROOT)), env_extra.pop("preexec", None)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *spec.argv], cwd=cwd, env=child_env(**env_extra), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=preexec)
    readers = [Reader(proc.stdout), Reader(proc.stderr)]   # pipes: a file-size limit must not stop them
    child = Child(proc.pid, start + spec.timeout_s)
    if spec.signals:
        if spec.wait_for is not None and spec.wait_for.name.endswith("s") and not spec.wait_for.is_absolute():
            time.sleep(float(spec.wait_for.name[:-1]))   # a delay rather than a file
        elif spec.wait_for is not None:
            while not spec.wait_for.exists() and child.running() and time.perf_counter() < child.deadline:
                time.sleep(0.05)
        for sig in spec.signals:
            if child.running():
                proc.send_signal(sig)
            time.sleep(0.05)
    code, peak_kb, hung = child.wait()
    proc.returncode = code  # reaped here: Popen must not wait for it again
    seconds = time.perf_counter() - start
    done = subprocess.CompletedProcess(spec.argv, code, readers[0].text(), readers[1].text())
    outcome, problem = classify(done, hung, spec)
    if problem is None and spec.check is not None:
        problem = spec.check(done)
    peak_mb = peak_kb / 1024
    if problem is None and peak_mb > MAX_PEAK_MB:
        problem = f"peak memory {peak_mb:.0f} MB"
    said = (done.stdout if code in (0, 130) and done.stdout.strip() else done.stderr).strip().splitlines()
    last = (said or [""])[-1].replace(f"{tmp}/", "…/").replace(str(tmp), "…").replace(str(scratch), "…")[:150]
    return {"probe": name, "expected": spec.expect, "outcome": outcome, "ok": problem is None,
            "problem": problem, "seconds": round(seconds, 2), "peak_mb": round(peak_mb, 1),
            "exit": code, "last_line": last}


class Reader:
    """Reads a child's pipe to its end in a thread, so that a chatty child never blocks on it."""

    def __init__(self, pipe) -> None:
        self.chunks: list[str] = []
        self.thread = threading.Thread(target=lambda: self.chunks.extend(iter(pipe.read, "")), daemon=True)
        self.thread.start()

    def text(self) -> str:
        self.thread.join(10)
        return "".join(self.chunks)


class Child:
    """A running child whose peak resident memory (VmHWM) is sampled every 20 ms until it ends.

    The kernel's own ru_maxrss of a child counts the memory of the forked copy of this process
    before the new program starts, so it is not used."""

    def __init__(self, pid: int, deadline: float) -> None:
        self.pid, self.deadline, self.result, self.peak_kb = pid, deadline, None, 0

    def _sample(self) -> None:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_kb = max(self.peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass

    def running(self) -> bool:
        if self.result is None:
            self._sample()
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                self.result = (os.waitstatus_to_exitcode(status), False)
        return self.result is None

    def wait(self) -> tuple[int, int, bool]:
        """(exit code, negative for a signal; peak RSS in KiB; whether it was killed for hanging)."""
        while self.running():
            if time.perf_counter() > self.deadline:
                os.kill(self.pid, signal.SIGKILL)
                _, status = os.waitpid(self.pid, 0)
                self.result = (os.waitstatus_to_exitcode(status), True)
                break
            time.sleep(0.02)
        return self.result[0], self.peak_kb, self.result[1]


def classify(done: subprocess.CompletedProcess, hung: bool, spec: Spec) -> tuple[str, Optional[str]]:
    if hung:
        return "hang", f"no answer within {spec.timeout_s:g} s"
    if "Traceback" in done.stderr:
        return "traceback", "a traceback reached the user"
    if done.returncode < 0:
        return f"killed by {signal.Signals(-done.returncode).name}", "the process died"
    lines = done.stderr.strip().splitlines()
    if done.returncode == 2:
        outcome = "clean error" if lines and lines[-1].startswith("error: ") else "exit 2 without an error line"
    elif done.returncode == 0:
        outcome = "result"
    elif done.returncode == 130:
        outcome = "interrupted"
    else:
        outcome = f"exit {done.returncode}"
    wanted = {"error": ("clean error",), "ok": ("result",), "interrupted": ("interrupted",),
              "any": ("clean error", "result")}[spec.expect]
    return outcome, None if outcome in wanted else f"expected {' or '.join(wanted)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"only {len(QUICK)} probes")
    parser.add_argument("--only", nargs="+", help="probes whose names contain these words")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for the smoke test (all probes are CPU)")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    scratch = Path(tempfile.mkdtemp(prefix="textgen-hostile-"))
    sock, endpoint = silent_endpoint()
    try:
        song, base = make_base(scratch)
        chosen = probes(song, base, endpoint)
        if args.quick:
            chosen = {k: v for k, v in chosen.items() if k in QUICK}
        if args.only:
            chosen = {k: v for k, v in chosen.items() if any(w.lower() in k.lower() for w in args.only)}
        rows = []
        for name, setup in chosen.items():
            row = run_probe(name, setup, scratch)
            rows.append(row)
            print(f"{'ok ' if row['ok'] else 'BAD'} {name}: {row['outcome']} in {row['seconds']} s, "
                  f"{row['peak_mb']:.0f} MB: {row['last_line']}", flush=True)
    finally:
        sock.close()
        shutil.rmtree(scratch, ignore_errors=True)
    print(table(["probe", "outcome", "seconds", "peak MB", "what the user saw"],
                [(r["probe"], r["outcome"] if r["ok"] else f"**{r['outcome']}: {r['problem']}**", r["seconds"],
                  r["peak_mb"], r["last_line"].replace("|", "\\|")) for r in rows]))
    bad = [r["probe"] for r in rows if not r["ok"] or r["peak_mb"] > MAX_PEAK_MB]
    print(f"{len(rows) - len(bad)} of {len(rows)} probes ended in a clean error or a correct result "
          f"under {MAX_PEAK_MB} MB" + (f"; not: {', '.join(bad)}" if bad else ""))
    emit("hostile", {"machine": info, "quick": args.quick, "rows": rows, "bad": bad})


if __name__ == "__main__":
    main()
