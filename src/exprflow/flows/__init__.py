"""Rectified flow: probability path, time sampling, couplings, objective, EMA and guidance.

Convention (used everywhere in exprflow): ``x0 ~ N(0, I)`` is noise at ``t = 0``, ``x1`` is data at
``t = 1``, ``xt = (1 - t) x0 + t x1``, the target velocity is ``ut = x1 - x0``, and sampling integrates
``dx/dt = v(x, t)`` from ``t = 0`` to ``t = 1``. This is the torchcfm convention; the seed document
writes the reverse direction (noise at ``t = 1``), which is the same model under ``t -> 1 - t``,
``v -> -v``.
"""

from __future__ import annotations

from exprflow.flows.couplings import COUPLINGS, IndependentCoupling, OTCoupling
from exprflow.flows.ema import EMA
from exprflow.flows.guidance import guided_velocity
from exprflow.flows.objective import RectifiedFlow, drop_conditions
from exprflow.flows.paths import RectifiedPath
from exprflow.flows.time_sampling import TIME_SAMPLERS, LogitNormalTimeSampler, UniformTimeSampler

__all__ = [
    "COUPLINGS",
    "EMA",
    "TIME_SAMPLERS",
    "IndependentCoupling",
    "LogitNormalTimeSampler",
    "OTCoupling",
    "RectifiedFlow",
    "RectifiedPath",
    "UniformTimeSampler",
    "drop_conditions",
    "guided_velocity",
]
