"""Memory and scale: read + tokenize + encode and a fixed slice of training on 1, 10 and 50 MB corpora.

Corpora are built at run time under /tmp (tiny Shakespeare's lines shuffled and repeated to the
size; never committed). Each (level, size, encoder) runs in a fresh subprocess, so the peak RSS
(getrusage) belongs to that size alone. Levels: char, and word with the vocabulary capped at
10,000. Encoders: "list" = to_id_tensor(tokenizer.encode(text)) (one Python list of every id, for
comparison), "chunked" = data.encode_ids (the same ids, a megabyte of text at a time: what
runs.encode_corpus uses), "file" = the text read in pieces (corpus_file.open_file), the tokenizer
fitted piece by piece and the ids written to a token file that training reads windows from
(tokens.py: what the command line does for files above 64 MB; here for every size, in a fresh cache).
Training: a small GRU, batch 32 x 128, a fixed number of steps with the Trainer (the validation
split is cut to 50k tokens so that the one evaluation at the end stays small; a full validation
pass grows with the corpus like everything else).

    python benchmarks/bench_scale.py               # 1, 10, 50 MB, char and word, twice (about 10 minutes)
    python benchmarks/bench_scale.py --sizes 1 10  # fewer sizes
    python benchmarks/bench_scale.py --quick       # 50 kB in-process, for the smoke test
    python benchmarks/bench_scale.py --levels char --encoders file --sizes 1 10 100 1000 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from common import describe, emit, find_corpus, machine, median, peak_rss_mb, table

CORPUS_DIR = Path("/tmp/textgen_bench")
WORD_VOCAB = 10_000


def build_corpus(megabytes: float, source: Path) -> Path:
    """Tiny Shakespeare's lines in a seeded shuffled order, repeated to ``megabytes`` (ASCII: 1 byte a char)."""
    CORPUS_DIR.mkdir(parents=True, exist_ok=True)
    target = int(megabytes * 1_000_000)
    path = CORPUS_DIR / f"shakespeare_{megabytes:g}mb.txt"
    if path.is_file() and path.stat().st_size == target:
        return path
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True)
    rng = random.Random(0)
    parts, size = [], 0
    while size < target:
        rng.shuffle(lines)
        for line in lines:
            parts.append(line)
            size += len(line)
            if size >= target:
                break
    text = "".join(parts)[:target]
    path.write_text(text, encoding="utf-8")
    return path


