"""User-facing models that compose representation, backbone, objective and sampler."""

from exprflow.models.latent_flow import LatentFlow, LatentFlowConfig
from exprflow.models.state_flow import StateFlow, StateFlowConfig
from exprflow.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("state")(StateFlow)
MODELS.register("latent")(LatentFlow)

__all__ = ["MODELS", "LatentFlow", "LatentFlowConfig", "StateFlow", "StateFlowConfig"]
