"""Options shared by the training and generation commands: model, backbone and training flags, parsed
and checked once (clear errors, exit code 2)."""
from __future__ import annotations

import json

import click

from exprflow.errors import ExprflowInputError
from exprflow.sampling.options import SamplingOptions


def no_plots_option(f):
    """``--no-plots``: the run's report.md without figures (exprflow.run_report)."""
    return click.option("--no-plots", is_flag=True, help="Write report.md without figures (faster).")(f)


class RegistryChoice(click.Choice):
    """A ``click.Choice`` over a registry's names, imported only when a choice is checked or listed.

    ``exprflow --help`` then never imports the models (torch, Lightning); ``exprflow fit --help``
    and a command that receives the option do."""

    def __init__(self, module: str, registry: str) -> None:
        self._where = (module, registry)
        self._names: list[str] | None = None
        super().__init__([], case_sensitive=True)

    @property
    def choices(self):
        if self._names is None:
            import importlib

            module, registry = self._where
            self._names = getattr(importlib.import_module(module), registry).names()
        return self._names

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns the (empty) list
        pass


def model_options(f):
    f = click.option("--model", "model_name", default="latent", show_default=True,
                     type=RegistryChoice("exprflow.models", "MODELS"), help="Model (representation + objective).")(f)
    f = click.option("--backbone", default=None, type=RegistryChoice("exprflow.backbones", "BACKBONES"),
                     help="Backbone network of the flow (default: the model's own, mlp for latent/state).")(f)
    f = click.option("--backbone-kwargs", default=None, metavar="JSON",
                     help='Backbone options as a JSON object, e.g. \'{"width": 64, "patch_size": 32}\' '
                          '(replaces the model\'s default backbone options).')(f)
    f = click.option("--max-epochs", type=int, default=None,
                     help="Training epochs of every phase not given its own budget (default: the model's budgets).")(f)
    f = click.option("--max-steps", type=int, default=None,
                     help="Training steps of every phase not given its own budget (default: the model's budgets).")(f)
    f = click.option("--batch-size", type=int, default=None,
                     help="Cells per step of the first phase: the VAE's, or the flow's (default: the model's).")(f)
    f = click.option("--vae-steps", type=int, default=None,
                     help="Training steps of the count VAE phase (models with one: latent, perturbation, population, "
                          "trajectory on counts).")(f)
    f = click.option("--flow-steps", type=int, default=None, help="Training steps of the flow phase.")(f)
    f = click.option("--likelihood", default=None, type=RegistryChoice("exprflow.distributions", "LIKELIHOODS"),
                     help="Count likelihood of the VAE decoder (latent, perturbation, population; default nb).")(f)
    f = click.option("--seed", type=int, default=0, show_default=True)(f)
    f = click.option("--overwrite", is_flag=True, help="Replace an existing output directory.")(f)
    return f


def sampling_options(defaults: SamplingOptions | None = None):
    """``--solver`` (a choice of the solver registry), ``--n-steps`` and ``--seed`` of a sampling command.

    Parameters
    ----------
    defaults
        The flags' defaults (e.g. :data:`exprflow.sampling.options.EULER_REFERENCE`); ``None`` leaves
        ``--solver`` and ``--n-steps`` unset, so that the model's own sampler is used
        (:class:`~exprflow.sampling.options.SamplingOptions`, or one Euler step after reflow).
    """
    model_default = SamplingOptions()
    unset = (f"default: the model's sampler, {model_default.solver} with {model_default.n_steps} steps; "
             "one Euler step after reflow")

    def decorate(f):
        given = defaults is not None
        tail = "." if given else f" ({unset})."
        f = click.option("--seed", type=int, default=(defaults or model_default).seed, show_default=True)(f)
        f = click.option("--solver", type=RegistryChoice("exprflow.sampling", "SOLVERS"), show_default=given,
                         default=getattr(defaults, "solver", None), help="ODE solver" + tail)(f)
        return click.option("--n-steps", type=int, default=getattr(defaults, "n_steps", None),
                            show_default=given, help="Solver steps" + tail)(f)

    return decorate


def parse_json_object(option: str, text: str | None) -> dict:
    """Parse a JSON-object option (clear error, exit 2); ``None`` gives ``{}``."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExprflowInputError(f"{option} is not valid JSON ({exc.msg}); write e.g. '{{\"width\": 64}}'.")
    if not isinstance(value, dict):
        raise ExprflowInputError(f"{option} must be a JSON object, e.g. '{{\"width\": 64}}'.")
    return value


def parse_backbone_kwargs(backbone: str, text: str | None) -> dict | None:
    """Parse ``--backbone-kwargs`` and check it against the backbone's options (clear errors, exit 2)."""
    from exprflow.backbones import BACKBONES

    if text is None:
        return None
    kwargs = parse_json_object("--backbone-kwargs", text)
    try:
        BACKBONES.check_options(backbone, kwargs, reserved=("dim", "n_conditions"))
    except ExprflowInputError as exc:
        raise ExprflowInputError(f"--backbone-kwargs: {exc}") from None
    return kwargs


def build_model_kwargs(model_name: str, backbone: str | None, likelihood: str | None, backbone_kwargs: str | None = None) -> dict:
    """Constructor options from the CLI flags (``--likelihood`` belongs to the latent model only).

    Without ``--backbone`` the model's configured default backbone is used (and checked against
    ``--backbone-kwargs``)."""
    from exprflow.models import MODELS

    kwargs: dict = {} if backbone is None else {"backbone": backbone}
    if backbone is None:
        backbone = getattr(MODELS.get(model_name).config_cls(), "backbone", "mlp")
    parsed = parse_backbone_kwargs(backbone, backbone_kwargs)
    if parsed is not None:
        kwargs["backbone_kwargs"] = parsed
    if likelihood is not None:
        if not hasattr(MODELS.get(model_name).config_cls(), "vae"):
            raise ExprflowInputError(f"--likelihood applies to models with a count VAE (latent, perturbation, "
                                     f"population), not --model {model_name}.")
        kwargs["vae"] = {"likelihood": likelihood}
    return kwargs


def build_train_kwargs(model_name, max_epochs, max_steps, batch_size, vae_steps, flow_steps, seed) -> dict:
    """``train`` options from the budget flags (exprflow.training.options: one meaning in every model)."""
    from exprflow.models import MODELS

    phases = getattr(MODELS.get(model_name), "phases", None)
    if vae_steps is not None and isinstance(phases, tuple) and "vae" not in phases:
        raise ExprflowInputError(f"--vae-steps applies to models with a count VAE phase (latent, perturbation, "
                                 f"population, trajectory), not --model {model_name}; use --flow-steps or --max-steps.")
    kwargs = {"max_epochs": max_epochs, "max_steps": max_steps, "seed": seed}
    kwargs.update({k: v for k, v in (("batch_size", batch_size), ("vae_steps", vae_steps), ("flow_steps", flow_steps))
                   if v is not None})
    return kwargs


DEFAULT_CHECKPOINT_EVERY = 1000


def build_run_kwargs(**options) -> dict:
    """Devices / strategy / checkpoint options of ``train`` (every model takes them: FlowModel.train's
    :class:`~exprflow.training.options.TrainerOptions`); checkpoints every 1,000 steps by default."""
    if options.get("checkpoint_every") is None:
        options["checkpoint_every"] = DEFAULT_CHECKPOINT_EVERY
    return options

