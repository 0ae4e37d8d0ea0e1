"""Training-step cost of the nucleotide LMs vs context length (issue 7, part 3): Hyena vs Transformer.

Usage::

    nice -n 10 python benchmarks/dna_cost.py --out benchmarks/results/dna_cost.json \
        --figure benchmarks/figures/dna_cost.png
    python benchmarks/dna_cost.py --out benchmarks/results/dna_cost.json --table-only   # re-print, re-plot

Each (backbone, context) runs in its own child process with 1 torch thread: the whole language model
of ``benchmarks/dna.py`` (Hyena width 64 depth 2; Transformer at the matched width, see
:func:`dna.matched_width`), batch 1, one training step = forward + backward of the next-nucleotide loss
on random tokens. Reported: median wall and CPU seconds (CPU seconds are the figure's measure: the machine is shared,
so wall time includes waiting for a core) (warm-up, then 3 repeats up to 4k, 1 above)
and the step's memory (peak RSS minus RSS before it). A context whose step is projected (log-log
extrapolation of the last two lengths) to take more than ``--max-seconds`` CPU seconds is skipped and reported.
Slopes are least-squares fits of log(seconds) on log(context) over the measured lengths >= 2k
(short contexts are dominated by fixed per-call overheads).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import cpu_seconds, save_figure, status_mb

#: the smoke configuration of ``python -m benchmarks dna_cost --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--contexts", "256", "--backbones", "hyena", "transformer", "--out", "{tmp}/dna_cost.json"]

CONTEXTS = [1024, 2048, 4096, 8192, 16384, 32768]
BACKBONES = ["hyena", "transformer"]


def child(backbone: str, context: int, width: int, depth: int) -> dict:
    """Time one training step of the LM in this process."""
    import resource

    import torch

    torch.set_num_threads(1)
    from exprflow.backbones.nucleotide import CausalNucleotideNet, count_parameters
    from exprflow.training.nucleotide import next_token_bits

    torch.manual_seed(0)
    net = CausalNucleotideNet(backbone, width=width, depth=depth)
    tokens = torch.randint(0, 4, (1, context + 1))
    repeats = 3 if context <= 4096 else 1

    def step() -> None:
        net.zero_grad(set_to_none=True)
        next_token_bits(net, tokens).backward()

    rss_before = status_mb()
    step()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        c0, w0 = cpu_seconds(), time.perf_counter()
        step()
        walls.append(time.perf_counter() - w0)
        cpus.append(cpu_seconds() - c0)
    return {"backbone": backbone, "context": context, "width": width, "depth": depth, "batch": 1,
            "parameters": count_parameters(net), "repeats": repeats, "wall_s": float(np.median(walls)),
            "cpu_s": float(np.median(cpus)), "step_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            - rss_before, "torch_threads": torch.get_num_threads()}


def slope(rows: list[dict], key: str, min_context: int = 2048) -> float | None:
    ok = [r for r in rows if key in r and r["context"] >= min_context]
    if len(ok) < 2:
        return None
    x, y = np.log([r["context"] for r in ok]), np.log([max(r[key], 1e-9) for r in ok])
    return float(np.polyfit(x, y, 1)[0])


def table(results: list[dict]) -> str:
    contexts = sorted({r["context"] for r in results})
    lines = ["| backbone (params) | " + " | ".join(f"{c // 1024}k" for c in contexts)
             + " | slope CPU-s | slope wall s | slope memory |", "|---" * (len(contexts) + 4) + "|"]
    for bb in BACKBONES:
        rows = [r for r in results if r["backbone"] == bb]
        if not rows:
            continue
        by = {r["context"]: r for r in rows}
        cells = []
        for c in contexts:
            r = by.get(c)
            cells.append("" if r is None else f"skipped ({r['skipped']})" if "skipped" in r else
                         f"{r['wall_s']:.3f} s ({r['cpu_s']:.2f} CPU-s) / {r['step_mb']:.0f} MB")
        params = next((r["parameters"] for r in rows if "parameters" in r), "?")
        slopes = [slope(rows, key) for key in ("cpu_s", "wall_s", "step_mb")]
        lines.append(f"| {bb} ({params:,}) | " + " | ".join(cells) + " | "
                     + " | ".join("" if v is None else f"{v:.2f}" for v in slopes) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for bb in BACKBONES:
        rows = sorted((r for r in results if r["backbone"] == bb and "wall_s" in r), key=lambda r: r["context"])
        if not rows:
            continue
        n = [r["context"] for r in rows]
        for ax, key in zip(axes, ["cpu_s", "step_mb"]):
            s = slope(rows, key)
            ax.plot(n, [r[key] for r in rows], "o-", label=f"{bb} (slope {s:.2f})" if s is not None else bb)
    for ax, label in zip(axes, ["CPU seconds per training step (forward+backward)", "step memory, MB (peak RSS increase)"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("context (nucleotides)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
        ax.legend()
    save_figure(fig, path, "Nucleotide LM training step vs context, batch 1, 1 torch thread (slopes fitted from 2k)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contexts", type=int, nargs="+", default=CONTEXTS)
    parser.add_argument("--backbones", nargs="+", default=BACKBONES, choices=BACKBONES)
    parser.add_argument("--max-seconds", type=float, default=120.0, help="skip a step projected to take more CPU seconds")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--figure", type=Path, default=None)
    parser.add_argument("--table-only", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from dna import DEPTH, WIDTH, matched_width

    from exprflow.io import write_text_atomic

    results = json.loads(args.out.read_text()) if args.out.exists() else []
    widths = {"hyena": WIDTH, "transformer": matched_width(WIDTH, DEPTH)}
    for bb in [] if args.table_only else args.backbones:
        done = {r["context"]: r for r in results if r["backbone"] == bb}
        for context in sorted(args.contexts):
            if context in done:
                continue
            ok = sorted((r for r in results if r["backbone"] == bb and "wall_s" in r), key=lambda r: r["context"])
            if len(ok) >= 2:
                a, b = ok[-2], ok[-1]
                k = math.log(b["cpu_s"] / a["cpu_s"]) / math.log(b["context"] / a["context"])
                projected = b["cpu_s"] * (context / b["context"]) ** max(k, 1.0)
                if projected > args.max_seconds:
                    results.append({"backbone": bb, "context": context,
                                    "skipped": f"projected {projected:.0f} CPU-s > {args.max_seconds:.0f}"})
                    write_text_atomic(json.dumps(results, indent=2), args.out)
                    continue
            cmd = [sys.executable, __file__, "--child", bb, str(context), str(widths[bb]), str(DEPTH)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            row = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                "backbone": bb, "context": context, "skipped": f"failed (exit {proc.returncode}): {proc.stderr[-200:]}"}
            logging.info("%s", row)
            results.append(row)
            write_text_atomic(json.dumps(results, indent=2), args.out)
    logging.info("\n%s", table(results))
    if args.figure:
        plot(results, args.figure)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        sys.stdout.write(json.dumps(child(sys.argv[2], *(int(a) for a in sys.argv[3:6]))) + "\n")
    else:
        main()
