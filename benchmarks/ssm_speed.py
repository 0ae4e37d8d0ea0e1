"""Cost of one sequence-mixing layer (issue 4): forward + backward vs sequence length, per mixer.

Usage::

    python benchmarks/ssm_speed.py --out benchmarks/results/ssm_speed.json
    python benchmarks/ssm_speed.py --table benchmarks/results/ssm_speed.json     # re-print
    python benchmarks/ssm_speed.py --plot benchmarks/results/ssm_speed.json benchmarks/figures/ssm_speed.png

Each (mixer, length) runs in its own child process: one bidirectional mixer layer (S4D, Hyena, Mamba
with either scan, multi-head attention; each with its input/output projections), batch 32, width 128,
float32, a random input, loss = mean of the squared output. The row ``channel_mlp`` is the rest of a
backbone block (the width -> 2 width -> width MLP that every mixer shares), for scale. Reported: median wall and CPU seconds of one forward+backward (3 repeats after a
warm-up up to length 1,024, 1 repeat above), and the child's peak RSS (``ru_maxrss``) with its RSS just
before the first step (so the step's own memory is the difference). A configuration whose peak memory, extrapolated
linearly from the previous length, would pass ``--max-gb`` is skipped and reported as such.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_common import save_figure, status_mb

#: the smoke configuration of ``python -m benchmarks ssm_speed --smoke`` (seconds; ``{tmp}``: a temporary folder)
SMOKE_ARGS = ["--rows", "s4d", "hyena", "--lengths", "64", "--batch", "2", "--width", "8", "--threads", "1", "--out", "{tmp}/ssm_speed.json"]

MIXERS = {
    "s4d": ("s4d", {"state_dim": 64}),
    "hyena": ("hyena", {}),
    "mamba_reference": ("mamba", {"scan": "reference"}),
    "mamba_chunked": ("mamba", {"scan": "chunked", "chunk_size": 64}),
    "transformer": ("attention", {"n_heads": 4}),
    "channel_mlp": (None, {}),
}
LENGTHS = [64, 256, 1024, 4096, 16384]


def run_one(row: str, length: int, batch: int, width: int, threads: int) -> dict:
    """Time one layer's forward + backward in this process."""
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from exprflow.backbones.gene_sequence import GeneSequenceBackbone  # noqa: F401 (registers the mixers)
    from exprflow.backbones.sequence import MIXERS as REGISTRY

    torch.manual_seed(0)
    mixer, kwargs = MIXERS[row]
    if mixer is None:
        block = torch.nn.Sequential(torch.nn.Linear(width, 2 * width), torch.nn.GELU(), torch.nn.Linear(2 * width, width))
    else:
        block = REGISTRY.get(mixer)(width, causal=False, **kwargs)
    h = torch.randn(batch, length, width, requires_grad=True)
    repeats = 3 if length <= 1024 else 1

    def step() -> None:
        block.zero_grad(set_to_none=True)
        block(h).square().mean().backward()

    rss_before = status_mb()
    if repeats > 1:
        step()  # warm-up
    walls, cpus = [], []
    for _ in range(repeats):
        u0 = resource.getrusage(resource.RUSAGE_SELF)
        w0 = time.perf_counter()
        step()
        walls.append(time.perf_counter() - w0)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime)
    return {"row": row, "length": length, "batch": batch, "width": width, "repeats": repeats,
            "median_wall_s": float(np.median(walls)), "median_cpu_s": float(np.median(cpus)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": rss_before, "torch_threads": torch.get_num_threads(),
            "parameters": sum(p.numel() for p in block.parameters())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=list(MIXERS), choices=list(MIXERS))
    parser.add_argument("--lengths", type=int, nargs="+", default=LENGTHS)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--max-gb", type=float, default=18.0, help="skip a run projected to need more")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per child process")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each child")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from exprflow.io import write_text_atomic

    results = json.loads(args.out.read_text()) if args.out.exists() else []
    done = {(r["row"], r["length"]) for r in results}
    for row in args.rows:
        previous = None
        for length in sorted(args.lengths):
            if (row, length) in done:
                previous = next(r for r in results if (r["row"], r["length"]) == (row, length))
                continue
            if previous is not None and "peak_rss_mb" in previous:
                step_mb = previous["peak_rss_mb"] - previous["rss_before_mb"]
                projected = previous["rss_before_mb"] + step_mb * length / previous["length"]
                if projected > args.max_gb * 1024:
                    results.append({"row": row, "length": length, "skipped": f"projected {projected / 1024:.1f} GB"})
                    write_text_atomic(json.dumps(results, indent=2), args.out)
                    continue
            cmd = [sys.executable, __file__, "--child", row, str(length), str(args.batch), str(args.width),
                   str(args.threads)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, check=False)
                result = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else {
                    "row": row, "length": length, "skipped": f"failed (exit {proc.returncode}): {proc.stderr[-300:]}"}
            except subprocess.TimeoutExpired:
                result = {"row": row, "length": length, "skipped": f"over {args.timeout} s"}
            logging.info("%s L=%d: %s", row, length, {k: result[k] for k in result if k not in ("row", "length")})
            results.append(result)
            previous = result
            write_text_atomic(json.dumps(results, indent=2), args.out)
    logging.info("\n%s", markdown(results))


def markdown(results: list[dict]) -> str:
    rows = list(dict.fromkeys(r["row"] for r in results))
    lengths = sorted({r["length"] for r in results})
    by = {(r["row"], r["length"]): r for r in results}
    threads = next((r["torch_threads"] for r in results if "torch_threads" in r), "?")
    head = f"batch 32, width 128, one mixer layer forward+backward, torch threads {threads}; cells: median wall s (CPU-s) / peak RSS\n\n"
    lines = ["| mixer | " + " | ".join(f"L={n:,}" for n in lengths) + " |", "|---" * (len(lengths) + 1) + "|"]
    for row in rows:
        cells = []
        for n in lengths:
            r = by.get((row, n))
            if r is None:
                cells.append("")
            elif "skipped" in r:
                cells.append(f"skipped ({r['skipped'][:40]})")
            else:
                cells.append(f"{r['median_wall_s']:.3f} s ({r['median_cpu_s']:.2f} CPU-s) / "
                             f"{r['peak_rss_mb'] / 1024:.2f} GB")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for row in dict.fromkeys(r["row"] for r in results):
        ok = sorted((r for r in results if r["row"] == row and "median_wall_s" in r), key=lambda r: r["length"])
        n = [r["length"] for r in ok]
        axes[0].plot(n, [r["median_wall_s"] for r in ok], "o-", label=row)
        axes[1].plot(n, [(r["peak_rss_mb"] - r["rss_before_mb"]) / 1024 for r in ok], "o-", label=row)
    for ax, label in zip(axes, ["seconds per forward+backward", "step memory (peak RSS - RSS before), GB"]):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend()
    threads = next((r["torch_threads"] for r in results if "torch_threads" in r), "?")
    save_figure(fig, path, f"One sequence-mixing layer, forward+backward, batch 32, width 128, {threads} torch thread(s)")


if __name__ == "__main__":
    if len(sys.argv) == 7 and sys.argv[1] == "--child":
        out = run_one(sys.argv[2], *(int(a) for a in sys.argv[3:7]))
        sys.stdout.write(json.dumps(out) + "\n")
    elif len(sys.argv) == 3 and sys.argv[1] == "--table":
        sys.stdout.write(markdown(json.loads(Path(sys.argv[2]).read_text())) + "\n")
    elif len(sys.argv) == 4 and sys.argv[1] == "--plot":
        plot(json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]))
    else:
        main()
