"""Bits per nucleotide on held-out E. coli DNA (issue 7, part 3): k-mer baselines vs Hyena vs Transformer.

Usage::

    nice -n 10 python benchmarks/dna.py --out benchmarks/results/dna.json            # k-mers + 3 seeds x 2 LMs
    python benchmarks/dna.py --out benchmarks/results/dna.json --table-only         # re-print the tables

Data: E. coli K-12 MG1655 (one record, 4,639,675 bp); held-out region = the last 10 % (463,968 nt),
training region = the first 90 %. Scored positions are the same for every row: all held-out
nucleotides, with the nucleotides before the region as context.

- k-mer rows: ``P(x_i | previous k-1 nt)``, add-one smoothing, k = 1..8, fitted on the training region
  (deterministic: no seeds).
- LM rows: Hyena (width 64, depth 2) and a Transformer with the width that matches Hyena's parameter
  count best (4 heads, sinusoidal positions), both causal, context 1,024, batch 8, AdamW (lr 2e-3,
  warm-up 50, cosine), the same number of steps; 3 seeds. Each run is a child process with 1 torch
  thread. Learning curve: bits/nt on the first 50,000 held-out nucleotides every ``--eval-every``
  steps; final: the whole held-out region in windows of 1,024 with stride 512 (every scored nucleotide
  sees 513..1,024 previous ones). Seed 0 also samples 2 x 500 nt (temperature 1) for their GC content.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from bench_common import SHARED, cpu_seconds, mean_sd

GENOME = SHARED / "dna" / "MG1655-K12.fasta.gz"
WIDTH, DEPTH, CONTEXT, BATCH = 64, 2, 1024, 8
CURVE_NT = 50_000


def matched_width(width: int, depth: int) -> int:
    """Transformer width (a multiple of 4 heads) whose LM parameter count is closest to Hyena's."""
    from exprflow.backbones.nucleotide import CausalNucleotideNet, count_parameters

    target = count_parameters(CausalNucleotideNet("hyena", width=width, depth=depth))
    return min(range(32, 4 * width + 1, 4),
               key=lambda w: abs(count_parameters(CausalNucleotideNet("transformer", width=w, depth=depth)) - target))


def _genome():
    from exprflow.representations.dna import held_out_split, read_fasta

    genome = read_fasta(GENOME)
    split = held_out_split(len(genome))
    return genome, split


