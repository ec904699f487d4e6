"""Trainer overhead: tokens/s of textgen_core's Trainer against a bare PyTorch loop, in one process.

Both sides use the same model (same initial weights), batch, sequence length, precision and AdamW
settings; the bare loop has no schedule, no clipping, no logging and never reads the loss.

On the CPU the two run in lockstep: after each Trainer step comes one bare step, so every step of
either side meets the same machine load (a shared 2-core machine's bursts last seconds, and runs
that alternate as wholes met different bursts: pair ratios spread from 0.77 to 1.34). The Trainer's
step is timed from the end of the previous bare step, so its loop, schedule, progress report (one
every step here) and clipping count. A run's speed is its median step.
On a GPU the runs alternate as wholes (trainer, bare | bare, trainer | ...), each timed from the
start of its step ``warmup`` to the end of its last step with a device sync at both ends only, so
the Trainer's loss reads and everything it does between steps count; the validation pass at the
end does not. The ratio is the geometric mean of the pairs' ratios; the ratio of the fastest steps
of each side is printed too (other processes' load only adds time).

Configurations: GRU and LSTM 2x256, batch 64 x 128, fp32 on the CPU; on a CUDA GPU (named in the
output) GRU 1024x1 batch 64 x 100 and LSTM 512x2 batch 512 x 256 in the trainer's GPU precision (bf16
autocast). Without a GPU those rows are skipped with a line saying so.

    python benchmarks/bench_trainer.py             # full run (about 4 minutes on 2 cores)
    python benchmarks/bench_trainer.py --quick     # tiny model, a few steps, for the smoke test
    python benchmarks/bench_trainer.py --gpu-only --only "gru 1024x1" --ablation --profile   # where a gap comes from
"""
from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Callable
from statistics import geometric_mean

import torch
import torch.nn.functional as F
from common import describe, emit, find_corpus, interleave, machine, median, sync, table

from textgen_core.data import TokenSplit, random_windows, to_id_tensor
from textgen_core.evaluation import autocast_for
from textgen_core.models import ModelConfig, build_model
from textgen_core.tokenizers import CharTokenizer
from textgen_core.training import TrainConfig, Trainer

CPU_CASES = [
    dict(name="gru 2x256", arch="gru", embedding=64, hidden=256, layers=2, batch=64, seq=128),
    dict(name="lstm 2x256", arch="lstm", embedding=64, hidden=256, layers=2, batch=64, seq=128),
]
GPU_CASES = [
    dict(name="gru 1024x1", arch="gru", embedding=256, hidden=1024, layers=1, batch=64, seq=100),
    dict(name="lstm 512x2", arch="lstm", embedding=128, hidden=512, layers=2, batch=512, seq=256),
]
QUICK_CASE = dict(name="gru 1x32 (quick)", arch="gru", embedding=16, hidden=32, layers=1, batch=8, seq=16)


def load_ids(synthetic: bool = False) -> tuple[torch.Tensor, int]:
    """Tiny Shakespeare as char ids when present, else (or when asked) random ids over 65 symbols."""
    path = None if synthetic else find_corpus()
    if path is None:
        size = 50_000 if synthetic else 1_000_000
        return torch.randint(0, 65, (size,), generator=torch.Generator().manual_seed(0)).short(), 65
    text = path.read_text(encoding="utf-8")
    tokenizer = CharTokenizer().fit(text)
    return to_id_tensor(tokenizer.encode(text), tokenizer.vocab_size), tokenizer.vocab_size


def trainer_run(model, split: TokenSplit, case: dict, device: torch.device, steps: int, warmup: int,
                grad_clip: float = 1.0, profiler=None) -> list[float]:
    """Seconds per step of Trainer.fit from the start of its step ``warmup`` to the end of its last
    step, with a device sync at both ends only, as in the bare loop (the GPU way): its own loss reads
    happen in between, as they would. ``profiler`` (torch.profiler) runs over the same steps."""
    trainer = Trainer(model, split, trainer_config(case, device, steps, grad_clip, log_every=10))
    stamps, train_step = [], trainer._train_step

    def stamped_step() -> torch.Tensor:   # the Trainer's step, with a clock around it
        if trainer.step == warmup:
            stamps.append(synced_clock(device, start=profiler))
        loss = train_step()
        if trainer.step == steps - 1:
            stamps.append(synced_clock(device, stop=profiler))
        return loss

    trainer._train_step = stamped_step
    trainer.fit()
    return [(stamps[-1] - stamps[0]) / (steps - warmup)]


