"""The command line: help everywhere, user errors exit 2 without a traceback, fit -> generate -> evaluate."""

import json

import anndata as ad
import numpy as np
import pytest
from click.testing import CliRunner
from synthetic import make_counts_adata

from exprflow.cli import cli


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("cmd", [[], ["demo"], ["fit"], ["generate"], ["embed"], ["evaluate"]])
def test_help_everywhere(cmd):
    result = run(*cmd, "--help")
    assert result.exit_code == 0 and "Usage" in result.output


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    adata = make_counts_adata(n_cells=160, n_genes=30, seed=4)
    adata.write_h5ad(d / "train.h5ad")
    make_counts_adata(n_cells=60, n_genes=30, seed=5).write_h5ad(d / "test.h5ad")
    bad = adata.copy()
    bad.X = bad.X.astype(np.float32)
    bad.X.data = bad.X.data + 0.5
    bad.write_h5ad(d / "float.h5ad")
    return d


def test_fit_generate_evaluate_roundtrip(files):
    d = files
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "state",
            "--max-steps", 40, "--batch-size", 32, "--out", d / "run")
    assert r.exit_code == 0, r.output
    assert (d / "run" / "model" / "config.json").exists() and (d / "run" / "loss.png").exists()
    r = run("generate", d / "run", "--like", d / "test.h5ad", "--out", d / "gen.h5ad", "--n-steps", 4)
    assert r.exit_code == 0, r.output
    gen = ad.read_h5ad(d / "gen.h5ad")
    real = ad.read_h5ad(d / "test.h5ad")
    assert gen.n_obs == real.n_obs
    assert (gen.obs["cell_type"].astype(str).value_counts().sort_index()
            == real.obs["cell_type"].astype(str).value_counts().sort_index()).all()
    r = run("evaluate", "--real", d / "test.h5ad", "--generated", d / "gen.h5ad", "--train", d / "train.h5ad",
            "--out", d / "metrics.json")
    assert r.exit_code == 0, r.output
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["protocol_version"] == 1 and metrics["metrics"]["energy"] > 0
    assert "- `c2st_knn`:" in r.output  # one line per metric says what it means and what good is
    # every command that makes a run writes the same report: report.md + figures
    assert "![" in (d / "run" / "report.md").read_text()
    for folder, figures in ((d / "gen_report", ["umap.png"]), (d / "metrics_report", ["umap.png"])):
        assert "## Figures" in (folder / "report.md").read_text()
        assert all((folder / f).stat().st_size > 0 for f in figures)
    assert "What the metrics mean" in (d / "metrics_report" / "report.md").read_text()
    r = run("evaluate", "--real", d / "test.h5ad", "--generated", d / "gen.h5ad", "--train", d / "train.h5ad",
            "--out", d / "quick.json", "--no-plots")
    assert r.exit_code == 0 and sorted(p.name for p in (d / "quick_report").iterdir()) == ["report.md"]


def test_fit_latent_model_with_likelihood(files):
    d = files
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "latent",
            "--likelihood", "zinb", "--max-steps", 30, "--flow-steps", 20, "--batch-size", 32, "--out", d / "lat")
    assert r.exit_code == 0, r.output
    cfg = json.loads((d / "lat" / "model" / "config.json").read_text())
    assert cfg["model"] == "LatentFlow" and cfg["config"]["vae"]["likelihood"] == "zinb"
    r = run("generate", d / "lat", "--n-cells", 12, "--out", d / "lat.h5ad", "--n-steps", 4)
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(d / "lat.h5ad").n_obs == 12