def worker(path: Path, level: str, encoder: str, steps: int, tiny: bool = False) -> dict:
    """One measurement; runs in its own process (see main)."""
    import torch

    from textgen_core.corpus import read_file
    from textgen_core.data import TokenSplit, encode_ids, split_ids, to_id_tensor
    from textgen_core.models import ModelConfig, build_model
    from textgen_core.tokenizers import make_tokenizer
    from textgen_core.training import TrainConfig, Trainer

    out = {"level": level, "encoder": encoder, "mb": path.stat().st_size / 1e6, "rss_start_mb": peak_rss_mb()}
    if encoder == "file":
        return file_worker(path, level, steps, tiny, out)
    start = time.perf_counter()
    corpus = read_file(path)
    out["read_s"] = time.perf_counter() - start
    out["rss_after_read_mb"] = peak_rss_mb()

    start = time.perf_counter()
    tokenizer = make_tokenizer(level, WORD_VOCAB if level == "word" else None).fit(corpus.text)
    out["fit_s"] = time.perf_counter() - start
    out["rss_after_fit_mb"] = peak_rss_mb()

    start = time.perf_counter()
    if encoder == "list":
        ids = to_id_tensor(tokenizer.encode(corpus.text), tokenizer.vocab_size)
    else:
        ids = encode_ids(tokenizer, corpus.text)
    out["encode_s"] = time.perf_counter() - start
    out["rss_after_encode_mb"] = peak_rss_mb()
    out.update(tokens=len(ids), dtype=str(ids.dtype).replace("torch.", ""),
               ids_mb=ids.numel() * ids.element_size() / 1e6, vocab=tokenizer.vocab_size)

    split = split_ids(ids, 0.1, 128)
    split = TokenSplit(train=split.train, val=split.val[:50_000])
    out["split_shares_storage"] = split.train.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("gru", "tiny" if tiny else "small", tokenizer.vocab_size))
    stamps = {}
    batch, seq_len = (4, 16) if tiny else (32, 128)
    if tiny:
        split = TokenSplit(train=split.train, val=split.val[:1_000])
    trainer = Trainer(model, split, TrainConfig(batch_size=batch, seq_len=seq_len, max_steps=steps, eval_every=steps,
                                                log_every=1, device="cpu", seed=0),
                      callbacks=(lambda e: stamps.setdefault(e.step, time.perf_counter())
                                           if e.kind == "train" else None,))
    start = time.perf_counter()
    trainer.fit()
    out["train_s"] = time.perf_counter() - start
    out["step_ms"] = 1000 * median([stamps[i + 1] - stamps[i] for i in range(1, steps)]) if steps > 1 else float("nan")
    out["steps"] = steps
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def file_worker(path: Path, level: str, steps: int, tiny: bool, out: dict) -> dict:
    """The "file" encoder: nothing of the text or its ids is ever held whole."""
    import os
    import tempfile

    from textgen_core import tokens
    from textgen_core.corpus_file import open_file
    from textgen_core.models import ModelConfig, build_model
    from textgen_core.tokenizers import make_tokenizer
    from textgen_core.training import TrainConfig, Trainer

    os.environ[tokens.CACHE_ENV] = tempfile.mkdtemp(prefix="textgen-bench-tokens-")
    start = time.perf_counter()
    corpus = open_file(path, stream=True)
    out["read_s"], out["rss_after_read_mb"] = time.perf_counter() - start, peak_rss_mb()
    start = time.perf_counter()
    tokenizer = make_tokenizer(level, WORD_VOCAB if level == "word" else None).fit_pieces(corpus.pieces())
    out["fit_s"], out["rss_after_fit_mb"] = time.perf_counter() - start, peak_rss_mb()
    start = time.perf_counter()
    made = tokens.token_file(tokenizer, corpus)
    out["encode_s"], out["rss_after_encode_mb"] = time.perf_counter() - start, peak_rss_mb()
    out.update(tokens=made.count, dtype=made.dtype.name, ids_mb=made.path.stat().st_size / 1e6,
               vocab=tokenizer.vocab_size, split_shares_storage=True)
    split = tokens.split_token_file(made, 0.1, 128)
    batch, seq_len = (4, 16) if tiny else (32, 128)
    split = type(split)(train=split.train, val=split.val[:1_000 if tiny else 50_000])
    import torch
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset("gru", "tiny" if tiny else "small", tokenizer.vocab_size))
    stamps: dict = {}
    trainer = Trainer(model, split, TrainConfig(batch_size=batch, seq_len=seq_len, max_steps=steps, eval_every=steps,
                                                log_every=1, device="cpu", seed=0),
                      callbacks=(lambda e: stamps.setdefault(e.step, time.perf_counter())
                                           if e.kind == "train" else None,))
    start = time.perf_counter()
    trainer.fit()
    out["train_s"] = time.perf_counter() - start
    out["step_ms"] = 1000 * median([stamps[i + 1] - stamps[i] for i in range(1, steps)]) if steps > 1 else float("nan")
    out["steps"] = steps
    out["rss_peak_mb"] = peak_rss_mb()
    made.path.unlink()
    return out