def synced_clock(device: torch.device, start=None, stop=None) -> float:
    """The time once the device has caught up; starts or stops a profiler there."""
    sync(device)
    if start is not None:
        start.start()
    now = time.perf_counter()   # the profiler's own start and stop stay outside the timed span
    if stop is not None:
        stop.stop()
    return now


def trainer_config(case: dict, device: torch.device, steps: int, grad_clip: float, log_every: int) -> TrainConfig:
    return TrainConfig(batch_size=case["batch"], seq_len=case["seq"], lr=3e-3, max_steps=steps,
                       eval_every=steps, log_every=log_every, device=device.type, seed=0,
                       precision=case.get("precision", "auto"), grad_clip=grad_clip)


def bare_stepper(model, split: TokenSplit, case: dict, device: torch.device, clip: bool = False,
                 read_every: int = 0) -> Callable[[], None]:
    """One step per call of the plainest loop that trains the same model the same way (``clip``:
    with torch's gradient clipping, as the Trainer clips; ``read_every``: with ``.item()`` on the
    summed loss every that many steps, a host sync each time)."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    model = model.to(device).train()
    ids = split.train.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.01,
                                  fused=device.type == "cuda")
    generator = torch.Generator().manual_seed(0)
    loss_sum = torch.zeros((), device=device)
    done = 0

    def step() -> None:
        nonlocal done
        inputs, targets = random_windows(ids, case["batch"], case["seq"], generator)
        with autocast_for(device, precision):
            logits, _ = model(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        done += 1
        if read_every:
            loss_sum.add_(loss.detach())
            if done % read_every == 0:
                loss_sum.item()

    return step


def bare_run(step: Callable[[], None], device: torch.device, steps: int, warmup: int,
             profiler=None) -> list[float]:
    """Seconds per step of ``steps`` calls of a bare ``step``, timed (and profiled, with
    ``profiler``) after ``warmup`` of them."""
    for _ in range(warmup):
        step()
    start = synced_clock(device, start=profiler)
    for _ in range(steps - warmup):
        step()
    return [(synced_clock(device, stop=profiler) - start) / (steps - warmup)]


def lockstep_run(model, split: TokenSplit, case: dict, device: torch.device, steps: int, warmup: int,
                 others: dict[str, Callable[[], None]], grad_clip: float = 1.0) -> dict[str, list[float]]:
    """The CPU way: Trainer.fit with one step of every bare loop in ``others`` after each of its own
    steps, so that every step of either side meets the same machine load. Seconds per step after
    ``warmup``: the Trainer's step counts from the end of the previous bare steps (so its loop,
    schedule, reports and clipping count); each bare step is timed alone. The host is the device:
    no syncs are needed to separate the steps."""
    # a report (a loss read and an event) at every step: the Trainer's costliest logging
    trainer = Trainer(model, split, trainer_config(case, device, steps, grad_clip, log_every=1))
    times: dict[str, list[float]] = {"trainer": [], **{name: [] for name in others}}
    train_step, last = trainer._train_step, [0.0]

    def step_then_others() -> torch.Tensor:
        loss = train_step()
        now = time.perf_counter()
        timed = trainer.step >= warmup
        if timed:
            times["trainer"].append(now - last[0])
        for name, other in others.items():
            start = time.perf_counter()
            other()
            if timed:
                times[name].append(time.perf_counter() - start)
        last[0] = time.perf_counter()
        return loss

    trainer._train_step = step_then_others
    trainer.fit()
    return times


LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def profile_sides(fresh: Callable, split: TokenSplit, case: dict, device: torch.device, steps: int,
                  warmup: int, top: int = 12) -> dict:
    """torch.profiler over the timed steps of each side: wall time, host time inside torch ops,
    device (kernel) time and kernel launches per step, and each side's costliest ops on the host.
    If the Trainer's wall time per step exceeds the bare loop's while its device time does not, the
    gap is on the host: launches and Python between them, or waits."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    n = steps - warmup
    summary = {}
    sides = {"trainer": lambda prof: trainer_run(fresh(), split, case, device, steps, warmup, profiler=prof),
             "bare": lambda prof: bare_run(bare_stepper(fresh(), split, case, device), device, steps, warmup, prof)}
    for name, run in sides.items():
        prof = profile(activities=activities)
        (seconds_per_step,) = run(prof)
        events = prof.key_averages()
        summary[name] = {
            "wall_ms": 1e3 * seconds_per_step,
            "host_op_ms": sum(e.self_cpu_time_total for e in events) / n / 1e3,
            "device_ms": sum(getattr(e, "self_device_time_total", 0) for e in events if e.device_type.name != "CPU")
                         / n / 1e3,
            "launches": sum(e.count for e in events if e.key in LAUNCH_CALLS) / n,
            "ops": sum(e.count for e in events if e.key.startswith("aten::")) / n,
        }
        print(f"  profile {case['name']} {name}: " + ", ".join(
            f"{key} {value:,.2f}" for key, value in summary[name].items()) + " (per step)", flush=True)
        print(events.table(sort_by="self_cpu_time_total", row_limit=top), flush=True)
    return summary


