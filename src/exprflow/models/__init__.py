"""User-facing models that compose representation, backbone, objective and sampler."""

from exprflow.models.latent_flow import LatentFlow, LatentFlowConfig
from exprflow.models.pathway_flow import PathwayFlow, PathwayFlowConfig
from exprflow.models.perturbation_flow import PerturbationFlow, PerturbationFlowConfig
from exprflow.models.population_flow import PopulationFlow, PopulationFlowConfig
from exprflow.data.setup import view_anndata_setup
from exprflow.models.state_flow import StateFlow, StateFlowConfig
from exprflow.models.trajectory_flow import TrajectoryFlow, TrajectoryFlowConfig
from exprflow.registry import Registry

MODELS: Registry = Registry("model")
MODELS.register("state")(StateFlow)
MODELS.register("latent")(LatentFlow)
MODELS.register("perturbation")(PerturbationFlow)
MODELS.register("pathway")(PathwayFlow)
MODELS.register("population")(PopulationFlow)
MODELS.register("trajectory")(TrajectoryFlow)

__all__ = [
    "MODELS", "LatentFlow", "LatentFlowConfig", "PathwayFlow", "PathwayFlowConfig", "PerturbationFlow",
    "PerturbationFlowConfig", "PopulationFlow", "PopulationFlowConfig", "StateFlow", "StateFlowConfig",
    "TrajectoryFlow", "TrajectoryFlowConfig", "view_anndata_setup",
]
