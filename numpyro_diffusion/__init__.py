"""numpyro_diffusion: trained diffusion models as priors inside NumPyro programs."""

from numpyro_diffusion.analytic import GaussianMixtureDiffusion
from numpyro_diffusion.checkpoint import load, save
from numpyro_diffusion.compose import classifier_guided, guided, mixture, negation, product
from numpyro_diffusion.errors import CheckpointError, EnergyUnavailableError
from numpyro_diffusion.infer import (
    AnnealedMCMC,
    AnnealedSMC,
    annealed_potential,
    log_marginal_likelihood,
    plug_and_play,
)
from numpyro_diffusion.interface import Diffusion
from numpyro_diffusion.models import DiffusionModel
from numpyro_diffusion.networks import EnergyNetwork, ResidualMLP, UNet
from numpyro_diffusion.primitives import (
    current_noise_level,
    diffusion_factor,
    diffusion_prior,
    noise_level,
)
from numpyro_diffusion.schedules import VPSchedule
from numpyro_diffusion.training import train

__version__ = "0.1.0"

__all__ = [
    "AnnealedMCMC",
    "AnnealedSMC",
    "CheckpointError",
    "Diffusion",
    "DiffusionModel",
    "EnergyNetwork",
    "EnergyUnavailableError",
    "GaussianMixtureDiffusion",
    "ResidualMLP",
    "UNet",
    "VPSchedule",
    "annealed_potential",
    "classifier_guided",
    "current_noise_level",
    "diffusion_factor",
    "diffusion_prior",
    "guided",
    "load",
    "log_marginal_likelihood",
    "mixture",
    "negation",
    "noise_level",
    "plug_and_play",
    "product",
    "save",
    "train",
]