def measure(case: dict, device: torch.device, ids: torch.Tensor, vocab: int, steps: int, warmup: int,
            repeats: int, ablation: bool = False, whole_runs: bool = False, profile: bool = False) -> dict:
    """tokens/s from the median step time of each side, and their ratio.

    On the CPU each repeat is one lockstep run (Trainer and bare steps alternating); on a GPU, or
    with ``whole_runs``, the runs alternate as wholes (T B | B T | ...), each timed after its
    warm-up steps. ``ablation``
    adds, to find where a gap comes from: the Trainer without gradient clipping, the bare loop with
    it, and the bare loop with a loss read (a sync) every 10 steps."""
    torch.manual_seed(0)
    config = ModelConfig.from_preset(case["arch"], "small", vocab, embedding=case["embedding"],
                                     hidden=case["hidden"], layers=case["layers"])
    initial = build_model(config)
    n_val = max(case["seq"] * 4, len(ids) // 100)
    split = TokenSplit(train=ids[:-n_val], val=ids[-n_val:])
    fresh = lambda: copy.deepcopy(initial)  # noqa: E731  every run starts from the same weights
    bare_variants = {"bare": {}}
    if ablation:
        bare_variants.update(bare_with_clip=dict(clip=True), bare_with_syncs=dict(read_every=10))
    in_lockstep = device.type == "cpu" and not whole_runs
    own_bare: dict[str, list[list[float]]] = {}   # a variant's bare runs, where not the main ones
    if in_lockstep:
        def lockstep(grad_clip: float, variants: dict) -> dict[str, list[float]]:
            others = {name: bare_stepper(fresh(), split, case, device, **options) for name, options in variants.items()}
            return lockstep_run(fresh(), split, case, device, steps, warmup, others, grad_clip)

        lockstep(1.0, bare_variants)   # warm-up: first-call costs fall here
        runs = [lockstep(1.0, bare_variants) for _ in range(repeats)]
        values = {name: [run[name] for run in runs] for name in runs[0]}
        if ablation:   # the Trainer without clipping, in lockstep with a bare loop of its own
            no_clip = [lockstep(0.0, {"bare": {}}) for _ in range(repeats)]
            values["trainer_no_clip"] = [run["trainer"] for run in no_clip]
            own_bare = {"trainer_no_clip": [run["bare"] for run in no_clip]}
    else:
        runs = {"trainer": lambda: trainer_run(fresh(), split, case, device, steps, warmup)}
        for name, options in bare_variants.items():
            runs[name] = lambda options=options: bare_run(bare_stepper(fresh(), split, case, device, **options),
                                                          device, steps, warmup)
        if ablation:
            runs["trainer_no_clip"] = lambda: trainer_run(fresh(), split, case, device, steps, warmup, grad_clip=0.0)
        for run in runs.values():  # warm-up: first-call costs (allocator, kernels, CUDA context) fall here
            run()
        values = interleave(runs, repeats)
    tokens = case["batch"] * case["seq"]
    trainer_steps = [t for run in values["trainer"] for t in run]
    bare_steps = [t for run in values["bare"] for t in run]

    def pair_ratio(variant: str) -> float:   # bare / variant, a geometric mean over run pairs
        bare_runs = own_bare.get(variant, values["bare"])
        return geometric_mean([median(b) / median(v) for v, b in zip(values[variant], bare_runs)])

    row = {"device": device.type, "config": case["name"], "batch": case["batch"], "seq_len": case["seq"],
           "precision": "bf16" if device.type == "cuda" else "fp32", "timed_steps_per_side": len(bare_steps),
           "repeats": repeats, "lockstep": in_lockstep,
           "trainer_tok_s": tokens / median(trainer_steps), "bare_tok_s": tokens / median(bare_steps),
           # each pair ran side by side: the geometric mean of their ratios cancels the load they met
           "ratio": pair_ratio("trainer"),
           "ratio_pooled_medians": median(bare_steps) / median(trainer_steps),
           # fastest step of each side: other processes' load only ever adds time
           "ratio_best": min(bare_steps) / min(trainer_steps),
           "run_ratios": [round(median(b) / median(t), 3) for t, b in zip(values["trainer"], values["bare"])]}
    if profile:
        row["profile"] = profile_sides(fresh, split, case, device, steps, warmup)
    for name in [n for n in values if n not in ("trainer", "bare")]:
        row[f"{name}_tok_s"] = tokens / median([t for run in values[name] for t in run])
        row[f"{name}_ratio"] = pair_ratio(name)
        print(f"    {name}: {row[f'{name}_tok_s']:,.0f} tok/s, bare / it {row[f'{name}_ratio']:.3f}", flush=True)
    print(f"  {device.type} {case['name']}: trainer {row['trainer_tok_s']:,.0f} tok/s, bare "
          f"{row['bare_tok_s']:,.0f} tok/s, ratio {row['ratio']:.3f} (fastest steps {row['ratio_best']:.3f}; "
          f"per run pair {row['run_ratios']})",
          flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model and few steps: checks the script runs")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved runs per side (default 6)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run (default: 8 CPU, 200 GPU)")
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--gpu-only", action="store_true", help="skip the CPU rows")
    parser.add_argument("--only", nargs="*", help="configurations by name, e.g. 'gru 2x256'")
    parser.add_argument("--ablation", action="store_true", help="also time the Trainer without clipping, and "
                        "the bare loop with clipping or with a loss read every 10 steps (where does a gap come from?)")
    parser.add_argument("--whole-runs", action="store_true", help="on the CPU too, alternate whole runs "
                        "(the GPU way) instead of single steps")
    parser.add_argument("--profile", action="store_true", help="then run each side once under torch.profiler: "
                        "wall, host-op and device time, launches and aten ops per step, and the costliest ops")
    args = parser.parse_args()
    info = machine()
    print(describe(info))
    ids, vocab = load_ids(synthetic=args.quick)
    rows = []
    if args.quick:
        rows.append(measure(QUICK_CASE, torch.device("cpu"), ids, vocab, steps=6, warmup=2, repeats=args.repeats or 1,
                            ablation=args.ablation, whole_runs=args.whole_runs, profile=args.profile))
    elif not args.gpu_only:
        timed = args.steps or 8
        for case in [c for c in CPU_CASES if not args.only or c["name"] in args.only]:
            rows.append(measure(case, torch.device("cpu"), ids, vocab, steps=timed + 2, warmup=2,
                                repeats=args.repeats or 6, ablation=args.ablation, whole_runs=args.whole_runs,
                                profile=args.profile))
    if torch.cuda.is_available() and not args.cpu_only:
        print(f"GPU: {info['gpu']}")
        timed = args.steps or (5 if args.quick else 200)
        for case in ([QUICK_CASE] if args.quick else [c for c in GPU_CASES if not args.only or c["name"] in args.only]):
            rows.append(measure(case, torch.device("cuda"), ids, vocab, steps=timed + 10, warmup=10,
                                repeats=args.repeats or (1 if args.quick else 6), ablation=args.ablation,
                                profile=args.profile))
    else:
        print("GPU rows (gru 1024x1 B64 T100, lstm 512x2 B512 T256): not measured (no CUDA GPU in this session)"
              if not torch.cuda.is_available() else "GPU rows: skipped (--cpu-only)")
    print()
    print(table(["device", "config", "batch x seq", "precision", "trainer tok/s", "bare tok/s",
                 "ratio (geo. mean of pairs)", "ratio (fastest steps)", "target"],
                [(info.get("gpu", "cuda") if r["device"] == "cuda" else "cpu", r["config"],
                  f"{r['batch']} x {r['seq_len']}", r["precision"], r["trainer_tok_s"], r["bare_tok_s"],
                  f"{r['ratio']:.3f}", f"{r['ratio_best']:.3f}", ">= 0.95") for r in rows]))
    emit("trainer_overhead", {"machine": info, "quick": args.quick, "rows": rows,
                              "min_ratio": min(r["ratio"] for r in rows)})


if __name__ == "__main__":
    main()