def run_worker(path: Path, level: str, encoder: str, steps: int) -> dict:
    command = [sys.executable, __file__, "--worker", str(path), "--level", level, "--encoder", encoder,
               "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    line = next((text for text in done.stdout.splitlines() if text.startswith("WORKER ")), None)
    if line is None:
        raise RuntimeError(f"worker failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return json.loads(line[len("WORKER "):])


def combine(repeats: list[dict]) -> dict:
    """One row from repeated runs of the same measurement: the fastest time of each stage and the
    largest memory figures."""
    row = dict(repeats[0], repeats=len(repeats))
    for key in ("read_s", "fit_s", "encode_s", "train_s", "step_ms"):
        row[key] = min(r[key] for r in repeats)
    for key in [k for k in row if k.startswith("rss_")]:
        row[key] = max(r[key] for r in repeats)
    return row


def growth(rows: list[dict], key: str, small: float, large: float, level: str, encoder: str,
           base: str | None = None) -> float:
    """cost(large) / cost(small) for one level and encoder (``base`` subtracts a per-process baseline)."""
    pick = {r["mb"]: r for r in rows if r["level"] == level and r["encoder"] == encoder}
    if small not in pick or large not in pick:
        return float("nan")
    value = lambda r: r[key] - (r[base] if base else 0)  # noqa: E731
    smaller = value(pick[small])
    return value(pick[large]) / smaller if smaller > 0 else float("nan")  # nothing above the baseline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one 50 kB corpus, in-process")
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 10, 50], help="corpus sizes in MB")
    parser.add_argument("--levels", nargs="+", default=["char", "word"], choices=["char", "word"])
    parser.add_argument("--encoders", nargs="+", default=["list", "chunked"], choices=["list", "chunked", "file"])
    parser.add_argument("--steps", type=int, default=10, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=2, help="runs per row, all sizes in turn each time; "
                        "a row keeps its fastest times (other load only adds time) and its largest memory")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for uniformity: this benchmark is CPU only")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--level", help=argparse.SUPPRESS)
    parser.add_argument("--encoder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("WORKER " + json.dumps(worker(args.worker, args.level, args.encoder, args.steps)), flush=True)
        return
    info = machine()
    print(describe(info))
    source = find_corpus()
    if source is None:
        raise SystemExit("tiny Shakespeare not found (../shared/data or .data/); nothing to measure")
    sizes = [0.05] if args.quick else args.sizes
    runs: dict[tuple, list[dict]] = {}
    for _ in range(1 if args.quick else args.repeats):
        for level in args.levels:
            for size in sizes:
                path = build_corpus(size, source)
                for encoder in args.encoders:
                    row = (worker(path, level, encoder, 3, tiny=True) if args.quick
                           else run_worker(path, level, encoder, args.steps))
                    runs.setdefault((level, size, encoder), []).append(row)
                    print(f"  {level} {size:g} MB {encoder}: read {row['read_s']:.2f} s, fit {row['fit_s']:.2f} s, "
                          f"encode {row['encode_s']:.2f} s, {row['tokens']:,} {row['dtype']} ids "
                          f"({row['ids_mb']:.1f} MB), "
                          f"step {row['step_ms']:.0f} ms, peak RSS {row['rss_peak_mb']:,.0f} MB", flush=True)
    rows = [combine(found) for found in runs.values()]
    print()
    print(table(["level", "MB", "encoder", "tokens", "ids MB", "read s", "fit s", "encode s", "train step ms",
                 "RSS start MB", "RSS after encode MB", "peak RSS MB"],
                [(r["level"], f"{r['mb']:g}", r["encoder"], f"{r['tokens']:,}", r["ids_mb"], f"{r['read_s']:.2f}",
                  f"{r['fit_s']:.2f}", f"{r['encode_s']:.2f}", r["step_ms"], r["rss_start_mb"],
                  r["rss_after_encode_mb"], r["rss_peak_mb"]) for r in rows]))
    linearity = []
    for level in args.levels:
        for encoder in args.encoders:
            for small, large in ((1, 10), (10, 50), (10, 100), (100, 1000)):
                entry = {"level": level, "encoder": encoder, "sizes": f"{large:g}/{small:g}", "ideal": large / small}
                for key in ("read_s", "fit_s", "encode_s"):
                    entry[key] = growth(rows, key, small, large, level, encoder)
                entry["rss_above_start"] = growth(rows, "rss_after_encode_mb", small, large, level, encoder,
                                                  base="rss_start_mb")
                entry["step_ms"] = growth(rows, "step_ms", small, large, level, encoder)
                if entry["read_s"] == entry["read_s"]:  # both sizes measured
                    linearity.append(entry)
    if linearity:
        print()
        print("Growth (cost at the larger size / cost at the smaller; linear = the size ratio, "
              "train step: 1 = independent of corpus size)")
        print(table(["level", "encoder", "sizes", "ideal", "read", "fit", "encode", "RSS above start", "train step"],
                    [(e["level"], e["encoder"], e["sizes"], f"{e['ideal']:g}", f"{e['read_s']:.2f}",
                      f"{e['fit_s']:.2f}", f"{e['encode_s']:.2f}", f"{e['rss_above_start']:.2f}",
                      f"{e['step_ms']:.2f}") for e in linearity]))
    emit("scale", {"machine": info, "quick": args.quick, "rows": rows, "growth": linearity})


if __name__ == "__main__":
    main()
