"""Exceptions raised by numpyro_diffusion."""

__all__ = ["EnergyUnavailableError", "CheckpointError"]


class EnergyUnavailableError(RuntimeError):
    """A log-density value was requested from a model that only knows its score.

    Score-only models (parameterizations ``eps``, ``x0``, ``v``, ``score``) still
    work with the unadjusted samplers (``"ula"``, ``"uhmc"``), with reverse
    diffusion, with ``"mala"`` / ``"hmc"`` given ``energy="line_integral"``, and with
    product, negation and guidance compositions.
    """

    def __init__(self, what: str = "This model", advice: str | None = None):
        if advice is None:
            advice = (
                "Samplers that still work: 'ula' and 'uhmc' (unadjusted Langevin / "
                "underdamped HMC), reverse diffusion (steps_per_level=0 with the "
                "predictor), and 'mala' / 'hmc' with energy='line_integral' (energy "
                "differences integrated from the score). Mixtures, annealed SMC and "
                "log-density values need a model trained with parameterization='energy'."
            )
        super().__init__(
            f"{what} has no energy: its parameterization gives only a score (eps). {advice}"
        )


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, or not a numpyro_diffusion checkpoint."""
