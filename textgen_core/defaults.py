"""Recommended starting settings per device, chosen by measurement (see BENCHMARKS.md).

``recommended_settings(device)`` returns a flat dict: model keys (``arch``, ``preset``, and where
the preset's sizes are not the choice ``hidden`` and ``layers``; ``dropout``)
for ``RunSettings`` and training keys for ``TrainConfig``. ``recommended_run_settings`` builds the
``RunSettings`` directly. Nothing here changes the dataclasses' own defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from .devices import bf16_held_back, bf16_supported, cpu_summary, physical_cores, usable_cpu_flags

# Chosen on a 2-core AMD EPYC (avx512_bf16) by `python benchmarks/bench_quality.py --candidates`:
# the best validation loss on tiny Shakespeare (char level) at equal training time / tokens
# (BENCHMARKS.md). bf16 autocast trains this LSTM faster than fp32 on such a CPU; batch 32 x 64
# (2048 tokens a step) beat 4096- and 8192-token steps at equal time.
# One torch thread: `benchmarks/bench_threads.py` measured these models training faster on one thread
# than on two (ratios 0.73-0.94 on 2 cores), and two runs at once then each keep a core.
# Then (`--candidates --tokens 5632000`, the steps of five minutes) lr 5e-3 without dropout: 1.4695 nats/char
# against 1.4914 for lr 3e-3 with dropout 0.1 (five minutes are under six epochs: too few to overfit).
CPU_DEFAULTS: dict = dict(arch="lstm", preset="small", dropout=0.0, batch_size=32, seq_len=64, lr=5e-3,
                          precision="bf16", eval_every=250, max_minutes=5.0, cpu_threads=1)

# On a 2-core Intel Xeon with AMX (`bench_threads.py`, `bench_quality.py --candidates --seconds 300`,
# BENCHMARKS.md) two threads train this LSTM 1.34-1.41x faster than one in bf16, and in 5 minutes it
# makes about twice the steps: dropout 0.1 reached 1.4306 nats/char, no dropout 1.4865 (overfitting
# after half its steps), dropout 0.2 1.4617. None: torch's thread count, every core. With the state carried
# between steps it learned more at equal steps (8,334, one thread each, pinned): 1.4287 against 1.4496.
# (On one thread with bf16 but without AMX, the defaults above, it did not: 1.4664 against 1.4651.)
AMX_CPU_CHANGES: dict = dict(dropout=0.1, cpu_threads=None, carry_state=True)

# A CPU without bf16 units trains in fp32. Measured with the kernels held to AVX2 (ONEDNN_MAX_CPU_ISA,
# ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS) on a 2-core Xeon, BENCHMARKS.md: there a second physical
# core trains these models 1.8x faster in fp32 (`bench_threads.py`); on one thread the GRU ranked first of
# 14 candidates (`bench_quality.py --candidates`, 1.5060 against the LSTM's 1.5287). With random windows
# no candidate met 1.47 nats/char in 194 s (the AVX2-only CPU's 5 minutes at its measured speed; best
# 1.4763). With the state carried between steps the GRU did, at equal steps (`--candidates --tokens`):
#                        two threads, 194 s   two threads, 300 s   one thread, 194 s
#   GRU, no dropout      1.4616 (1.4763)      1.4657 (1.4767)      1.4894 (1.4962)     (random windows)
#   LSTM, dropout 0.1    1.4907 (1.4980)      1.4595 (1.4684)      -
# So the GRU without dropout, the state carried: of these, the one under 1.47 at both budgets.
# The GRU's compiled training loop (gru_layer.py) later made its step 1.34x faster there (two threads;
# 1.25x on one core): in real time on a 2.2x slower host of the type, 2,129 steps and 1.4695 in 300 s.
# Then weight decay 0.1 instead of 0.01, at equal steps (`--candidates --tokens`, one thread each, pinned):
# 1.4523 against 1.4697 at those 2,129 steps; at one core's 1,366, 1.4734 against 1.4808, and with another
# seed 1.4749 against 1.4777 (0.2 and 0.3 did worse: 1.4824, 1.4887). Then the GRU's first layer projected
# from a per-id table and its recurrent weights packed once a sequence: in real time 2,051 steps and 1.4505
# in 300 s on two threads, 1,431 steps and 1.4674 on one core; with the GRU 256 unpacked again (for memory),
# 2,000 steps and 1.4548, one core 1,295 and 1.4793.
# An evaluation every 400 steps, not 250: one of tiny Shakespeare's validation split cost about 27 of
# these steps, so 250 gave 5-8 of them, 10% of a 5-minute run's steps (read in warmed-up streams it now
# costs 20-23: EVAL_STEPS_PER_STEP_TOKENS).
AVX2_CPU_CHANGES: dict = dict(precision="fp32", arch="gru", carry_state=True,
                              weight_decay=0.1, eval_every=400)   # and a thread a physical core
ONE_CORE_AVX2_CPU_CHANGES: dict = dict(AVX2_CPU_CHANGES, cpu_threads=1)

# Chosen on an NVIDIA H100 by `python benchmarks/bench_quality.py --candidates --gpu-only` (15 candidates,
# 60 s each, BENCHMARKS.md): at these speeds a minute is ~60 epochs of tiny Shakespeare, so the winner
# is a larger LSTM (768x3) with strong dropout and weight decay; 1024x2 models overfit after 15-30 s.
GPU_DEFAULTS: dict = dict(arch="lstm", preset="large", hidden=768, layers=3, dropout=0.6, weight_decay=0.2,
                          batch_size=128, seq_len=256, lr=3e-3, precision="bf16", eval_every=200, max_minutes=1.0)

MODEL_KEYS = ("arch", "preset", "hidden", "layers", "dropout")


def defaults_for(device: str = "auto") -> tuple[dict, str]:
    """The recommended settings for ``device`` ("auto", "cpu" or "cuda"), chosen from what the device
    can do (for a CPU: whether it has bf16 units, and its physical cores), and one line saying which
    defaults and why. The CLI, the app and the recipes all start from this."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "a GPU"
        return dict(GPU_DEFAULTS), (f"GPU defaults on {name}: LSTM 768x3 with dropout 0.6, batch 128 x 256, "
                                    "bf16, a minute (the best of 15 candidates in 60 s on an H100)")
    settings = dict(CPU_DEFAULTS)
    if bf16_supported("cpu") and cpu_has_amx():
        settings.update(AMX_CPU_CHANGES)
        return settings, (f"CPU defaults for {cpu_summary()}: it has AMX bf16 units, so bf16 autocast on all "
                          "cores (1.34x one thread there) and dropout 0.1 (such a CPU trains about twice the "
                          "steps in 5 minutes, and without dropout overfits), the state carried between steps "
                          "(at equal steps it learned more than from random windows); LSTM 256x2, batch 32 x 64")
    if bf16_supported("cpu"):
        return settings, (f"CPU defaults for {cpu_summary()}: it has bf16 units, so bf16 autocast, which trains "
                          "this LSTM faster than fp32 there, on one thread (measured faster than two on 2 cores); "
                          "LSTM 256x2, batch 32 x 64")
    no_bf16 = "oneDNN is held below its bf16 units" if bf16_held_back() else "it has no bf16 units"
    fp32_why = f"CPU defaults for {cpu_summary()}: {no_bf16} (bf16 would be emulated, slower than fp32), so fp32"
    cores = physical_cores()
    carried = "the state carried between steps (at equal steps it learned more than from random windows)"
    if cores >= 2:
        settings.update(AVX2_CPU_CHANGES, cpu_threads=cores)
        return settings, (f"{fp32_why}, on its {cores} physical cores (a second core trained 1.8x faster in "
                          f"fp32), and a GRU without dropout but with weight decay 0.1, {carried}: of the candidates, "
                          "the one that reached 1.47 nats/char on tiny Shakespeare at such a CPU's speed; GRU 256x2, "
                          "batch 32 x 64")
    settings.update(ONE_CORE_AVX2_CPU_CHANGES)
    return settings, (f"{fp32_why}, and one physical core, so one thread and a GRU (in fp32 on one thread it "
                      f"learned more than the LSTM in the same time) with weight decay 0.1, {carried}; GRU 256x2, "
                      "batch 32 x 64")


