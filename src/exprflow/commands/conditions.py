"""Flags for several condition keys: ``--condition-key`` (repeated or comma-separated), ``--guidance``
(a scale, or ``KEY=W`` per attribute), ``--composition``, and the request that ``--like FILE`` makes."""
from __future__ import annotations

from pathlib import Path

import click

from exprflow.errors import ExprflowInputError


def condition_key_option(f):
    return click.option("--condition-key", "condition_key", multiple=True,
                        help="obs column to condition on (e.g. cell_type); repeat it or separate columns by commas "
                             "for label combinations (e.g. cell_type,donor).")(f)


def guidance_options(f):
    f = click.option("--guidance", "guidance", multiple=True, default=("1.0",), show_default=True,
                     help="Classifier-free guidance scale, or KEY=W for a weight per condition attribute "
                          "(repeatable; models with several condition keys).")(f)
    return click.option("--composition", default="joint", show_default=True, type=click.Choice(["joint", "product"]),
                        help="How per-attribute guidance composes: joint (chain rule) or product (product of "
                             "experts, for combinations unseen in training).")(f)


def parse_condition_keys(values) -> str | list[str] | None:
    """``("cell_type,donor",)`` or ``("cell_type", "donor")`` -> ``["cell_type", "donor"]``; one key -> str."""
    keys = [k.strip() for value in values or () for k in str(value).split(",") if k.strip()]
    if not keys:
        return None
    if len(set(keys)) != len(keys):
        raise ExprflowInputError(f"--condition-key names a column twice: {keys}.")
    return keys[0] if len(keys) == 1 else keys


def parse_guidance(values) -> float | dict[str, float]:
    """One float (``--guidance 2``), or ``KEY=W`` entries (``--guidance cell_type=2 --guidance donor=0.5``)."""
    values = [v for value in values for v in str(value).split(",") if v.strip()]
    weights, plain = {}, []
    for value in values:
        key, sep, weight = value.partition("=")
        try:
            number = float(weight if sep else key)
        except ValueError:
            raise ExprflowInputError(f"--guidance {value!r}: write a number (2.0) or KEY=NUMBER (donor=0.5).") from None
        if sep:
            weights[key.strip()] = number
        else:
            plain.append(number)
    if plain and weights or len(plain) > 1:
        raise ExprflowInputError("Give --guidance once as a number, or only KEY=W entries (one per attribute).")
    return weights if weights else (plain[0] if plain else 1.0)


def like_request(model, like, like_path: Path) -> dict:
    """``generate`` keyword arguments for as many cells per condition (combination) as ``like`` (read
    from ``like_path``) holds."""
    from exprflow.models.conditions import COUNT_COLUMN

    keys = getattr(model, "condition_keys", None) or ([] if model.setup.condition_key is None
                                                      else [model.setup.condition_key])
    if not keys:
        return {"n_cells": like.n_obs}
    missing = [k for k in keys if k not in like.obs]
    if missing:
        raise ExprflowInputError(f"{like_path} has no obs column(s) {missing} (the model's condition keys); "
                                 f"available: {', '.join(like.obs.columns) or 'none'}.")
    if len(keys) == 1:
        counts = like.obs[keys[0]].astype(str).value_counts()
        return {"conditions": {str(k): int(v) for k, v in counts.items() if v > 0}}
    table = like.obs[keys].astype(object).value_counts(dropna=False).rename(COUNT_COLUMN).reset_index()
    return {"conditions": table}