def test_existing_output_needs_overwrite(files):
    d = files
    (d / "exists").mkdir(exist_ok=True)
    r = run("fit", "--data", d / "train.h5ad", "--max-steps", 2, "--out", d / "exists")
    assert r.exit_code == 2 and "--overwrite" in r.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["fit", "--data", "{d}/float.h5ad", "--out", "{d}/x1"], "layer"),
        (["fit", "--data", "{d}/train.h5ad", "--condition-key", "nope", "--out", "{d}/x2"], "cell_type"),
        (["fit", "--data", "{d}/train.h5ad", "--layer", "counts", "--out", "{d}/x3"], "counts"),
        (["fit", "--data", "{d}/missing.h5ad", "--out", "{d}/x4"], "does not exist"),
        (["generate", "{d}", "--n-cells", "5", "--out", "{d}/g.h5ad"], "no exprflow model"),
        (["fit", "--data", "{d}/train.h5ad", "--model", "state", "--likelihood", "nb", "--out", "{d}/x5"],
         "not --model state"),
        (["fit", "--data", "{d}/train.h5ad", "--model", "state", "--vae-steps", "9", "--out", "{d}/x6"],
         "not --model state"),
        (["fit", "--data", "{d}/train.h5ad", "--model", "pathway", "--vae-steps", "9", "--out", "{d}/x6b"],
         "not --model pathway"),
        (["fit", "--data", "{d}/float.h5ad", "--model", "latent", "--out", "{d}/x7"], "layers['counts']"),
    ],
)
def test_user_errors_exit_2_without_traceback(files, args, needle):
    result = CliRunner().invoke(cli, [a.format(d=files) for a in args])
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert "Traceback" not in result.output


def test_fit_with_a_sequence_backbone_and_options(files):
    d = files
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "state",
            "--backbone", "s4d", "--backbone-kwargs", '{"width": 16, "depth": 1, "patch_size": 8}',
            "--max-steps", 5, "--batch-size", 32, "--out", d / "s4d")
    assert r.exit_code == 0, r.output
    config = json.loads((d / "s4d" / "model" / "config.json").read_text())["config"]
    assert config["backbone"] == "s4d" and config["backbone_kwargs"]["patch_size"] == 8


@pytest.mark.parametrize("name", ["deepsets", "set_transformer", "rank_tokens", "value_bins"])
def test_fit_with_a_gene_set_backbone(files, name):
    d = files
    r = run("fit", "--data", d / "train.h5ad", "--condition-key", "cell_type", "--model", "state",
            "--backbone", name, "--backbone-kwargs", '{"hidden": 8, "depth": 1}',
            "--max-steps", 3, "--batch-size", 16, "--out", d / name)
    assert r.exit_code == 0, r.output
    config = json.loads((d / name / "model" / "config.json").read_text())["config"]
    assert config["backbone"] == name and config["backbone_kwargs"]["hidden"] == 8


def test_embed_a_gene_set_model_on_another_panel(files):
    import anndata as ad

    d = files
    assert run("fit", "--data", d / "train.h5ad", "--model", "state", "--backbone", "deepsets", "--backbone-kwargs",
               '{"hidden": 8, "depth": 1}', "--max-steps", 3, "--batch-size", 16, "--out", d / "emb_run").exit_code == 0
    other = ad.read_h5ad(d / "test.h5ad")[:, ::-1].copy()  # same genes, reversed
    other.var_names = [*other.var_names[:-1], "NOT_IN_MODEL"]
    other.write_h5ad(d / "other_panel.h5ad")
    refused = CliRunner().invoke(cli, ["embed", str(d / "emb_run"), "--data", str(d / "other_panel.h5ad"),
                                       "--out", str(d / "emb.h5ad")])
    assert refused.exit_code == 2 and "not in the model's gene panel" in refused.output
    assert "Traceback" not in refused.output
    r = run("embed", d / "emb_run", "--data", d / "other_panel.h5ad", "--drop-unknown-genes", "--out", d / "emb.h5ad")
    assert r.exit_code == 0, r.output
    emb = ad.read_h5ad(d / "emb.h5ad")
    assert emb.obsm["X_exprflow"].shape == (other.n_obs, 8) and np.isfinite(emb.obsm["X_exprflow"]).all()
    assert list(emb.obs_names) == list(other.obs_names)