def cpu_has_amx() -> bool:
    """Whether the CPU has AMX bf16 tiles (as /proc/cpuinfo says) and oneDNN may use them."""
    return "amx_bf16" in usable_cpu_flags()


def recommended_settings(device: str = "auto") -> dict:
    """Settings for ``device`` ("auto", "cpu" or "cuda"): a new dict each call (``defaults_for``)."""
    return defaults_for(device)[0]


def recommended_run_settings(device: str = "auto", **overrides):
    """``RunSettings`` with the recommended model and training settings for ``device``; ``overrides``
    win (RunSettings fields such as ``tokenizer`` or ``hidden``, or TrainConfig fields)."""
    from .runs import RunSettings
    from .training import TrainConfig

    values = recommended_settings(device)
    values["device"] = device
    values.update(overrides)
    train_fields = {f.name for f in fields(TrainConfig)}
    train = TrainConfig(**{k: v for k, v in values.items() if k in train_fields})
    return RunSettings(**{k: v for k, v in values.items() if k not in train_fields}, train=train)


# --- settings proposed for a corpus -------------------------------------------------------------------
@dataclass
class Proposal:
    """Settings for a corpus on a device, with a line for each choice saying why."""
    settings: dict                    # RunSettings and TrainConfig keys, as recommended_settings gives
    reasons: list[str]
    epochs: float                     # what the budget means for this corpus (an estimate for time budgets)
    steps_per_s: float = float("nan")  # the trainer's speed behind that estimate (measured, see below)


