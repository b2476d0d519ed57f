"""Inference over annealed diffusion potentials."""

from numpyro_diffusion.infer.annealed import AnnealedMCMC, DrawStats, LevelStats
from numpyro_diffusion.infer.kernels import KERNELS, get_kernel, uhmc, ula
from numpyro_diffusion.infer.potential import AnnealedPotential, annealed_potential

__all__ = [
    "KERNELS",
    "AnnealedMCMC",
    "AnnealedPotential",
    "DrawStats",
    "LevelStats",
    "annealed_potential",
    "get_kernel",
    "uhmc",
    "ula",
]