def test_embed_a_latent_model_and_refuse_a_position_backbone(files):
    import anndata as ad

    d = files
    assert run("fit", "--data", d / "train.h5ad", "--model", "latent", "--max-steps", 3, "--flow-steps", 3,
               "--batch-size", 16, "--out", d / "latent_embed_run").exit_code == 0
    r = run("embed", d / "latent_embed_run", "--data", d / "test.h5ad", "--out", d / "latent_embedding.h5ad")
    assert r.exit_code == 0, r.output
    assert ad.read_h5ad(d / "latent_embedding.h5ad").obsm["X_exprflow"].shape[0] == 60
    assert run("fit", "--data", d / "train.h5ad", "--model", "state", "--max-steps", 3, "--batch-size", 16,
               "--out", d / "mlp_run").exit_code == 0
    r = CliRunner().invoke(cli, ["embed", str(d / "mlp_run"), "--data", str(d / "test.h5ad"), "--out", str(d / "m.h5ad")])
    assert r.exit_code == 2 and "no pooled cell embedding" in r.output


@pytest.mark.parametrize("text,message", [("{width: 3}", "not valid JSON"), ("[1]", "JSON object"),
                                          ('{"hidden": 3}', "no option")])
def test_bad_backbone_kwargs_exit_2(files, text, message):
    r = CliRunner().invoke(cli, ["fit", "--data", str(files / "train.h5ad"), "--model", "state", "--backbone", "s4d",
                                 "--backbone-kwargs", text, "--out", str(files / "bad")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


@pytest.mark.parametrize("text, message", [("{bad", "not valid JSON"), ("[1, 2]", "must be a JSON object"),
                                           ('{"no_such_option": 1}', "no_such_option")])
def test_fit_model_kwargs_errors_exit_2(files, text, message):
    r = CliRunner().invoke(cli, ["fit", "--data", str(files / "train.h5ad"), "--model", "state", "--max-steps", "2",
                                 "--model-kwargs", text, "--out", str(files / "kwargs_run")])
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output


def test_discovered_commands_are_registered():
    from exprflow.commands import discover_commands

    for command in discover_commands():
        assert cli.get_command(None, command.name) is command


def test_fit_backed_reads_blocks_from_disk(files, monkeypatch):
    """--backed keeps X on disk: training batches come from the block-shuffled on-disk loader."""
    import exprflow.data.block_shuffle as block_shuffle

    calls = []
    original = block_shuffle.block_step_loader

    def recording(rows, *args, **kwargs):
        calls.append(type(rows).__name__)
        return original(rows, *args, **kwargs)

    monkeypatch.setattr(block_shuffle, "block_step_loader", recording)
    r = run("fit", "--data", files / "train.h5ad", "--condition-key", "cell_type", "--model", "state", "--backed",
            "--max-steps", 6, "--batch-size", 32, "--out", files / "backed_run")
    assert r.exit_code == 0, r.output
    assert calls == ["BackedRows"]
    assert json.loads((files / "backed_run" / "model" / "config.json").read_text())["model"] == "StateFlow"


def test_flow_steps_and_likelihood_reach_every_two_phase_model(files):
    """--flow-steps and --likelihood work for the population model too, merged with --model-kwargs' vae."""
    from exprflow.models import PopulationFlow

    r = run("fit", "--data", files / "train.h5ad", "--condition-key", "cell_type", "--model", "population",
            "--likelihood", "zinb", "--flow-steps", 4, "--max-steps", 3, "--batch-size", 32,
            "--model-kwargs", '{"population_size": 8, "vae": {"n_hidden": 16, "n_latent": 3}}',
            "--backbone-kwargs", '{"width": 16, "depth": 1, "n_heads": 2}', "--out", files / "pop_run")
    assert r.exit_code == 0, r.output
    model = PopulationFlow.load(files / "pop_run" / "model")
    assert model.config.vae.likelihood == "zinb" and model.config.vae.n_latent == 3
    assert len(model.history["flow"]) == 4
