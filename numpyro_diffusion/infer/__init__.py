"""Inference over annealed diffusion potentials."""

from numpyro_diffusion.infer.annealed import AnnealedMCMC, DrawStats, LevelStats, WalkSettings
from numpyro_diffusion.infer.kernels import KERNELS, LevelKernel, get_kernel, uhmc, ula
from numpyro_diffusion.infer.move import (
    LevelParams,
    LevelPotential,
    Move,
    MoveInfo,
    MoveSettings,
    MoveState,
    build_move,
    ddpm_predictor,
)
from numpyro_diffusion.infer.plug_and_play import PlugAndPlayResult, plug_and_play
from numpyro_diffusion.infer.potential import AnnealedPotential, annealed_potential
from numpyro_diffusion.infer.smc import AnnealedSMC, SMCLevelStats, log_marginal_likelihood

__all__ = [
    "KERNELS",
    "AnnealedMCMC",
    "AnnealedPotential",
    "AnnealedSMC",
    "DrawStats",
    "LevelKernel",
    "LevelParams",
    "LevelPotential",
    "LevelStats",
    "Move",
    "MoveInfo",
    "MoveSettings",
    "MoveState",
    "PlugAndPlayResult",
    "SMCLevelStats",
    "WalkSettings",
    "annealed_potential",
    "build_move",
    "ddpm_predictor",
    "get_kernel",
    "log_marginal_likelihood",
    "plug_and_play",
    "uhmc",
    "ula",
]
