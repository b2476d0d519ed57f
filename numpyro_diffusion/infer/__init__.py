"""Inference over annealed diffusion potentials."""

from numpyro_diffusion.infer.annealed import AnnealedMCMC, DrawStats, LevelStats
from numpyro_diffusion.infer.kernels import KERNELS, get_kernel, uhmc, ula
from numpyro_diffusion.infer.plug_and_play import PlugAndPlayResult, plug_and_play
from numpyro_diffusion.infer.potential import AnnealedPotential, annealed_potential

__all__ = [
    "KERNELS",
    "AnnealedMCMC",
    "AnnealedPotential",
    "DrawStats",
    "LevelStats",
    "PlugAndPlayResult",
    "annealed_potential",
    "get_kernel",
    "plug_and_play",
    "uhmc",
    "ula",
]
