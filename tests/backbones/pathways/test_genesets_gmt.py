"""GMT parsing, mapping gene sets to a dataset's genes, coverage errors, and the random-set controls."""

import numpy as np
import pytest

from exprflow.errors import ExprflowInputError
from exprflow.representations.genesets import GeneSets, read_gmt

TOY_GMT = (
    "SET_A\thttp://www.gsea-msigdb.org/A\tG1\tG2\tG3\tG2\n"     # MSigDB URL column; G2 repeated
    "\n"                                                         # blank line
    "Set B (GO:0000001)\t\tG3\tG4\tG5\tG6\tNOT_IN_DATA\t\r\n"    # Enrichr: empty 2nd column, trailing tab, CRLF
    "SET_C\t\tG6\tG7\n"
    "SET_D\tdesc\tOTHER1\tOTHER2\n"                              # no gene of the data
)
GENES = [f"G{i}" for i in range(10)]


@pytest.fixture
def toy_gmt(tmp_path):
    path = tmp_path / "toy.gmt"
    path.write_text(TOY_GMT)
    return path


def test_read_gmt_handles_both_description_conventions(toy_gmt):
    sets = read_gmt(toy_gmt)
    assert list(sets) == ["SET_A", "Set B (GO:0000001)", "SET_C", "SET_D"]
    assert sets["SET_A"] == ["G1", "G2", "G3"]  # the URL is not a gene, the repeat counts once
    assert sets["Set B (GO:0000001)"] == ["G3", "G4", "G5", "G6", "NOT_IN_DATA"]


@pytest.mark.parametrize("text, message", [
    ("SET_A G1 G2 G3\n", "tab-separated"),
    ("SET_A\tdesc\tG1\nSET_A\tdesc\tG2\n", "appears twice"),
    ("\tdesc\tG1\n", "no name"),
    ("SET_A\tdesc\t\t\n", "no gene set with any gene"),
])
def test_read_gmt_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.gmt"
    path.write_text(text)
    with pytest.raises(ExprflowInputError, match=message):
        read_gmt(path)


def test_read_gmt_missing_and_binary_files(tmp_path):
    with pytest.raises(ExprflowInputError, match="does not exist"):
        read_gmt(tmp_path / "absent.gmt")
    path = tmp_path / "binary.gmt"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\xff\xfe\x00")
    with pytest.raises(ExprflowInputError, match="not a text GMT"):
        read_gmt(path)


def test_real_collections_parse(pbmc3k_path):
    genesets = pbmc3k_path.parent / "genesets"  # ../shared/data (skipped where absent)
    hallmark = read_gmt(genesets / "h.all.v7.5.1.symbols.gmt")
    go = read_gmt(genesets / "GO_Biological_Process_2023.gmt")
    assert len(hallmark) == 50 and len(go) == 5407
    assert all(not g.startswith("http") for genes in hallmark.values() for g in genes)
    assert all(genes and "" not in genes for genes in go.values())


def test_membership_and_coverage_on_a_toy_gmt(toy_gmt):
    sets = read_gmt(toy_gmt)
    gs = GeneSets.map(sets, GENES, min_size=2)
    assert gs.names == ["SET_A", "Set B (GO:0000001)", "SET_C"]  # SET_D shares no gene
    expected = np.zeros((3, 10))
    expected[0, [1, 2, 3]] = expected[1, [3, 4, 5, 6]] = expected[2, [6, 7]] = 1
    np.testing.assert_array_equal(gs.membership.toarray(), expected)
    assert gs.report.n_covered == 7 and gs.report.coverage == pytest.approx(0.7)
    assert (gs.report.n_sets_read, gs.report.n_sets_matched, gs.report.n_sets_kept) == (4, 3, 3)
    # size filters count the data's genes only; max_sets keeps the largest
    assert GeneSets.map(sets, GENES, min_size=3).names == ["SET_A", "Set B (GO:0000001)"]
    assert GeneSets.map(sets, GENES, min_size=1, max_size=3).names == ["SET_A", "SET_C"]
    assert GeneSets.map(sets, GENES, min_size=1, max_sets=1).names == ["Set B (GO:0000001)"]


def test_coverage_error_names_the_cause(toy_gmt):
    sets = read_gmt(toy_gmt)
    ensembl = [f"ENSG{i:011d}" for i in range(10)]
    with pytest.raises(ExprflowInputError, match="Ensembl"):
        GeneSets.map(sets, ensembl, min_size=2)
    human = {"S": [f"GENE{i}" for i in range(40)]}
    mouse_case = [f"Gene{i}" for i in range(40)] + ["Other"]
    with pytest.raises(ExprflowInputError, match="case"):
        GeneSets.map(human, mouse_case, min_size=2)
    with pytest.raises(ExprflowInputError, match="coverage too low"):
        GeneSets.map(sets, GENES, min_size=2, min_coverage=0.9)


@pytest.fixture
def real_like():
    rng = np.random.default_rng(3)
    genes = [f"G{i}" for i in range(300)]
    sets = {f"S{k}": list(rng.choice(genes[:200], size=int(rng.integers(5, 40)), replace=False)) for k in range(30)}
    return GeneSets.map(sets, genes, min_size=5)


@pytest.mark.parametrize("swap", [False, True])
def test_random_control_is_degree_matched_and_seeded(real_like, swap):
    gs = real_like
    control = gs.random_degree_matched(seed=7, preserve_gene_degree=swap)
    np.testing.assert_array_equal(control.sizes, gs.sizes)  # same sizes, set by set
    assert set(control.covered) <= set(gs.covered)  # members drawn from the covered genes
    assert (control.membership != gs.membership).nnz > gs.membership.nnz  # most members differ
    again = gs.random_degree_matched(seed=7, preserve_gene_degree=swap)
    assert (again.membership != control.membership).nnz == 0  # deterministic by seed
    other = gs.random_degree_matched(seed=8, preserve_gene_degree=swap)
    assert (other.membership != control.membership).nnz > 0
    if swap:  # every gene keeps its number of sets
        np.testing.assert_array_equal(control.membership.sum(axis=0), gs.membership.sum(axis=0))
