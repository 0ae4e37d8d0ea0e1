"""Nucleotides as tokens: FASTA in, integer tokens out, and a contiguous held-out region.

The token is the functional unit of DNA, one nucleotide::

    A C G T N   <->   0 1 2 3 4

Reading (:func:`read_fasta`): plain or gzip-compressed FASTA (detected from the file's magic bytes).
Lower-case letters (soft-masked repeats) are upper-cased; the IUPAC ambiguity codes ``R Y S W K M B D H
V`` and ``N`` become ``N``; ``U`` (RNA) becomes ``T``. Every conversion is counted and reported in
:attr:`FastaRecord.counts`. A file with several records needs ``record=NAME`` (no silent concatenation).

Splitting (:func:`held_out_split`): one contiguous held-out region (by default the last 10 %), so no
training window overlaps the held-out nucleotides; the training region is what lies outside it (one or
two contiguous segments).
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

ALPHABET = "ACGTN"
#: token of the unknown nucleotide N; the language models never predict it (see nucleotide_lm)
N_TOKEN = 4
N_NUCLEOTIDES = 4
_AMBIGUOUS = "RYSWKMBDHV"


def _lookup_table() -> np.ndarray:
    """Byte -> token table; 255 marks a byte that is not a nucleotide code."""
    table = np.full(256, 255, dtype=np.uint8)
    for token, letter in enumerate(ALPHABET):
        table[ord(letter)] = table[ord(letter.lower())] = token
    for letter in _AMBIGUOUS:
        table[ord(letter)] = table[ord(letter.lower())] = N_TOKEN
    table[ord("U")] = table[ord("u")] = ALPHABET.index("T")
    return table


_TABLE = _lookup_table()


class NucleotideTokenizer:
    """``A, C, G, T, N <-> 0..4``; lower case and IUPAC ambiguity codes are accepted on encoding."""

    alphabet = ALPHABET
    vocab_size = len(ALPHABET)

    def encode(self, sequence: str | bytes) -> np.ndarray:
        """Tokens ``(L,)`` uint8 of ``sequence``; a character that is no nucleotide code is an error."""
        raw = np.frombuffer(sequence.encode("ascii", "replace") if isinstance(sequence, str) else sequence,
                            dtype=np.uint8)
        tokens = _TABLE[raw]
        bad = np.flatnonzero(tokens == 255)
        if bad.size:
            char = chr(raw[bad[0]])
            raise ExprflowInputError(
                f"{char!r} at position {bad[0]} is not a nucleotide code; use A, C, G, T, N (any case), "
                f"U, or an IUPAC ambiguity code ({_AMBIGUOUS})."
            )
        return tokens

    def decode(self, tokens) -> str:
        """The string of ``tokens`` (any integer array or sequence with values in 0..4)."""
        tokens = np.asarray(tokens, dtype=np.int64)
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.vocab_size):
            raise ValueError(f"tokens must lie in 0..{self.vocab_size - 1}")
        return np.frombuffer(self.alphabet.encode(), dtype=np.uint8)[tokens].tobytes().decode()


@dataclass(frozen=True)
class FastaRecord:
    """One FASTA record as tokens. ``counts``: A/C/G/T/N token counts and the conversions made."""

    name: str
    tokens: np.ndarray = field(repr=False)
    counts: dict

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def _open_text(path: Path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rb")
    return open(path, "rb")


def _parse_records(path: Path) -> list[tuple[str, bytes]]:
    records: list[tuple[str, list[bytes]]] = []
    try:
        with _open_text(path) as fh:
            for number, line in enumerate(fh, start=1):
                line = line.strip()
                if not line:
                    continue
                if line.startswith(b">"):
                    records.append((line[1:].decode(errors="replace").split()[0] if line[1:].strip() else
                                    f"record{len(records) + 1}", []))
                elif line.startswith(b";"):
                    continue  # old-style FASTA comment
                elif not records:
                    raise ExprflowInputError(
                        f"{path} is not FASTA: line {number} comes before any '>' header. A FASTA file starts "
                        "with a line '>name' followed by sequence lines."
                    )
                else:
                    records[-1][1].append(line.replace(b" ", b"").replace(b"\t", b""))
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ExprflowInputError(f"could not read {path} ({type(exc).__name__}: {exc}); is it a (gzip) FASTA file?")
    return [(name, b"".join(chunks)) for name, chunks in records]


def read_fasta(path: str | os.PathLike, record: str | None = None) -> FastaRecord:
    """Read one record of a plain or gzip FASTA file as tokens (see the module docstring).

    With several records, ``record`` names the one to read (the first word of its header line).
    """
    path = Path(path)
    if not path.is_file():
        raise ExprflowInputError(f"FASTA file {path} does not exist.")
    records = _parse_records(path)
    if not records:
        raise ExprflowInputError(f"{path} is empty: it holds no FASTA record ('>name' line and sequence).")
    names = [name for name, _ in records]
    if record is None and len(records) > 1:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        raise ExprflowInputError(
            f"{path} holds {len(records)} records ({shown}); choose one with record=NAME (CLI: --record NAME)."
        )
    if record is not None and record not in names:
        raise ExprflowInputError(f"{path} has no record {record!r}; its records are: {', '.join(names[:20])}.")
    name, raw = records[0] if record is None else records[names.index(record)]
    try:
        tokens = NucleotideTokenizer().encode(raw)
    except ExprflowInputError as exc:
        raise ExprflowInputError(f"record {name!r} of {path}: {exc}") from None
    raw_arr = np.frombuffer(raw, dtype=np.uint8)
    counts = {letter: int(c) for letter, c in zip(ALPHABET, np.bincount(tokens, minlength=len(ALPHABET)))}
    counts["ambiguous_to_N"] = int(((tokens == N_TOKEN) & (raw_arr != ord("N")) & (raw_arr != ord("n"))).sum())
    counts["lowercase"] = int(((raw_arr >= ord("a")) & (raw_arr <= ord("z"))).sum())
    counts["U_to_T"] = int(np.isin(raw_arr, [ord("U"), ord("u")]).sum())
    if sum(counts[c] for c in "ACGT") == 0:
        raise ExprflowInputError(f"record {name!r} of {path} holds no A, C, G or T; there is nothing to model.")
    if counts["N"] or counts["lowercase"] or counts["U_to_T"]:
        logger.info("%s: %s", name, counts)
    return FastaRecord(name=name, tokens=tokens, counts=counts)


@dataclass(frozen=True)
class HeldOutSplit:
    """A contiguous held-out region ``[start, stop)`` and the training segments around it."""

    start: int
    stop: int
    length: int

    def held_out(self, tokens: np.ndarray) -> np.ndarray:
        return tokens[self.start:self.stop]

    def train_segments(self, tokens: np.ndarray) -> list[np.ndarray]:
        """The training region: the (one or two) non-empty segments outside the held-out region."""
        return [seg for seg in (tokens[:self.start], tokens[self.stop:]) if seg.size]

    def prefix(self, tokens: np.ndarray) -> np.ndarray:
        """The nucleotides just before the held-out region (context for scoring its first positions)."""
        return tokens[:self.start]

    def as_dict(self) -> dict:
        return {"start": self.start, "stop": self.stop, "length": self.length}


def held_out_split(length: int, fraction: float = 0.1, start: float | None = None) -> HeldOutSplit:
    """Hold out ``fraction`` of a sequence of ``length`` nucleotides as one contiguous region.

    ``start`` (a fraction of the length) places the region; ``None`` puts it at the end (the default,
    the last 10 %). Context for the first held-out positions may come from before the region; no
    training window overlaps it.
    """
    if not 0.0 < fraction < 1.0:
        raise ExprflowInputError(f"held-out fraction must lie in (0, 1), got {fraction}.")
    n_held = int(round(length * fraction))
    if n_held < 1 or n_held >= length:
        raise ExprflowInputError(
            f"a sequence of {length} nucleotides is too short to hold out {fraction:.0%} of it; give a longer one."
        )
    if start is None:
        begin = length - n_held
    else:
        if not 0.0 <= start <= 1.0 - fraction:
            raise ExprflowInputError(f"held-out start must lie in [0, 1 - fraction] = [0, {1 - fraction}], got {start}.")
        begin = int(round(length * start))
    return HeldOutSplit(start=begin, stop=begin + n_held, length=length)
