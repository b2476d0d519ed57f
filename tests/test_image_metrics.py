import numpy as np
import pytest

from numpyro_diffusion.metrics import classifier_score, frechet_distance, psnr


def test_psnr_of_a_known_error_on_the_masked_pixels():
    truth = np.zeros((4, 4, 1))
    estimate = np.zeros((2, 4, 4, 1))
    estimate[0, :2] = 0.2  # error only on the first two rows
    estimate[1] = 0.1
    mask = np.zeros((4, 4, 1), bool)
    mask[:2] = True
    np.testing.assert_allclose(
        psnr(estimate, truth, mask), 10 * np.log10(4 / np.array([0.04, 0.01]))
    )
    np.testing.assert_allclose(psnr(estimate, truth)[1], 10 * np.log10(4 / 0.01))
    with pytest.raises(ValueError, match="no pixel"):
        psnr(estimate, truth, np.zeros((4, 4, 1), bool))
    with pytest.raises(ValueError, match=r"\(N, \*event_shape\)"):
        psnr(np.zeros(3), np.zeros(3))


def test_frechet_distance_of_gaussians_matches_the_closed_form():
    rng = np.random.default_rng(0)
    n = 200_000
    a = rng.normal([0.0, 1.0, 0.0], [1.0, 2.0, 0.5], size=(n, 3))
    b = rng.normal([1.0, 1.0, 0.0], [1.0, 1.0, 0.5], size=(n, 3))
    # diagonal covariances: ||dm||^2 + sum (s_a - s_b)^2
    assert frechet_distance(a, b) == pytest.approx(1.0 + 1.0, abs=0.03)
    assert frechet_distance(a, a[::-1]) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        frechet_distance(a, b[:, :2])


def test_classifier_score_limits():
    confident = np.eye(10)[np.arange(1000) % 10]
    assert classifier_score(confident) == pytest.approx(10.0, rel=1e-6)
    assert classifier_score(np.tile(confident[:1], (50, 1))) == pytest.approx(1.0)
    assert classifier_score(np.full((20, 10), 0.1)) == pytest.approx(1.0)
