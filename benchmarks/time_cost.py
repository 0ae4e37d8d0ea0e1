"""Cost of one sequence-flow training step against the trajectory length T (seed section 9.3).

Usage::

    python benchmarks/time_cost.py --out benchmarks/results/time_cost.json --figure benchmarks/figures/time_cost.png
    python benchmarks/time_cost.py --table benchmarks/results/time_cost.json [--figure benchmarks/figures/time_cost.png]

One step = the sequence rectified-flow loss (:class:`~exprflow.flows.sequence_objective.SequenceRectifiedFlow`,
random observed steps) forward and backward through a :class:`~exprflow.backbones.time_sequence.TimeSequenceBackbone`
(width 64, depth 2, batch 16 trajectories, latent dimension 10), for T = 16 ... 1,024 time steps (paul15
binned into up to 1,024 pseudotime bins has this shape; the cost does not depend on the values, so random
trajectories stand in). Mixers: ``s4d``, ``transformer`` (self-attention) and ``mamba`` (chunked Mamba-2
scan). Time: median wall seconds of 3 steps after one warm-up, and the process's CPU seconds per step
(user + system; the figure shows these: on a shared, overloaded machine wall time mostly measures the
wait for a core), 1 torch thread. Memory: peak resident set size
(``VmHWM``) growth over the process's size before its first step; each mixer runs in its own process
with T ascending, so the peak at T is that of the largest step so far. The log-log slope between the two
longest lengths says how the cost grows (1 = linear, 2 = quadratic).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench_common import cpu_seconds, status_mb
from trajectories import table_or_worker

#: the smoke configuration of ``python -m benchmarks time_cost --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--mixers", "s4d", "--lengths", "8", "16", "--batch", "2", "--width", "8", "--depth", "1", "--out", "{tmp}/time_cost.json"]

LENGTHS = [16, 32, 64, 128, 256, 512, 1024]
MIXERS = ["s4d", "transformer", "mamba"]


def measure(mixer: str, lengths: list[int], batch: int, width: int, depth: int, dim: int) -> list[dict]:
    """Time and peak memory of one training step per length (in this process)."""
    import torch

    from exprflow.backbones.time_sequence import TimeSequenceBackbone
    from exprflow.flows.sequence_objective import SequenceRectifiedFlow

    torch.set_num_threads(1)
    torch.manual_seed(0)
    kwargs = {"mamba": {"scan": "chunked"}}
    model = TimeSequenceBackbone(dim, backbone=mixer, width=width, depth=depth, mixer_kwargs=kwargs)
    params = sum(p.numel() for p in model.parameters())
    base = status_mb("VmRSS")
    rows = []
    for T in lengths:
        objective = SequenceRectifiedFlow(torch.linspace(0, 1, T), torch.ones(T, dtype=torch.bool))
        x1 = torch.randn(batch, T, dim)

        def step() -> float:
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            objective.loss(model, x1).backward()
            return time.perf_counter() - start

        step()  # warm-up
        cpu0 = cpu_seconds()
        times = [step() for _ in range(3)]
        rows.append({"mixer": mixer, "T": T, "step_s": statistics.median(times), "cpu_s_per_step": (cpu_seconds() - cpu0) / 3,
                     "peak_mb": status_mb("VmHWM") - base, "params": params, "batch": batch, "width": width,
                     "depth": depth, "torch_threads": torch.get_num_threads()})
        logging.warning("%s T=%d: %.4f s/step, peak +%.0f MB", mixer, T, rows[-1]["step_s"], rows[-1]["peak_mb"])
    return rows


def slope(rows: list[dict], key: str) -> float:
    """Log-log slope of ``key`` between the two longest lengths."""
    import math

    a, b = sorted(rows, key=lambda r: r["T"])[-2:]
    return math.log(max(b[key], 1e-9) / max(a[key], 1e-9)) / math.log(b["T"] / a["T"])


def markdown(result: dict) -> str:
    runs = result["runs"]
    mixers = list(dict.fromkeys(r["mixer"] for r in runs))
    lengths = sorted({r["T"] for r in runs})
    get = {(r["mixer"], r["T"]): r for r in runs}
    head = "| T | " + " | ".join(f"{m} s/step (cpu s) | {m} peak MB" for m in mixers) + " |"
    lines = [f"batch {runs[0]['batch']}, width {runs[0]['width']}, depth {runs[0]['depth']}, torch threads "
             f"{runs[0]['torch_threads']}; params " + ", ".join(f"{m} {get[(m, lengths[0])]['params']:,}" for m in mixers),
             "", head, "|---|" + "---|---|" * len(mixers)]
    for T in lengths:
        cells = [f"{get[(m, T)]['step_s']:.3f} ({get[(m, T)]['cpu_s_per_step']:.3f}) | {get[(m, T)]['peak_mb']:.0f}"
                 if (m, T) in get else "n/a | n/a" for m in mixers]
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    lines.append("| log-log slope (last two T) | " + " | ".join(
        f"{slope([r for r in runs if r['mixer'] == m], 'step_s'):.2f} "
        f"({slope([r for r in runs if r['mixer'] == m], 'cpu_s_per_step'):.2f}) | "
        f"{slope([r for r in runs if r['mixer'] == m], 'peak_mb'):.2f}" for m in mixers) + " |")
    return "\n".join(lines)


def figure(result: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    from exprflow.plotting._utils import finish

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for mixer in dict.fromkeys(r["mixer"] for r in result["runs"]):
        rows = sorted((r for r in result["runs"] if r["mixer"] == mixer), key=lambda r: r["T"])
        T = [r["T"] for r in rows]
        axes[0].plot(T, [r["cpu_s_per_step"] for r in rows], "o-", label=mixer)
        axes[1].plot(T, [max(r["peak_mb"], 1e-1) for r in rows], "o-", label=mixer)
    for ax, label in zip(axes, ["CPU seconds per training step", "peak memory growth (MB)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("trajectory length T (time steps)")
        ax.set_ylabel(label)
        ax.legend(frameon=False)
    axes[0].set_title("sequence flow step vs T (1 thread)")
    finish(fig, path, show=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mixers", nargs="+", default=MIXERS)
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--dim", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--figure", type=Path)
    parser.add_argument("--table", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    opts = [args.lengths, args.batch, args.width, args.depth, args.dim]
    if args.table and args.figure:  # redraw the figure of a saved result
        figure(json.loads(args.table.read_text()), args.figure)
    if table_or_worker(args, markdown, lambda mixer: measure(mixer, *opts)):
        return
    from exprflow.io import write_text_atomic

    result = {"settings": {k: v for k, v in vars(args).items() if k in ("lengths", "batch", "width", "depth", "dim")},
              "runs": []}
    for mixer in args.mixers:
        cmd = [sys.executable, __file__, "--worker", mixer, "--lengths", *map(str, args.lengths), "--batch",
               str(args.batch), "--width", str(args.width), "--depth", str(args.depth), "--dim", str(args.dim)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            logging.warning("%s failed:\n%s", mixer, proc.stderr[-3000:])
            continue
        result["runs"] += json.loads(proc.stdout.strip().splitlines()[-1])
        if args.out is not None:
            write_text_atomic(json.dumps(result, indent=2), args.out)
    if args.figure is not None:
        figure(result, args.figure)
    logging.warning("\n%s", markdown(result))


if __name__ == "__main__":
    main()
