"""Batch-1 sampling's matrix-vector products: read in the same order every step, every other step
in another order, or every other step in reverse (what ``fused_step.FusedRnnStep.step`` and the
compiled loop do for two layers; with more, the other order).

A 2x256 LSTM step reads three 1 MB matrices (a GRU's three 768 KB), more than a 2 MB L2 holds: read in
the same order every step, each is evicted before its next use. Here the products alone, 1x256 by
256xG like the sampler's (transposed views), in one process, blocks of each order alternated; a
ratio above 1 is what an order saves against the same order every step. Run it on one core (``taskset -c 0``).

    .venv/bin/python benchmarks/bench_step_order.py [--quick] [--blocks N] [--steps N]
"""
from __future__ import annotations

import argparse
import time

import torch
from common import describe, emit, machine, median, table

CASES = [("3 x 1 MB (LSTM 2x256)", 1024), ("3 x 768 KB (GRU 2x256)", 768)]


class Products:
    """Three (1, 256) x (256, G) products with their biases and output rows, as a 2-layer step has."""

    def __init__(self, gates: int) -> None:
        self.weights = [torch.randn(gates, 256).t() for _ in range(3)]   # (256, G) views
        self.biases = [torch.randn(gates) for _ in range(3)]
        self.inputs = [torch.randn(1, 256) for _ in range(3)]
        self.outputs = [torch.empty(1, gates) for _ in range(3)]

    def product(self, i: int) -> None:
        torch.addmm(self.biases[i], self.inputs[i], self.weights[i], out=self.outputs[i])

    def run(self, orders: tuple[tuple[int, ...], ...], steps: int) -> None:
        """``steps`` steps, step i reading the matrices in ``orders[i % len(orders)]``."""
        for step in range(steps):
            for i in orders[step % len(orders)]:
                self.product(i)


# matrices 0, 1, 2: layer 0's hidden, layer 1's input, layer 1's hidden projection (A, B, C).
# "alternated": A, B, C, then the hidden products first from the last layer down and layer 1's input
# last (C, A, B). "mirrored": layer 0's hidden projection made a step ahead frees the order of all
# three, so A, B, C then C, B, A (the sampler's order for two layers).
ORDERS = {"same": ((0, 1, 2),), "alternated": ((0, 1, 2), (2, 0, 1)), "mirrored": ((0, 1, 2), (2, 1, 0))}


def measure(gates: int, blocks: int, steps: int) -> dict:
    products = Products(gates)
    times: dict[str, list[float]] = {name: [] for name in ORDERS}
    with torch.inference_mode():
        for orders in ORDERS.values():   # warm-up
            products.run(orders, max(steps // 4, 1))
        for _ in range(blocks):
            for name, orders in ORDERS.items():
                start = time.perf_counter()
                products.run(orders, steps)
                times[name].append((time.perf_counter() - start) / steps * 1e6)
    row: dict = dict(gates=gates)
    for name, block_times in times.items():
        row[f"{name}_us"] = median(block_times)
        row[f"{name}_blocks_us"] = block_times
    for name in ("alternated", "mirrored"):
        row[f"same_over_{name}"] = row["same_us"] / row[f"{name}_us"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two short blocks: checks the script runs")
    parser.add_argument("--blocks", type=int, default=10, help="alternated blocks of each order (default 10)")
    parser.add_argument("--steps", type=int, default=2000, help="steps per block (default 2000)")
    parser.add_argument("--cpu-only", action="store_true", help="accepted for symmetry: this runs on the CPU")
    args = parser.parse_args()
    blocks, steps = (2, 20) if args.quick else (args.blocks, args.steps)
    info = machine()
    print(describe(info))
    rows = []
    for name, gates in CASES:
        row = dict(products=name, **measure(gates, blocks, steps))
        rows.append(row)
        print(f"  {name}: " + ", ".join(f"{order} {row[order + '_us']:.1f}" for order in ORDERS) + " us/step")
    print(f"us per step: median of {blocks} alternated blocks of {steps} steps")
    print(table(["products a step", "same order us/step", "alternated us/step", "mirrored us/step",
                 "same / alternated", "same / mirrored"],
                [(r["products"], r["same_us"], r["alternated_us"], r["mirrored_us"],
                  round(r["same_over_alternated"], 2), round(r["same_over_mirrored"], 2)) for r in rows]))
    emit("step_order", dict(machine=info, quick=args.quick, rows=rows))


if __name__ == "__main__":
    main()
