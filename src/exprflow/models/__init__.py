"""User-facing models that compose representation, backbone, objective and sampler."""

from exprflow.models.state_flow import StateFlow, StateFlowConfig
from exprflow.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("state")(StateFlow)

__all__ = ["MODELS", "StateFlow", "StateFlowConfig"]
