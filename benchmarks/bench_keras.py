"""The Trainer against TensorFlow Keras's ``fit`` on the same CPU: seconds per training step.

Both sides train the same shape of network (an embedding, a GRU or LSTM, a dense head over the
characters) on tiny Shakespeare with the same batch and sequence length, fp32, Adam(W), on all of the
CPU's cores (each library's default thread pool). Keras runs in another interpreter, the one given by
``--keras-python`` (a Python with TensorFlow installed; this project does not depend on it), and
does not import this project. The sides alternate as whole runs (trainer, keras | keras, trainer
| ...); a run's time per step is from the end of its step ``warmup`` (Keras traces and compiles its
step in the first ones) to the end of its last. ratio = Keras seconds per step / Trainer seconds per
step, the geometric mean of the pairs'. Each configuration runs in fp32 on both sides and, on a CPU
with bf16 units, in bf16 too (the Trainer's bf16 autocast; Keras's ``mixed_bfloat16`` policy, with
the head in fp32 as its guide advises).

Configurations: GRU 1024x1 with a 256 embedding, batch 64 x 100 (the TensorFlow text-generation
tutorial's model) and LSTM 256x2 with a 64 embedding, batch 32 x 64.

    python benchmarks/bench_keras.py --keras-python /path/to/tf-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import geometric_mean

CASES = [
    dict(name="gru 1024x1", arch="gru", embedding=256, hidden=1024, layers=1, batch=64, seq=100, steps=14, warmup=4),
    dict(name="lstm 256x2", arch="lstm", embedding=64, hidden=256, layers=2, batch=32, seq=64, steps=60, warmup=10),
]
QUICK_CASE = dict(name="gru 1x32 (quick)", arch="gru", embedding=16, hidden=32, layers=1, batch=8, seq=16, steps=4,
                  warmup=1)


# --- the Keras side (run by the TensorFlow interpreter; imports nothing of this project) ----------
def keras_side(case: dict, corpus: str) -> dict:
    import numpy as np
    import tensorflow as tf

    if case["precision"] == "bf16":
        tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")

    text = Path(corpus).read_text(encoding="utf-8")
    chars = sorted(set(text))
    ids = np.array([chars.index(c) for c in text[:200_000]], dtype=np.int32)   # enough windows to draw from
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(ids) - case["seq"] - 1, size=case["steps"] * case["batch"])
    windows = np.stack([ids[s:s + case["seq"] + 1] for s in starts])
    data = tf.data.Dataset.from_tensor_slices((windows[:, :-1], windows[:, 1:])).batch(case["batch"])
    recurrent = tf.keras.layers.GRU if case["arch"] == "gru" else tf.keras.layers.LSTM
    model = tf.keras.Sequential([tf.keras.Input((case["seq"],), dtype="int32"),
                                 tf.keras.layers.Embedding(len(chars), case["embedding"]),
                                 *[recurrent(case["hidden"], return_sequences=True) for _ in range(case["layers"])],
                                 tf.keras.layers.Dense(len(chars), dtype="float32")])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    stamps: list[float] = []

    class Clock(tf.keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            stamps.append(time.perf_counter())

    model.fit(data, epochs=1, verbose=0, callbacks=[Clock()])
    warm = case["warmup"] - 1
    return {"s_per_step": (stamps[-1] - stamps[warm]) / (len(stamps) - 1 - warm), "tensorflow": tf.__version__,
            "keras": tf.keras.__version__ if hasattr(tf.keras, "__version__") else "",
            "threads": tf.config.threading.get_intra_op_parallelism_threads()}


# --- the project's side ----------------------------------------------------------------------------
def trainer_side(case: dict) -> float:
    import torch
    from bench_trainer import load_ids, trainer_run

    from textgen_core.data import TokenSplit
    from textgen_core.models import ModelConfig, build_model

    ids, vocab = load_ids()
    torch.manual_seed(0)
    model = build_model(ModelConfig.from_preset(case["arch"], "small", vocab, embedding=case["embedding"],
                                                hidden=case["hidden"], layers=case["layers"], dropout=0.0))
    n_val = max(case["seq"] * 4, len(ids) // 100)
    split = TokenSplit(train=ids[:-n_val], val=ids[-n_val:])
    return trainer_run(model, split, case, torch.device("cpu"), case["steps"], case["warmup"])[0]


def product_shapes(case: dict, vocab: int) -> list[tuple[int, int, int, int]]:
    """(m, k, n, count) of the matrix products in one training step of the case's network as it is
    written (the first layer's input projection over every token): the forward pass, then the
    gradients, each weight's gradient taken over the whole batch and sequence at once. Everything
    else a step does (gates, loss, optimizer) is left out, so their time, each product made alone
    by torch.mm, is a floor for an implementation that makes these products so. The Trainer's GRU on
    the CPU makes fewer and faster ones: the first layer's projection from a per-id table, and the
    recurrent weights packed once a sequence (``gru_layer.py``), so it can go under it."""
    gates = 3 if case["arch"] == "gru" else 4
    b, t, h = case["batch"], case["seq"], case["hidden"]
    shapes = []
    for layer in range(case["layers"]):
        inp = case["embedding"] if layer == 0 else h
        shapes += [(b * t, inp, gates * h, 1), (b, h, gates * h, t),      # input projection, recurrence
                   (b, gates * h, h, t), (gates * h, b * t, h, 1),        # gradients of the state, of W_hh
                   (gates * h, b * t, inp, 1), (b * t, gates * h, inp, 1)]  # of W_ih, of the input
    return shapes + [(b * t, h, vocab, 1), (b * t, vocab, h, 1), (vocab, b * t, h, 1)]  # the head


def products_seconds(case: dict, vocab: int) -> float:
    """Seconds of one step's matrix products alone (``product_shapes``) at this CPU's own speed for
    each shape and the case's precision: the median of 5 timings of each."""
    import torch

    dtype = torch.bfloat16 if case["precision"] == "bf16" else torch.float32
    total = 0.0
    for m, k, n, count in product_shapes(case, vocab):
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        calls = max(3, min(count, 50))
        for _ in range(3):
            torch.mm(a, b)
        timings = []
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                torch.mm(a, b)
            timings.append((time.perf_counter() - start) / calls)
        total += sorted(timings)[2] * count
    return total


def keras_run(python: str, case: dict, corpus: str) -> dict:
    done = subprocess.run([python, __file__, "--keras-side", json.dumps(case), "--corpus", corpus],
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise SystemExit(f"the Keras side failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keras-python", help="a Python interpreter with TensorFlow installed (without it, "
                                               "only the Trainer's side runs)")
    parser.add_argument("--repeats", type=int, default=2, help="pairs of runs per configuration")
    parser.add_argument("--only", help="one configuration by name, e.g. 'gru 1024x1'")
    parser.add_argument("--quick", action="store_true", help="a tiny GRU, a few steps, one run a side (smoke test)")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for symmetry: this benchmark is CPU only")
    parser.add_argument("--keras-side", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.keras_side:
        print(json.dumps(keras_side(json.loads(args.keras_side), args.corpus)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_trainer import load_ids
    from common import describe, emit, find_corpus, machine, median, table

    from textgen_core.devices import bf16_supported

    corpus = find_corpus()
    if corpus is None:
        print("skipped: needs ../shared/data/tinyshakespeare.txt (both sides train on it)")
        return
    if not args.keras_python:
        print("note: no --keras-python given: the Keras side is skipped")
    print(describe(machine()))
    cases, repeats = (([QUICK_CASE], 1) if args.quick else (CASES, args.repeats))
    vocab = load_ids()[1]   # the head's width, for the products column
    precisions = ("fp32", "bf16") if bf16_supported("cpu") and not args.quick else ("fp32",)
    rows, results = [], []
    for case in [{**case, "precision": precision} for case in cases for precision in precisions]:
        if args.only and case["name"] != args.only:
            continue
        sides = ("trainer", "keras") if args.keras_python else ("trainer",)
        times: dict[str, list[float]] = {side: [] for side in sides}
        versions: dict = {}
        for rep in range(repeats):
            for side in (sides if rep % 2 == 0 else sides[::-1]):
                if side == "trainer":
                    times[side].append(trainer_side(case))
                else:
                    versions = keras_run(args.keras_python, case, str(corpus))
                    times[side].append(versions["s_per_step"])
                print(f"  {case['name']} {case['precision']} {side}: {times[side][-1]:.3f} s/step", flush=True)
        keras_s = times.get("keras", [])
        ratio = geometric_mean([k / t for k, t in zip(keras_s, times["trainer"])]) if keras_s else float("nan")
        products_s = products_seconds(case, vocab)
        tokens = case["batch"] * case["seq"]
        rows.append([case["name"], f"{case['batch']} x {case['seq']}", case["precision"],
                     tokens / median(times["trainer"]), tokens / median(keras_s), ratio, products_s,
                     median(times["trainer"]) / products_s,
                     median(keras_s) / products_s if keras_s else float("nan")])
        results.append(dict(case=case["name"], precision=case["precision"], trainer_s=times["trainer"],
                            keras_s=keras_s, ratio=ratio if keras_s else None, products_s=products_s,
                            tensorflow=versions.get("tensorflow")))
    print(table(["config", "batch x seq", "precision", "trainer tok/s", "keras fit tok/s", "keras s / trainer s",
                 "products alone s", "trainer s / products s", "keras s / products s"], rows))
    emit("keras", {"quick": args.quick, "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
