"""One sampling-options type and one click decorator: defaults defined once, --solver a choice."""
import pytest
from click.testing import CliRunner

from exprflow.cli import cli
from exprflow.sampling import SamplingOptions
from exprflow.sampling.options import EULER_REFERENCE


def _option(command, name):
    return next(p for p in command.params if p.name == name)


def test_generate_default_is_sampling_options():
    """generate leaves --solver/--n-steps unset; the model then samples with SamplingOptions()."""
    from exprflow.commands.generate import generate
    from exprflow.models.base import DEFAULT_SAMPLER

    assert _option(generate, "n_steps").default is None and _option(generate, "solver").default is None
    assert _option(generate, "seed").default == SamplingOptions().seed
    assert DEFAULT_SAMPLER == {"solver": SamplingOptions().solver, "n_steps": SamplingOptions().n_steps}
    help_text = CliRunner().invoke(cli, ["generate", "--help"]).output
    assert f"{SamplingOptions().solver} with {SamplingOptions().n_steps} steps" in " ".join(help_text.split())


def test_transport_commands_default_to_the_euler_reference():
    from exprflow.commands.perturbation import predict
    from exprflow.commands.trajectory import trajectory
    from exprflow.experiment import ExperimentSpec

    commands = [predict, *trajectory.commands.values()]
    assert len(commands) == 3
    for command in commands:
        assert (_option(command, "solver").default, _option(command, "n_steps").default) == \
            (EULER_REFERENCE.solver, EULER_REFERENCE.n_steps)
    assert (ExperimentSpec().solver, ExperimentSpec().n_steps) == (EULER_REFERENCE.solver, EULER_REFERENCE.n_steps)


@pytest.mark.parametrize("args", [["generate", "RUN", "--n-cells", "5", "--out", "x.h5ad"],
                                  ["predict", "RUN", "--data", "c.h5ad", "--out", "x.h5ad"],
                                  ["trajectory", "generate", "RUN", "--out", "x.h5ad"]])
def test_unknown_solver_exits_2_with_the_solvers(tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "RUN").mkdir()
    (tmp_path / "c.h5ad").write_text("")
    r = CliRunner().invoke(cli, [*args, "--solver", "bogus"])
    assert r.exit_code == 2, r.output
    assert "bogus" in r.output and all(name in r.output for name in ("dopri5", "euler", "heun", "rk4"))