# Measured on the 2-core CPU (BENCHMARKS.md, "Proposed settings"): the trainer's steps a second at
# the batch shapes proposed below. Used only to say what a time budget means in epochs.
CPU_STEPS_PER_S = {"tiny": 90.0, "small": 8.5}
# the small LSTM with AMX_CPU_CHANGES on a 2-core Xeon with AMX: 8,334 steps in 300 s (tiny not measured there)
AMX_SMALL_STEPS_PER_S = 27.0
# the small GRU in fp32 with the defaults for a CPU without bf16 units and the compiled GRU loop, held to
# AVX2 on the slower hosts of a 2-core Xeon type, evaluations included: 2,129 steps in 300 s on two cores
# and 1,366 on one (taskset -c 0); a later, slower hour of that host type made 1,780 and 1,077. Before the
# loop, the faster host of the type ran 10.7 and 7.2 steps a second through nn.GRU.
# On the AVX2-only 2-core AMD EPYC itself: 2,282 and 1,519 steps in 304 s (7.5 and 5.0 a second).
NO_BF16_SMALL_STEPS_PER_S = {"cores": 7.1, "one core": 4.6}
GPU_STEPS_PER_S = 29.0         # the GPU defaults on an H100: 1,731 steps in their minute (BENCHMARKS.md)
SHORT_TEXT_CHARS = 50_000      # below: a tiny model, small batches, strong regularisation
MEDIUM_TEXT_CHARS = 500_000    # below: the CPU model with more dropout and early stopping


def cpu_steps_per_s(values: dict) -> float:
    """The trainer's measured steps a second for proposed CPU settings (the rates above; more than two cores
    would train faster than the two measured)."""
    if values.get("preset") != "small":
        return CPU_STEPS_PER_S.get(values.get("preset", "small"), CPU_STEPS_PER_S["small"])
    if values["precision"] == "fp32":
        return NO_BF16_SMALL_STEPS_PER_S["one core" if values["cpu_threads"] == 1 else "cores"]
    return AMX_SMALL_STEPS_PER_S if cpu_has_amx() else CPU_STEPS_PER_S["small"]


