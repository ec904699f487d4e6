"""Surprisal speed and memory: a 100,000-character text through an LSTM 256x2 (char vocabulary).

Variants, timed interleaved in one process (A B, B A, ...), medians reported:
  project     textgen_core.inspection.surprisal as shipped: parallel streams with a warm-up, chunks of
              256 steps on one thread, top-5 from the logits (target: under 3 s on the 2-core CPU)
  two threads the same with every call on all of torch's threads
  one stream  the same with SINGLE_STREAM_TOKENS raised past the text: one batch-1 pass
  scoring     score_ids alone (the model's pass, losses and top-k), the streams' layout
  heat map    surprisal_html of the result (every token's span and tooltip)
Then, each in a fresh process, the peak resident memory of surprisal on 100,000 and 1,000,000
characters (bounded: the chunks' work is fixed; what grows is about 60 bytes a token of results).
The model is freshly initialised (speed does not depend on its weights); the text is tiny
Shakespeare when ../shared/data has it, else a synthetic one.

    python benchmarks/bench_inspect.py            # two to three minutes on 2 cores
    python benchmarks/bench_inspect.py --quick    # a short text, for the smoke test
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # as the app and the CLI set it, before torch loads

import argparse  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from common import ROOT, describe, emit, find_corpus, interleave, machine, median, table  # noqa: E402

from textgen_core.hub import Bundle  # noqa: E402
from textgen_core.inspection import surprise  # noqa: E402
from textgen_core.inspection.html import surprisal_html  # noqa: E402
from textgen_core.models import ModelConfig, build_model  # noqa: E402
from textgen_core.tokenizers import make_tokenizer  # noqa: E402


def corpus_text(chars: int) -> str:
    path = find_corpus()
    text = path.read_text(encoding="utf-8") if path else ""
    if len(text) < chars:   # synthetic words, repeated as needed
        rng = random.Random(0)
        words = [" ".join("".join(rng.choice("etaoinshrdlu") for _ in range(rng.randint(1, 8)))
                          for _ in range(12)) for _ in range(2000)]
        text = text + "\n".join(words)
        text = (text * (chars // max(1, len(text)) + 1))
    return text[:chars]


def lstm_bundle(text: str) -> Bundle:
    tokenizer = make_tokenizer("char").fit(text)
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="lstm", vocab_size=tokenizer.vocab_size, embedding=64, hidden=256,
                                    layers=2, dropout=0.0))
    return Bundle(model=model.eval(), tokenizer=tokenizer, info={"name": "lstm-256x2"})


def timed(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def peak_memory_mb(chars: int) -> float:
    """Peak resident memory (VmHWM) of a fresh process that scores ``chars`` characters."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + '/benchmarks');"
            "import bench_inspect as b; from textgen_core.inspection import surprisal;"
            "t = b.corpus_text(int(sys.argv[2])); r = surprisal(b.lstm_bundle(t), t);"
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(chars)], capture_output=True, text=True,
                         check=True, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short text, one repeat")
    parser.add_argument("--cpu-only", action="store_true", help="(the benchmark always runs on the CPU)")
    parser.add_argument("--chars", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chars, repeats = (20_000, 1) if args.quick else (args.chars, args.repeats)
    text = corpus_text(chars)
    bundle = lstm_bundle(text)
    ids = surprise.encode_ids(bundle.tokenizer, text).long()
    info = machine()
    print(describe(info))
    surprise.surprisal(bundle, text[:5000])   # warm-up: oneDNN builds its primitives once
    single = surprise.SINGLE_STREAM_TOKENS

    def one_stream() -> float:
        surprise.SINGLE_STREAM_TOKENS = 10**9
        try:
            return timed(lambda: surprise.surprisal(bundle, text))
        finally:
            surprise.SINGLE_STREAM_TOKENS = single

    def two_threads() -> float:
        own = surprise.forward_for
        surprise.forward_for = lambda model: model
        try:
            return timed(lambda: surprise.surprisal(bundle, text))
        finally:
            surprise.forward_for = own

    result = surprise.surprisal(bundle, text)
    runs = {"project": lambda: timed(lambda: surprise.surprisal(bundle, text)),
            "two threads": two_threads,
            "one stream": one_stream,
            "scoring": lambda: timed(lambda: surprise.score_ids(bundle.model, ids, surprise.TOP_K)),
            "heat map": lambda: timed(lambda: surprisal_html(result))}
    seconds = interleave(runs, repeats)
    streams, segment = surprise.stream_layout(len(ids) - 1, surprise.stream_warmup(bundle.model))
    rows = [[name, median(values), min(values), len(text) / median(values)] for name, values in seconds.items()]
    print(f"\n{len(text):,} characters, LSTM 256x2, {streams} streams of {segment:,} tokens "
          f"(+{surprise.stream_warmup(bundle.model):,} warm-up), {repeats} interleaved repeats\n")
    print(table(["variant", "median s", "best s", "chars/s (median)"], rows))
    ratio = median(seconds["one stream"]) / median(seconds["project"])
    threads = median(seconds["two threads"]) / median(seconds["project"])
    print(f"\none stream / project: {ratio:.2f}x; two threads / project: {threads:.2f}x; target project < 3 s: "
          f"{'met' if median(seconds['project']) < 3 else 'missed'}")
    memory = {}
    if not args.quick:
        memory = {n: peak_memory_mb(n) for n in (100_000, 1_000_000)}
        print(table(["characters", "peak resident MB (fresh process)"], [[f"{n:,}", mb] for n, mb in memory.items()]))
    emit("inspect", {"quick": args.quick, "machine": info, "chars": len(text), "streams": streams,
                     "seconds": {name: median(values) for name, values in seconds.items()},
                     "one_stream_over_project": ratio, "two_threads_over_project": threads, "peak_mb": memory})


if __name__ == "__main__":
    main()