def worker(backbone: str, seed: int, steps: int, eval_every: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from exprflow.models.nucleotide_lm import NucleotideLM

    genome, split = _genome()
    held, prefix = split.held_out(genome.tokens), split.prefix(genome.tokens)
    width = WIDTH if backbone == "hyena" else matched_width(WIDTH, DEPTH)
    lm = NucleotideLM(backbone=backbone, context=CONTEXT, width=width, depth=DEPTH, batch_size=BATCH)
    c0, w0 = cpu_seconds(), time.perf_counter()
    lm.train(split.train_segments(genome.tokens), max_steps=steps, seed=seed, eval_tokens=held[:CURVE_NT],
             eval_prefix=prefix, eval_every=eval_every, progress_bar=False)
    train_wall, train_cpu = time.perf_counter() - w0, cpu_seconds() - c0
    c0, w0 = cpu_seconds(), time.perf_counter()
    final = lm.bits_per_nucleotide(held, prefix=prefix)
    eval_wall, eval_cpu = time.perf_counter() - w0, cpu_seconds() - c0
    out = {"backbone": backbone, "seed": seed, "width": width, "depth": DEPTH, "context": CONTEXT,
           "batch_size": BATCH, "steps": steps, "parameters": lm.n_parameters, "held_out": final,
           "curve": lm.eval_history, "train_history": lm.history[::10],
           "train_wall_s": train_wall, "train_cpu_s": train_cpu, "eval_wall_s": eval_wall, "eval_cpu_s": eval_cpu,
           "torch_threads": torch.get_num_threads()}
    if seed == 0:
        samples = lm.sample(2, 500, temperature=1.0, seed=0)
        out["sample_gc"] = [float(np.mean([ch in "GC" for ch in s])) for s in samples]
        out["sample_head"] = samples[0][:120]
    return out


def kmer_rows() -> dict:
    from exprflow.metrics.kmer import kmer_table

    genome, split = _genome()
    c0, w0 = cpu_seconds(), time.perf_counter()
    rows = kmer_table(split.train_segments(genome.tokens), split.held_out(genome.tokens),
                      split.prefix(genome.tokens), range(1, 9))
    gc = (genome.counts["G"] + genome.counts["C"]) / len(genome)
    return {"rows": rows, "wall_s": time.perf_counter() - w0, "cpu_s": cpu_seconds() - c0,
            "genome_gc": gc, "split": split.as_dict()}


def tables(result: dict) -> str:
    km = result["kmer"]["rows"]
    best = min(km, key=lambda r: r["bits_per_nt"])
    lines = [f"Held-out region {result['kmer']['split']}, {km[0]['n_scored']:,} nt scored, "
             f"torch threads {result.get('torch_threads', 1)}", "",
             "| model | parameters | bits/nt (held-out) | train CPU-s | train wall s |", "|---|---|---|---|---|"]
    for r in km:
        lines.append(f"| k-mer k={r['k']} (P(x_i given previous {r['k'] - 1} nt), add-one) | "
                     f"{4 ** r['k']:,} counts | {r['bits_per_nt']:.4f} | | |")
    for bb in ("hyena", "transformer"):
        runs = [r for r in result["runs"] if r["backbone"] == bb]
        if runs:
            lines.append(f"| {bb} LM, width {runs[0]['width']}, depth {DEPTH}, context {CONTEXT}, "
                         f"{runs[0]['steps']} steps (seeds {[r['seed'] for r in runs]}) | {runs[0]['parameters']:,} | "
                         f"{mean_sd(r['held_out']['bits_per_nt'] for r in runs)} | "
                         f"{mean_sd(r['train_cpu_s'] for r in runs)} | {mean_sd(r['train_wall_s'] for r in runs)} |")
    lines += ["", f"best k-mer: k={best['k']} at {best['bits_per_nt']:.4f} bits/nt", "",
              "Learning curve (bits/nt on the first 50,000 held-out nt; mean ± sd over seeds):", ""]
    steps = sorted({s for r in result["runs"] for s, _ in r["curve"]})
    lines += ["| step | " + " | ".join(str(s) for s in steps) + " |", "|---" * (len(steps) + 1) + "|"]
    for bb in ("hyena", "transformer"):
        runs = [r for r in result["runs"] if r["backbone"] == bb]
        if runs:
            cells = [mean_sd(dict(map(tuple, r["curve"])).get(s) for r in runs) for s in steps]
            lines.append(f"| {bb} | " + " | ".join(cells) + " |")
    ref = result.get("kmer_curve_slice")  # the best k-mer on the learning curve's slice
    if ref is not None:
        lines += ["", f"best k-mer (k={ref['k']}) on the same 50,000 nt: {ref['bits_per_nt']:.4f} bits/nt"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--backbones", nargs="+", default=["hyena", "transformer"])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=75)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--merge", type=Path, nargs="+", default=[],
                        help="add the LM runs of these result files (e.g. seeds run in parallel) to --out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from exprflow.io import write_text_atomic
    from exprflow.metrics.kmer import KmerModel

    result = json.loads(args.out.read_text()) if args.out.exists() else {"runs": []}
    if "kmer" not in result:
        result["kmer"] = kmer_rows()
        genome, split = _genome()
        best = min(result["kmer"]["rows"], key=lambda r: r["bits_per_nt"])["k"]
        model = KmerModel(best).fit(split.train_segments(genome.tokens))
        result["kmer_curve_slice"] = model.bits_per_nucleotide(split.held_out(genome.tokens)[:CURVE_NT],
                                                               prefix=split.prefix(genome.tokens))
        write_text_atomic(json.dumps(result, indent=2), args.out)
    done = {(r["backbone"], r["seed"]) for r in result["runs"]}
    for other in args.merge:
        extra = [r for r in json.loads(other.read_text())["runs"] if (r["backbone"], r["seed"]) not in done]
        result["runs"] = sorted(result["runs"] + extra, key=lambda r: (r["seed"], r["backbone"]))
        done |= {(r["backbone"], r["seed"]) for r in extra}
    if args.merge:
        write_text_atomic(json.dumps(result, indent=2), args.out)
    for seed in [] if args.table_only else args.seeds:
        for bb in args.backbones:
            if (bb, seed) in done:
                continue
            cmd = [sys.executable, __file__, "--worker", bb, str(seed), str(args.steps), str(args.eval_every)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                logging.warning("%s seed %d failed:\n%s", bb, seed, proc.stderr[-3000:])
                continue
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            result["runs"].append(run)
            result["torch_threads"] = run["torch_threads"]
            logging.info("%s seed %d: %.4f bits/nt, train %.0f CPU-s, curve %s", bb, seed,
                         run["held_out"]["bits_per_nt"], run["train_cpu_s"], run["curve"])
            write_text_atomic(json.dumps(result, indent=2), args.out)
    logging.info("\n%s", tables(result))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--worker":
        sys.stdout.write(json.dumps(worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))) + "\n")
    else:
        main()
