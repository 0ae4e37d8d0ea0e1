"""Gene sets (pathways) as a sparse membership over a dataset's genes.

::

    sets = read_gmt("h.all.v7.5.1.symbols.gmt")            # {set name: [gene, ...]}, file order
    gs = GeneSets.map(sets, adata.var_names, min_size=10)   # membership (sets x genes), coverage report
    control = gs.random_degree_matched(seed=0)              # same set sizes, random members

GMT (Broad's Gene Matrix Transposed): one set per line, tab-separated ``name  description  gene ...``.
MSigDB puts a URL in the description column, Enrichr leaves it EMPTY (two tabs in a row); both are read
the same way. Blank lines and empty trailing fields are skipped, a gene named twice in one set counts
once. A file that is not a GMT (no tabs, binary, no gene at all) is a clear :class:`ExprflowInputError`.

Mapping is by exact gene identifier. When few of the data's genes are in any set the mapping raises
with a hint: Ensembl ids against symbols, or mouse-style symbols (``Cd3e``) against human ones
(``CD3E``), detected by checking how many genes upper-casing would have matched.

The control asked for by arXiv 2505.04300, which found pathway-informed models often no better than
random masks: :meth:`GeneSets.random_degree_matched` keeps every set's size and draws its members
uniformly (without replacement) from the genes the real sets cover, with a fixed seed (the token count
is unchanged; the union of random sets covers fewer genes, since real sets overlap more than chance).
``preserve_gene_degree=True`` rewires the real membership by edge swaps instead, so every gene also keeps
its number of sets and the "no set" genes are exactly those of the real collection.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from exprflow.errors import ExprflowInputError

logger = logging.getLogger(__name__)

_ENSEMBL = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")


def read_gmt(path: str | Path) -> dict[str, list[str]]:
    """Read a GMT file into ``{set name: [genes]}`` (file order; see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ExprflowInputError(f"Gene-set file {path} does not exist; pass the path of a .gmt file.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ExprflowInputError(f"{path} is not a text GMT file ({err.reason} at byte {err.start}); "
                                 "a GMT has one tab-separated line per set: name, description, genes.") from err
    sets: dict[str, list[str]] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 3:
            raise ExprflowInputError(
                f"{path} line {number} has {len(fields)} tab-separated field(s); a GMT line is "
                "'name<TAB>description<TAB>gene<TAB>gene...' (the description may be empty).")
        name = fields[0].strip()
        genes = list(dict.fromkeys(g.strip() for g in fields[2:] if g.strip()))  # drop blanks and repeats
        if not name:
            raise ExprflowInputError(f"{path} line {number}: the set has no name (first field is empty).")
        if name in sets:
            raise ExprflowInputError(f"{path} line {number}: the set name {name!r} appears twice; "
                                     "make set names unique.")
        sets[name] = genes
    if not any(sets.values()):
        raise ExprflowInputError(f"{path} holds no gene set with any gene; is it a GMT file?")
    return sets


@dataclass(frozen=True)
class CoverageReport:
    """How well a gene-set collection covers a dataset's genes.

    Attributes:
        n_genes: genes of the dataset.
        n_covered: dataset genes in at least one kept set.
        n_sets_read: sets in the collection.
        n_sets_matched: sets with at least one of the dataset's genes.
        n_sets_kept: sets left after the size filters (the pathway tokens).
        min_size, max_size, max_sets: the filters applied (sizes count the dataset's genes only).
    """

    n_genes: int
    n_covered: int
    n_sets_read: int
    n_sets_matched: int
    n_sets_kept: int
    min_size: int
    max_size: int | None
    max_sets: int | None

    @property
    def coverage(self) -> float:
        """Fraction of the dataset's genes in at least one kept set."""
        return self.n_covered / max(self.n_genes, 1)

    def __str__(self) -> str:
        return (f"{self.n_covered} of {self.n_genes} genes ({100 * self.coverage:.1f}%) are in >= 1 of "
                f"{self.n_sets_kept} kept sets ({self.n_sets_matched} of {self.n_sets_read} sets share a gene "
                f"with the data; kept sizes {self.min_size}..{self.max_size or 'any'}, at most "
                f"{self.max_sets or 'all'} sets)")


def _identifier_hint(var_names: Sequence[str], set_genes: set[str], n_exact: int) -> str:
    """Why the data's genes may not match the sets' (Ensembl vs symbols, mouse vs human case)."""
    names = [str(g) for g in var_names]
    data_ens = np.mean([bool(_ENSEMBL.match(g)) for g in names]) if names else 0.0
    sets_ens = np.mean([bool(_ENSEMBL.match(g)) for g in set_genes]) if set_genes else 0.0
    if data_ens > 0.5 and sets_ens < 0.5:
        return ("The data's var_names look like Ensembl gene ids but the gene sets use symbols: use gene "
                "symbols as var_names (e.g. from a var column of symbols) or a GMT with Ensembl ids.")
    if sets_ens > 0.5 and data_ens < 0.5:
        return "The gene sets hold Ensembl ids but the data's var_names do not: use a GMT of gene symbols."
    upper_sets = {g.upper() for g in set_genes}
    n_upper = sum(g.upper() in upper_sets for g in names)
    if n_upper > max(2 * n_exact, 10):
        return (f"Ignoring case would match {n_upper} genes instead of {n_exact}: the data and the sets differ in "
                "symbol case, which usually means another species (mouse 'Cd3e' vs human 'CD3E'). Use a gene-set "
                "collection of the data's species (or map orthologues); exprflow does not change case for you.")
    return ("Check that the gene sets are for the data's species and identifier type "
            f"(data genes e.g. {names[:3]}, set genes e.g. {sorted(set_genes)[:3]}).")


@dataclass(frozen=True)
class GeneSets:
    """Gene sets mapped to a dataset's genes.

    Attributes:
        names: the kept sets, in collection order.
        membership: CSR ``(n_sets, n_genes)`` of 0/1 (float32); column ``j`` is ``var_names[j]``.
        var_names: the dataset's genes.
        report: the :class:`CoverageReport`.
    """

    names: list[str]
    membership: sp.csr_matrix
    var_names: list[str]
    report: CoverageReport

    @classmethod
    def map(cls, sets: Mapping[str, Sequence[str]], var_names: Sequence[str], min_size: int = 10,
            max_size: int | None = None, max_sets: int | None = None, min_coverage: float = 0.05) -> "GeneSets":
        """Map ``sets`` to ``var_names`` (exact names) and keep sets with ``min_size <= size <= max_size``
        genes of the data; with ``max_sets``, the largest ``max_sets`` of them (ties: collection order).

        Raises :class:`ExprflowInputError` (with a hint) when fewer than ``min_coverage`` of the genes are
        in a kept set, or when no set is left.
        """
        var_names = [str(g) for g in var_names]
        column = {g: j for j, g in enumerate(var_names)}
        if len(column) != len(var_names):
            raise ExprflowInputError("Gene names are not unique; make var_names unique before mapping gene sets.")
        if min_size < 1:
            raise ExprflowInputError(f"min_size must be >= 1, got {min_size}.")
        mapped = [(name, sorted({column[g] for g in genes if g in column})) for name, genes in sets.items()]
        matched = [(n, cols) for n, cols in mapped if cols]
        kept = [(n, cols) for n, cols in matched
                if len(cols) >= min_size and (max_size is None or len(cols) <= max_size)]
        if max_sets is not None and len(kept) > max_sets:
            order = sorted(range(len(kept)), key=lambda i: (-len(kept[i][1]), i))[:max_sets]
            logger.info("Keeping the %d largest of %d gene sets (max_sets)", max_sets, len(kept))
            kept = [kept[i] for i in sorted(order)]
        membership = _membership([cols for _, cols in kept], len(var_names))
        n_covered = int((np.asarray(membership.sum(axis=0)).ravel() > 0).sum())
        report = CoverageReport(len(var_names), n_covered, len(sets), len(matched), len(kept), min_size,
                                max_size, max_sets)
        if not kept or report.coverage < min_coverage:
            set_genes = {g for genes in sets.values() for g in genes}
            n_exact = sum(g in set_genes for g in var_names)
            raise ExprflowInputError(
                f"Gene-set coverage too low: {report} (need >= {100 * min_coverage:.0f}% of genes; min_coverage). "
                + _identifier_hint(var_names, set_genes, n_exact))
        logger.info("Gene sets: %s", report)
        return cls([n for n, _ in kept], membership, var_names, report)

    @property
    def sizes(self) -> np.ndarray:
        """Genes per set, ``(n_sets,)``."""
        return np.diff(self.membership.indptr)

    @property
    def covered(self) -> np.ndarray:
        """Indices of the genes in at least one set."""
        return np.flatnonzero(np.asarray(self.membership.sum(axis=0)).ravel() > 0)

    def random_degree_matched(self, seed: int = 0, preserve_gene_degree: bool = False) -> "GeneSets":
        """The degree-matched random control (fixed ``seed``): every set keeps its size.

        By default its members are drawn uniformly without replacement from the genes the real sets
        cover. With ``preserve_gene_degree=True`` the real membership is rewired by random double edge
        swaps (set A: gene x, set B: gene y -> A: y, B: x, skipped when it would repeat a gene), so each
        gene also keeps the number of sets it is in (and the covered genes stay the same).
        """
        rng = np.random.default_rng(seed)
        if preserve_gene_degree:
            members = _edge_swapped(self.membership, rng)
        else:
            pool = self.covered
            members = [np.sort(rng.choice(pool, size=k, replace=False)) for k in self.sizes]
        membership = _membership(members, len(self.var_names))
        n_covered = int((np.asarray(membership.sum(axis=0)).ravel() > 0).sum())
        names = [f"random_{i}_size_{len(m)}" for i, m in enumerate(members)]
        return GeneSets(names, membership, self.var_names, replace(self.report, n_covered=n_covered))


def _edge_swapped(membership: sp.csr_matrix, rng: np.random.Generator, swaps_per_edge: int = 10) -> list[np.ndarray]:
    """Members of each set after ``swaps_per_edge x nnz`` attempted double edge swaps (degrees preserved)."""
    sets = [set(membership.indices[a:b].tolist()) for a, b in zip(membership.indptr[:-1], membership.indptr[1:])]
    edges = [[s, g] for s, genes in enumerate(sets) for g in genes]
    n = len(edges)
    picks = rng.integers(0, n, size=(swaps_per_edge * n, 2)) if n > 1 else np.zeros((0, 2), np.int64)
    for i, j in picks:
        (a, x), (b, y) = edges[i], edges[j]
        if a == b or y in sets[a] or x in sets[b]:
            continue
        sets[a].remove(x), sets[a].add(y), sets[b].remove(y), sets[b].add(x)
        edges[i][1], edges[j][1] = y, x
    return [np.array(sorted(s), dtype=np.int64) for s in sets]


def _membership(members: Sequence[Sequence[int]], n_genes: int) -> sp.csr_matrix:
    """0/1 CSR ``(len(members), n_genes)`` from each set's gene columns."""
    indptr = np.concatenate([[0], np.cumsum([len(m) for m in members])]).astype(np.int64)
    indices = np.concatenate([np.asarray(m, dtype=np.int64) for m in members]) if members else np.zeros(0, np.int64)
    data = np.ones(len(indices), dtype=np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(len(members), n_genes))
