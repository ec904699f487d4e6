"""Each benchmark script runs in its tiny mode and ends with a JSON line holding the expected keys."""
from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_corpus

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_quick(script: str, *args: str, capsys) -> dict:
    argv, path = sys.argv, list(sys.path)
    sys.argv = [str(BENCH / script), "--quick", "--cpu-only", *args]
    sys.path.insert(0, str(BENCH))
    try:
        runpy.run_path(str(BENCH / script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = argv, path
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("JSON ")]
    assert len(lines) == 1, "a benchmark prints exactly one JSON line"
    result = json.loads(lines[0][5:])
    assert result["quick"] is True and result["machine"]["torch"]
    return result


@pytest.mark.parametrize("options", [(), ("--ablation",), ("--ablation", "--whole-runs"), ("--profile",)])
def test_trainer_overhead(capsys, options):
    """On the CPU the Trainer and bare steps alternate; --whole-runs exercises the GPU way (whole runs
    alternating, timed between two syncs) on the CPU."""
    result = run_quick("bench_trainer.py", *options, capsys=capsys)
    assert result["benchmark"] == "trainer_overhead"
    row = result["rows"][0]
    assert {"config", "batch", "seq_len", "trainer_tok_s", "bare_tok_s", "ratio"} <= set(row)
    assert row["trainer_tok_s"] > 0 and row["bare_tok_s"] > 0
    assert row["lockstep"] is ("--whole-runs" not in options)
    variants = ("trainer_no_clip_tok_s", "bare_with_clip_tok_s", "bare_with_syncs_tok_s")
    if "--ablation" in options:
        assert all(row[v] > 0 for v in variants)
    else:
        assert not set(variants) & set(row)
    if "--profile" in options:   # each side once under torch.profiler: per-step wall time and torch ops
        assert all(row["profile"][side]["wall_ms"] > 0 and row["profile"][side]["ops"] > 0
                   for side in ("trainer", "bare"))


def test_sampling(capsys):
    result = run_quick("bench_sampling.py", capsys=capsys)
    assert result["benchmark"] == "sampling" and result["cpu_lstm_batch1_tok_s"] > 0
    cases = {(r["arch"], r["batch"]) for r in result["rows"]}
    assert cases == {("gru", 1), ("gru", 64), ("lstm", 1), ("lstm", 64)}
    assert all(r["project_tok_s"] > 0 and r["eager_tok_s"] > 0 for r in result["rows"])


def test_time_to_quality(capsys):
    shared_corpus("tinyshakespeare.txt")
    result = run_quick("bench_quality.py", capsys=capsys)
    assert result["benchmark"] == "time_to_quality"
    run = result["runs"][0]
    assert run["device"] == "cpu" and run["curve"] and run["best_val_loss"] > 0
    assert {"seconds", "step", "val_loss"} <= set(run["curve"][0])


def test_scale(capsys):
    shared_corpus("tinyshakespeare.txt")
    result = run_quick("bench_scale.py", capsys=capsys)
    assert result["benchmark"] == "scale"
    assert {(r["level"], r["encoder"]) for r in result["rows"]} == {
        ("char", "list"), ("char", "chunked"), ("word", "list"), ("word", "chunked")}
    for row in result["rows"]:
        assert row["dtype"] == "int16" and row["tokens"] > 0 and row["rss_peak_mb"] > 0
        assert row["split_shares_storage"]  # the training split is a view, not a copy


def test_threads(capsys):
    result = run_quick("bench_threads.py", capsys=capsys)
    assert result["benchmark"] == "threads"
    row = result["rows"][0]
    assert row["one_thread_tok_s"] > 0 and row["all_threads_tok_s"] > 0 and row["ratio_all_over_one"] > 0


def test_step_order(capsys):
    result = run_quick("bench_step_order.py", capsys=capsys)
    assert result["benchmark"] == "step_order"
    assert [row["gates"] for row in result["rows"]] == [1024, 768]
    assert all(row["same_us"] > 0 and row["alternated_us"] > 0 for row in result["rows"])


def test_gru_layer(capsys):
    """The compiled GRU, nn.GRU and the LSTM each timed (skipped by the script without a compiler)."""
    from textgen_core import native_step

    if native_step.compiler() is None:
        pytest.skip("no C++ compiler: the compiled GRU loop cannot be built")
    result = run_quick("bench_gru_layer.py", capsys=capsys)
    assert result["benchmark"] == "gru_layer"
    (row,) = result["results"]
    from textgen_core.devices import cpu_prefers_avx2_products

    blas_side = {"compiled GRU, BLAS products"} if cpu_prefers_avx2_products() else set()
    assert set(row["step_ms"]) == {"compiled GRU", "nn.GRU", "LSTM (oneDNN)"} | blas_side
    assert all(ms > 0 for ms in row["step_ms"].values())


def test_gru_loops(capsys):
    """The compiled loops alone, forward and backward, with the AVX2 and the BLAS products."""
    from textgen_core import native_step

    if native_step.compiler() is None:
        pytest.skip("no C++ compiler: the compiled GRU loop cannot be built")
    result = run_quick("bench_gru_layer.py", "--loops", capsys=capsys)
    assert result["benchmark"] == "gru_loops"
    (row,) = result["results"]
    assert set(row["best_ms"]) == {f"{part} {kind}" for part in ("forward", "backward") for kind in ("avx2", "blas")}
    assert all(ms > 0 for ms in row["best_ms"].values())


def test_pretrained_loading(capsys):
    result = run_quick("bench_pretrained.py", capsys=capsys)
    assert result["benchmark"] == "pretrained"
    for row in result["rows"]:  # none when no model is bundled
        assert row["first_load_s"] > 0 and "bundled copy" in row["note"] and "bundled copy" in row["silent_hub_note"]


def test_hostile_probes(capsys):
    """A few hostile inputs, each in a fresh process: a clean error or a correct result."""
    result = run_quick("bench_hostile.py", capsys=capsys)
    assert result["benchmark"] == "hostile" and len(result["rows"]) == 3
    assert result["bad"] == [], result["rows"]
    assert all(row["ok"] and row["peak_mb"] > 0 for row in result["rows"])


def test_workspace_listing(capsys):
    result = run_quick("bench_workspace.py", capsys=capsys)
    row = result["rows"][0]
    assert row["runs"] == 20 and row["interrupted"] == 4 and row["list_s"] > 0


def test_keras_comparison_without_tensorflow(capsys):
    """Without a TensorFlow interpreter the Trainer's side still runs and the Keras side says it was skipped."""
    shared_corpus("tinyshakespeare.txt")
    result = run_quick("bench_keras.py", capsys=capsys)
    (row,) = result["results"]
    assert row["precision"] == "fp32" and len(row["trainer_s"]) == 1 and row["trainer_s"][0] > 0
    assert row["keras_s"] == [] and row["ratio"] is None and row["tensorflow"] is None
