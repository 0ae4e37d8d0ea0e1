"""``exprflow dna fit | sample | evaluate``: nucleotide language models on a FASTA genome.

- ``fit`` trains a causal Hyena or Transformer language model on random windows of the training
  region (everything outside a contiguous held-out region, by default the last 10 %) and saves it.
- ``sample`` writes sampled sequences as FASTA (atomically).
- ``evaluate`` prints and writes (JSON) bits per nucleotide on the held-out region: of a trained model
  and/or of the k-mer Markov baselines k = 1..K (add-one smoothing) beside it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click

from exprflow.errors import ExprflowInputError

logger = logging.getLogger("exprflow")


def _split_options(f):
    f = click.option("--held-out-start", type=float, default=None,
                     help="Start of the held-out region as a fraction of the sequence (default: the end).")(f)
    f = click.option("--held-out-fraction", type=float, default=0.1, show_default=True,
                     help="Fraction of the sequence held out (one contiguous region).")(f)
    f = click.option("--record", default=None, help="Record to read from a multi-record FASTA (header's first word).")(f)
    return f


def _load_genome(fasta: Path, record: str | None, fraction: float, start: float | None):
    from exprflow.representations.dna import held_out_split, read_fasta

    genome = read_fasta(fasta, record=record)
    split = held_out_split(len(genome), fraction=fraction, start=start)
    return genome, split


@click.group("dna")
def dna() -> None:
    """Nucleotide language models (Hyena vs Transformer) and k-mer baselines on a FASTA genome."""


@dna.command("fit")
@click.option("--fasta", required=True, type=click.Path(dir_okay=False, path_type=Path), help="FASTA (.gz ok).")
@_split_options
@click.option("--backbone", default="hyena", show_default=True, type=click.Choice(["hyena", "transformer"]))
@click.option("--context", type=int, default=1024, show_default=True, help="Window length in nucleotides.")
@click.option("--width", type=int, default=64, show_default=True)
@click.option("--depth", type=int, default=2, show_default=True)
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--max-steps", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run directory.")
def fit(fasta, record, held_out_fraction, held_out_start, backbone, context, width, depth, batch_size, lr,
        max_steps, seed, out, overwrite) -> None:
    """Train a causal nucleotide language model on the training region of FASTA."""
    from exprflow.models.nucleotide_lm import NucleotideLM

    if Path(out).exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another directory.")
    for name, value in (("--context", context), ("--width", width), ("--depth", depth),
                        ("--batch-size", batch_size)):
        if value < 1:
            raise ExprflowInputError(f"{name} must be a positive integer, got {value}.")
    genome, split = _load_genome(fasta, record, held_out_fraction, held_out_start)
    lm = NucleotideLM(backbone=backbone, context=context, width=width, depth=depth, batch_size=batch_size, lr=lr)
    lm.train(split.train_segments(genome.tokens), max_steps=max_steps, seed=seed)
    lm.info = {"fasta": str(Path(fasta).resolve()), "record": genome.name, "counts": genome.counts,
               "held_out_fraction": held_out_fraction, "held_out_start": held_out_start,
               "split": split.as_dict(), "seed": seed, "max_steps": max_steps}
    lm.save(str(out), overwrite=overwrite)
    last = lm.history[-min(50, len(lm.history)):]
    click.echo(f"{backbone} LM ({lm.n_parameters:,} parameters, context {context:,}) trained {max_steps} steps in "
               f"{lm.train_seconds:.1f} s; training bits/nt (last {len(last)} steps) "
               f"{sum(b for _, b in last) / len(last):.4f}; saved to {out}")


@dna.command("sample")
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--n", "n", type=int, default=4, show_default=True, help="Number of sequences.")
@click.option("--length", type=int, default=1000, show_default=True, help="Nucleotides per sequence.")
@click.option("--prompt", default=None, help="Nucleotides to continue (not included in the output).")
@click.option("--temperature", type=float, default=1.0, show_default=True, help="Softmax temperature (0: greedy).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output FASTA.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
def sample(run, n, length, prompt, temperature, seed, out, overwrite) -> None:
    """Sample sequences from a trained nucleotide language model into a FASTA file."""
    from exprflow.io import write_text_atomic
    from exprflow.models.nucleotide_lm import NucleotideLM

    if Path(out).exists() and not overwrite:
        raise ExprflowInputError(f"{out} already exists. Pass --overwrite or choose another file.")
    lm = NucleotideLM.load(str(run))
    sequences = lm.sample(n, length, prompt=prompt, temperature=temperature, seed=seed)
    lines = []
    for i, seq in enumerate(sequences):
        lines.append(f">sample_{i} backbone={lm.config.backbone} temperature={temperature} seed={seed}")
        lines.extend(seq[j:j + 80] for j in range(0, len(seq), 80))
    write_text_atomic("\n".join(lines) + "\n", out)
    click.echo(f"wrote {n} sequences of {length:,} nt to {out}")


@dna.command("evaluate")
@click.argument("run", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--fasta", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="FASTA to score (default: the run's training FASTA).")
@_split_options
@click.option("--kmer", type=int, default=8, show_default=True,
              help="k-mer baselines k = 1..K (P(x_i | previous k-1 nt), add-one smoothing); 0: none.")
@click.option("--stride", type=int, default=None, help="Scored positions per LM window (default context // 2).")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output JSON.")
def evaluate(run, fasta, record, held_out_fraction, held_out_start, kmer, stride, out) -> None:
    """Bits per nucleotide on the held-out region: a trained RUN and/or the k-mer baselines.

    With RUN, the held-out region is the one the run was trained with (its fraction and start).
    """
    from exprflow.io import write_text_atomic
    from exprflow.metrics.kmer import kmer_table

    if run is None and kmer < 1:
        raise ExprflowInputError("nothing to evaluate: give a RUN directory and/or --kmer K (K >= 1).")
    lm = None
    if run is not None:
        from exprflow.models.nucleotide_lm import NucleotideLM

        lm = NucleotideLM.load(str(run))
        info = lm.info
        if fasta is None and info.get("fasta"):  # the run's own genome and held-out region
            fasta, record = Path(info["fasta"]), record or info.get("record")
        held_out_fraction = info.get("held_out_fraction", held_out_fraction)
        held_out_start = info.get("held_out_start", held_out_start)
    if fasta is None:
        raise ExprflowInputError("give --fasta (the run does not record its training FASTA).")
    genome, split = _load_genome(fasta, record, held_out_fraction, held_out_start)
    held_out, prefix = split.held_out(genome.tokens), split.prefix(genome.tokens)
    result = {"fasta": str(fasta), "record": genome.name, "split": split.as_dict(),
              "held_out_fraction": held_out_fraction,
              "kmer_definition": "k-mer model P(x_i | previous k-1 nucleotides), add-one smoothing; k=1 is unigram",
              "kmer": kmer_table(split.train_segments(genome.tokens), held_out, prefix, range(1, kmer + 1))}
    lines = [f"held-out region [{split.start:,}, {split.stop:,}) of {genome.name} ({held_out.size:,} nt)"]
    lines += [f"  k-mer k={row['k']}: {row['bits_per_nt']:.4f} bits/nt" for row in result["kmer"]]
    if lm is not None:
        result["run"] = str(run)
        result["lm"] = {"backbone": lm.config.backbone, "parameters": lm.n_parameters,
                        **lm.bits_per_nucleotide(held_out, prefix=prefix, stride=stride)}
        lines.append(f"  {lm.config.backbone} LM: {result['lm']['bits_per_nt']:.4f} bits/nt (context "
                     f"{result['lm']['context']:,}, every position sees >= {result['lm']['min_context']:,} nt)")
    write_text_atomic(json.dumps(result, indent=2), out)
    click.echo("\n".join(lines))


COMMANDS = [dna]
