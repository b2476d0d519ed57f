"""Exceptions raised by numpyro_diffusion."""

__all__ = ["EnergyUnavailableError", "CheckpointError"]


class EnergyUnavailableError(RuntimeError):
    """A log-density value was requested from a model that only knows its score.

    Score-only models (parameterizations ``eps``, ``x0``, ``v``, ``score``) still
    work with the unadjusted samplers (``"ula"``, ``"uhmc"``), with reverse
    diffusion, and with product, negation and guidance compositions.
    """

    def __init__(self, what: str = "This model"):
        super().__init__(
            f"{what} has no energy: its parameterization gives only a score (eps). "
            "Samplers that still work: 'ula' and 'uhmc' (unadjusted Langevin / "
            "underdamped HMC) and reverse diffusion (steps_per_level=0 with the "
            "predictor). Metropolis-corrected kernels ('mala', 'hmc'), mixtures and "
            "log-density values need a model trained with parameterization='energy'."
        )


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or not a numpyro_diffusion checkpoint."""