# An evaluation is a forward pass over the validation split, without a backward: it costs about 0.4 of the
# steps that hold as many tokens (the GRU 256x2 on tiny Shakespeare, held to AVX2, in 64 warmed-up streams:
# 20-23 steps of 2,048 tokens for its 111,540, on one thread and on two; 25-30 in 13 cold streams before).
# On a slow CPU a long text's evaluations would take a large share of the budget: 12 of them were 23% of
# one core's 5 minutes.
EVAL_STEPS_PER_STEP_TOKENS = 0.4
EVAL_SHARE = 0.08              # the share of the budget the evaluations may take (each curve keeps 4 points)


def eval_cost_steps(val_steps: float) -> float:
    """What one evaluation costs, in training steps, for a validation split of ``val_steps`` steps' tokens."""
    return EVAL_STEPS_PER_STEP_TOKENS * val_steps


def cpu_eval_every(budget_steps: float, epoch_steps: float, val_steps: float) -> int:
    """Steps between evaluations on the CPU: at least every two epochs, and 12 evaluations in the budget (a
    curve to read) unless they would take more than ``EVAL_SHARE`` of it, then fewer but at least 4; never
    more often than every 10 steps. ``val_steps``: the validation split's tokens over a step's."""
    evaluations = min(12.0, max(4.0, EVAL_SHARE * budget_steps / max(eval_cost_steps(val_steps), 1e-9)))
    every = min(2 * epoch_steps, budget_steps / evaluations)
    return int(max(10, round(every, -1)))


def propose_settings(corpus_chars: int, device: str = "auto") -> Proposal:
    """Settings that suit a corpus of ``corpus_chars`` characters on ``device``, with a reason for each
    choice: a short text gets a tiny, strongly regularised model, small batches, frequent evaluations
    and early stopping, so that it stops at its best validation loss; a long one gets the measured
    defaults of the device and its whole budget."""
    values, device_reason = defaults_for(device)
    on_gpu = "GPU" in device_reason.split(":", 1)[0]
    reasons = [device_reason]
    chars = max(1, int(corpus_chars))
    if not on_gpu:
        if chars < SHORT_TEXT_CHARS:
            values.update(preset="tiny", dropout=0.3, weight_decay=0.1, batch_size=16, seq_len=32, lr=3e-3,
                          max_minutes=2.0, patience=4, carry_state=False)
            reasons.append(f"a short text ({chars:,} characters): a tiny {values['arch'].upper()} with "
                           "dropout 0.3 and batches of 16 x 32 from random places, which learns it without "
                           "memorising it at once")
        elif chars < MEDIUM_TEXT_CHARS:
            values.update(dropout=0.2, lr=3e-3, max_minutes=4.0, patience=5)
            reasons.append(f"a text of {chars:,} characters: the CPU model with dropout 0.2 and 4 minutes")
        else:
            reasons.append(f"a text of {chars:,} characters: the CPU defaults, the whole budget used")
    train_chars = chars * 0.9
    tokens_per_step = values["batch_size"] * values["seq_len"]
    epoch_steps = max(1.0, train_chars / tokens_per_step)
    rate = GPU_STEPS_PER_S if on_gpu else cpu_steps_per_s(values)
    budget_steps = rate * 60 * values["max_minutes"]
    cost = ""
    if not on_gpu:
        val_steps = chars * 0.1 / tokens_per_step
        values["eval_every"] = cpu_eval_every(budget_steps, epoch_steps, val_steps)
        eval_steps = eval_cost_steps(val_steps)
        cost = f"; each costs about {eval_steps:,.0f} steps" if eval_steps >= 1 else "; each under a step"
    if values.get("patience"):
        reasons.append(f"early stopping after {values['patience']} evaluations without a better validation loss")
    reasons.append(f"an evaluation every {values['eval_every']} steps ({values['eval_every'] / epoch_steps:.2g} "
                   f"epochs of this text{cost})")
    return Proposal(values, reasons, budget_steps / epoch_steps, rate)
