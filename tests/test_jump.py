"""Jumps between symmetric modes (infer/jump.py), on mixtures whose answer is exact."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from helpers import ScoreOnly

from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule, diffusion_prior
from numpyro_diffusion.infer import AnnealedMCMC, AnnealedSMC
from numpyro_diffusion.infer.jump import energy_change
from numpyro_diffusion.infer.potential import initialize_potential

S = VPSchedule.cosine(100)
# two modes far apart, of masses 0.8 (at -3) and 0.2 (at +3)
MODES = GaussianMixtureDiffusion([[-3.0], [3.0]], [[0.5], [0.5]], [0.8, 0.2], S)
FOLLOW = 0.5  # theta follows x with this scale


def mirrored(model):
    """``x`` from the diffusion prior and ``theta`` that follows it (an ordinary latent
    with a factor), so that ``(x, theta) -> (-x, -theta)`` carries each mode of the
    joint into the other; ``x``'s marginal stays the prior's (the factor integrates to a
    function of ``x`` symmetric about 0)."""
    x = diffusion_prior("x", model)
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    numpyro.factor("follow", dist.Normal(x[..., 0], FOLLOW).log_prob(theta))


def flip(rng_key, values):
    return {name: -value for name, value in values.items()}


def fraction_at_plus(sampler) -> float:
    return float(np.mean(np.asarray(sampler.get_samples()["x"])[:, 0] > 0))


def test_a_jump_gives_separated_modes_their_masses():
    """Walked only near the data, chains keep the mode their start fell toward
    (about half each, not 0.8 / 0.2); with the flip as a jump, Metropolis moves them to
    the exact masses, and theta follows."""
    n = 2048
    levels = np.arange(8, -1, -1)
    runs = {}
    for name, jump in (("alone", None), ("jump", flip)):
        sampler = AnnealedMCMC(
            mirrored,
            "mala",
            n,
            4,
            levels=levels,
            progress_bar=False,
            jump=jump,
            jump_signal=(0.0, 1.0),
        )
        sampler.run(jax.random.PRNGKey(3), MODES)
        runs[name] = sampler
    tolerance = 4.5 * np.sqrt(0.2 * 0.8 / n)
    assert abs(fraction_at_plus(runs["alone"]) - 0.2) > 6 * tolerance
    assert abs(fraction_at_plus(runs["jump"]) - 0.2) < tolerance
    samples = runs["jump"].get_samples()
    assert np.mean(np.sign(samples["theta"]) == np.sign(samples["x"][:, 0])) > 0.99
    rate = np.asarray(runs["jump"].level_stats.jump_rate)
    assert np.all(np.isfinite(rate)) and 0.0 < rate[-1] < 0.5
    assert np.all(np.isnan(np.asarray(runs["alone"].level_stats.jump_rate)))


def tempered(model, weight):
    """:func:`mirrored` with the prior tempered, ``p^weight`` (a scaled site)."""
    with numpyro.handlers.scale(scale=weight):
        x = diffusion_prior("x", model)
    theta = numpyro.sample("theta", dist.Normal(0.0, 1.0))
    numpyro.factor("follow", dist.Normal(x[..., 0], FOLLOW).log_prob(theta))


@pytest.mark.parametrize("level", [40, 60])
def test_a_score_only_jump_integrates_the_energy_change(level):
    """The energy change a score-only model's jump uses (the line integral of the
    score, the other terms exact) is the exact model's, where noise joins the modes;
    a tempered prior's (``numpyro.handlers.scale``) is ``weight`` times it."""
    z, t = jnp.asarray([-2.5, -1.0]), jnp.asarray(level)  # the flip negates (x, theta)
    changes = {}
    for weight in (1.0, 0.3):
        for name, model in (("exact", MODES), ("score", ScoreOnly(MODES))):
            family, _ = initialize_potential(
                jax.random.PRNGKey(0), tempered, (model,), {"weight": weight}
            )
            potential = family.at((model,), {"weight": weight})
            assert potential.has_energy == (name == "exact")
            changes[name, weight] = float(energy_change(potential, z, -z, t, 12))
    exact = changes["exact", 1.0]
    assert abs(exact) > 1.0  # the two points differ in energy
    # theta's terms are symmetric under the flip: the change is the prior's, tempered
    assert abs(changes["exact", 0.3] - 0.3 * exact) < 1e-3 * abs(exact)
    for weight in (1.0, 0.3):
        assert abs(changes["score", weight] - weight * exact) < 0.02 * weight * abs(exact)


def test_bad_jumps_are_refused():
    with pytest.raises(TypeError, match="jump must be a function"):
        AnnealedMCMC(MODES, "ula", 4, 1, step_size=0.1, jump="flip")
    with pytest.raises(ValueError, match="jump_signal"):
        AnnealedMCMC(MODES, "ula", 4, 1, step_size=0.1, jump=flip, jump_signal=(0.9, 0.1))
    with pytest.raises(ValueError, match="jump_points"):
        AnnealedMCMC(MODES, "ula", 4, 1, step_size=0.1, jump=flip, jump_points=1)
    with pytest.raises(ValueError, match="AnnealedSMC takes no jump"):
        AnnealedSMC(MODES, "mala", 8, 1, jump=flip)

    def drops_theta(rng_key, values):
        return {"x": -values["x"]}

    sampler = AnnealedMCMC(
        mirrored, "ula", 4, 1, levels=3, step_size=0.1, jump=drops_theta, jump_signal=(0, 1)
    )
    with pytest.raises(ValueError, match="same sites with the same shapes"):
        sampler.run(jax.random.PRNGKey(0), MODES)
