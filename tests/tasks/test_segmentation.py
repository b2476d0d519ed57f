"""The segmentation task's pieces: land cover, rendering, the likelihood, baselines,
scores and input checks (the end-to-end comparison is in test_segmentation_prior.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from scipy.special import logsumexp

import numpyro_diffusion as nd
from numpyro_diffusion.tasks import segmentation as seg
from numpyro_diffusion.tasks.segmentation import baselines, posterior, scores
from numpyro_diffusion.tasks.segmentation.landcover import ROAD


@pytest.mark.parametrize("name", sorted(seg.CITIES))
def test_each_city_covers_its_class_proportions(name):
    city = seg.CITIES[name]
    maps = seg.generate_maps(jax.random.PRNGKey(0), 200, city)
    assert maps.shape == (200, 32, 32) and maps.dtype == np.int32
    share = np.stack([np.mean(maps == k, axis=(1, 2)) for k in range(len(seg.CLASSES))], 1)
    # per-map shares scatter (a Dirichlet); the mean's tolerance is 4 of its standard
    # errors plus the area lost to rounding and layering (at most a few percent)
    se = share.std(0, ddof=1) / np.sqrt(len(share))
    np.testing.assert_array_less(np.abs(share.mean(0) - city.proportions), 4 * se + 0.02)


def test_the_road_network_is_connected_and_maps_differ():
    maps = seg.generate_maps(jax.random.PRNGKey(1), 20, seg.CITIES["A"])
    for m in maps:
        _, pieces = ndimage.label(m == ROAD, structure=np.ones((3, 3)))
        assert pieces == 1
    assert len({m.tobytes() for m in maps}) == 20
    again = seg.generate_maps(jax.random.PRNGKey(1), 20, seg.CITIES["A"])
    np.testing.assert_array_equal(maps, again)


def test_a_new_city_needs_no_code():
    city = seg.CITIES["B"]._replace(name="C", palette=np.full((6, 3), 0.5), river_probability=1.0)
    maps = seg.generate_maps(jax.random.PRNGKey(2), 4, city, size=16)
    images = seg.render(jax.random.PRNGKey(3), maps, city)
    assert maps.shape == (4, 16, 16) and images.shape == (4, 16, 16, 3)
    assert images.min() >= 0 and images.max() <= 1


def test_rendered_colours_follow_the_palette():
    city = seg.CITIES["B"]
    maps = seg.generate_maps(jax.random.PRNGKey(4), 64, city)
    images = seg.render(jax.random.PRNGKey(5), maps, city)
    for k in range(len(seg.CLASSES)):
        np.testing.assert_allclose(images[maps == k].mean(0), city.palette[k], atol=0.02)


def test_the_pixel_likelihood_matches_a_hand_computation():
    probs = jnp.array([[[[0.7, 0.3], [0.2, 0.8]]]])  # (B=1, H=1, W=2, K=2)
    images = jnp.array([[[[0.1, 0.2, 0.3], [0.5, 0.5, 0.5]]]])
    colours = jnp.array([[[0.0, 0.2, 0.4], [0.5, 0.6, 0.5]]])
    scales = jnp.array([[0.1, 0.2]])

    def normal(y, m, s):
        return np.prod(np.exp(-0.5 * ((y - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)))

    y, c = np.asarray(images)[0, 0], np.asarray(colours)[0]
    expected = [
        np.log(0.7 * normal(y[0], c[0], 0.1) + 0.3 * normal(y[0], c[1], 0.2)),
        np.log(0.2 * normal(y[1], c[0], 0.1) + 0.8 * normal(y[1], c[1], 0.2)),
    ]
    got = posterior.pixel_log_likelihood(probs, images, colours, scales)
    np.testing.assert_allclose(np.asarray(got)[0, 0], expected, rtol=1e-5)
    r = np.asarray(posterior.pixel_responsibilities(probs, images, colours, scales))[0, 0]
    np.testing.assert_allclose(
        r[0, 0], 0.7 * normal(y[0], c[0], 0.1) / np.exp(expected[0]), rtol=1e-5
    )


def test_a_class_varies_in_brightness_along_the_grey_axis():
    from scipy.stats import multivariate_normal

    colours = jnp.array([[[0.2, 0.3, 0.4], [0.6, 0.5, 0.4]]])  # (B=1, K=2, 3)
    scales, brightness = jnp.array([[0.05, 0.1]]), jnp.array([[0.08, 0.02]])
    images = jax.random.uniform(jax.random.PRNGKey(0), (1, 2, 3, 3))
    got = posterior._class_log_densities(images, colours, scales, brightness)
    for k in range(2):
        s, b = float(scales[0, k]), float(brightness[0, k])
        cov = s**2 * np.eye(3) + b**2 * np.ones((3, 3))
        want = multivariate_normal(np.asarray(colours[0, k]), cov).logpdf(np.asarray(images[0]))
        np.testing.assert_allclose(np.asarray(got)[0, ..., k], want, rtol=1e-5)
    # a shift along the grey axis costs less than the same-sized shift across it
    grey = posterior._class_log_densities(colours[:, None, :1] + 0.1, colours, scales, brightness)
    hue = colours[:, None, :1] + 0.1 * jnp.sqrt(3.0) * jnp.array([1.0, -1.0, 0.0]) / jnp.sqrt(2.0)
    across = posterior._class_log_densities(hue, colours, scales, brightness)
    assert float(grey[0, 0, 0, 0]) > float(across[0, 0, 0, 0]) + 1.0


def tiny_prior(size: int = 4, classes: int = 2) -> nd.DiffusionModel:
    """An untrained U-Net prior over ``size`` x ``size`` maps of ``classes`` classes (for
    the plumbing, not the maps)."""
    shape = (size, size, classes)
    net = nd.UNet(base_channels=8, channel_mults=(1,))
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1, *shape)), jnp.zeros((1,), jnp.int32))
    return nd.DiffusionModel(net, params, nd.VPSchedule.cosine(100), "eps", shape)


def random_appearance(images: int, size: int, classes: int) -> dict:
    """Standard normal values of :func:`appearance_model`'s latent sites."""
    keys = jax.random.split(jax.random.PRNGKey(2), 4)
    return {
        "labels": jax.random.normal(keys[0], (images, size, size, classes)),
        "colour_offsets": jax.random.normal(keys[1], (images, classes, 3)),
        "scale_offsets": jax.random.normal(keys[2], (images, classes)),
        "brightness_offsets": jax.random.normal(keys[3], (images, classes)),
    }


def test_the_model_scores_the_pixels_with_that_likelihood():
    import numpyro

    prior = tiny_prior()
    images = jax.random.uniform(jax.random.PRNGKey(1), (1, 4, 4, 3))
    values = {
        "labels": jax.random.normal(jax.random.PRNGKey(2), (1, 4, 4, 2)),
        "colour_offsets": jax.random.normal(jax.random.PRNGKey(3), (1, 2, 3)),
        "scale_offsets": jax.random.normal(jax.random.PRNGKey(4), (1, 2)),
        "brightness_offsets": jax.random.normal(jax.random.PRNGKey(5), (1, 2)),
    }
    mean = jnp.full((2, 3), 0.5)
    model = numpyro.handlers.substitute(posterior.appearance_model, values)
    trace = numpyro.handlers.trace(model).get_trace(prior, images, mean, colour_scale=0.1)
    colours, scales = posterior.appearance(
        values["colour_offsets"], values["scale_offsets"], mean, 0.1
    )
    np.testing.assert_allclose(trace["colours"]["value"], colours)
    np.testing.assert_allclose(
        trace["scales"]["value"], 0.06 * np.exp(0.5 * values["scale_offsets"])
    )
    brightness = 0.04 * np.exp(0.5 * values["brightness_offsets"])
    np.testing.assert_allclose(trace["brightness"]["value"], brightness, rtol=1e-6)
    pixels = trace["pixels"]["fn"].log_prob(images)
    probs = posterior.class_probabilities(values["labels"], 4.0)
    expected = posterior.pixel_log_likelihood(probs, images, colours, scales, brightness)
    np.testing.assert_allclose(pixels, expected.sum((1, 2)), rtol=1e-5)


def test_the_appearance_is_held_at_its_prior_while_the_map_is_noise():
    """The hold adds ``-0.5 (1 / abar_t - 1 / abar_0) |offsets|^2`` per image: large at
    the top level, zero at t = 0, where the target is the model without it."""
    import numpyro

    prior = tiny_prior()
    schedule = prior.schedule
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 4, 3))
    values = random_appearance(2, 4, 2)
    squares = sum(
        np.sum(np.asarray(v) ** 2, tuple(range(1, v.ndim)))
        for n, v in values.items()
        if n != "labels"
    )

    def factor_at(t, **kwargs):
        model = numpyro.handlers.substitute(posterior.appearance_model, values)
        with nd.noise_level(t):
            trace = numpyro.handlers.trace(model).get_trace(
                prior, images, jnp.full((2, 3), 0.5), hold_appearance=True, **kwargs
            )
        site = trace["appearance_hold"]
        return np.asarray(site["fn"].log_prob(site["value"]))

    abar = np.asarray(schedule.alpha_bars, np.float64)
    for t in (99, 50, 1):
        expected = -0.5 * (1 / abar[t] - 1 / abar[0]) * squares
        np.testing.assert_allclose(factor_at(t), expected, rtol=1e-4)
    np.testing.assert_array_equal(factor_at(0), 0.0)
    assert factor_at(99).max() < -10 * squares.max()  # the top level holds hard
    # the isotropic model has no brightness offsets to hold
    iso = squares - np.sum(np.asarray(values["brightness_offsets"]) ** 2, -1)
    np.testing.assert_allclose(
        factor_at(50, brightness_median=None), -0.5 * (1 / abar[50] - 1 / abar[0]) * iso, rtol=1e-4
    )


def test_the_prior_weight_tempers_the_map_prior_in_another_city():
    """``prior_weight`` scales the map prior's log density at ``t = 0`` (a power prior;
    the sampler's handling of a scaled diffusion site is tested in test_jump.py), less
    at the noisier levels; by default 1 in the prior's city and
    :data:`OTHER_CITY_PRIOR_WEIGHT` elsewhere."""
    import numpyro

    from numpyro_diffusion.tasks.segmentation.segment import _model_kwargs

    prior = tiny_prior()
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 4, 3))
    values = random_appearance(2, 4, 2)

    def map_scale(t, **kwargs):
        model = numpyro.handlers.substitute(posterior.appearance_model, values)
        with nd.noise_level(t):
            trace = numpyro.handlers.trace(model).get_trace(
                prior, images, jnp.full((2, 3), 0.5), **kwargs
            )
        return trace["labels"]["scale"]  # the map's log density is multiplied by it

    abar = np.asarray(prior.schedule.alpha_bars, np.float64)
    assert map_scale(0) == 1.0 and map_scale(60) == 1.0
    np.testing.assert_allclose(map_scale(0, prior_weight=0.3), 0.3, rtol=1e-6)
    # the discount grows with the signal: the noise at high levels is not the city's
    np.testing.assert_allclose(
        map_scale(60, prior_weight=0.3), 1 - 0.7 * abar[60] / abar[0], rtol=1e-5
    )
    assert map_scale(99, prior_weight=0.3) > 0.99

    a, b = seg.CITIES["A"], seg.CITIES["B"]
    weight = lambda city, w=None: _model_kwargs(city, a, 0.05, 4.0, False, w)["prior_weight"]  # noqa: E731
    assert weight(a) == 1.0
    assert weight(b) == seg.OTHER_CITY_PRIOR_WEIGHT < 1.0
    assert weight(a._replace(name="A-recoloured", palette=b.palette)) < 1.0
    assert weight(b, 0.8) == 0.8
    with pytest.raises(ValueError, match="prior_weight must be > 0"):
        seg.segment(jax.random.PRNGKey(0), images, prior=prior, city=b, prior_weight=0.0)


def test_mutual_information_of_identical_and_independent_labellings():
    labels = np.arange(16).reshape(1, 4, 4) % 4
    one_hot = np.eye(4)[labels]
    mi = posterior.mutual_information(jnp.asarray(one_hot), jnp.asarray(one_hot))
    np.testing.assert_allclose(mi, np.log(4), rtol=1e-5)
    uniform = jnp.full((1, 4, 4, 3), 1 / 3)
    np.testing.assert_allclose(
        posterior.mutual_information(jnp.asarray(one_hot), uniform), 0, atol=1e-6
    )


def test_scores_on_a_known_labelling():
    truth = np.array([[[0, 0], [1, 2]]])
    labels = np.array([[[0, 1], [1, 2]]])
    np.testing.assert_allclose(scores.pixel_accuracy(labels, truth), [0.75])
    # IoU: class 0 1/2, class 1 1/2, class 2 1
    np.testing.assert_allclose(scores.mean_iou(labels, truth, 3), [2 / 3])
    probs = np.eye(3)[labels] * 0.8 + 0.1 * (1 - np.eye(3)[labels])
    # every pixel at confidence 0.8, accuracy 0.75
    np.testing.assert_allclose(scores.expected_calibration_error(probs, truth), 0.05, rtol=1e-5)
    # the same image many times: every resample has the same ECE
    same = np.repeat(probs, 8, 0), np.repeat(truth, 8, 0)
    assert scores.calibration_error_spread(*same) < 1e-12
    # half the images right at confidence 0.9 (ECE 0.1), half wrong (0.9): resamples spread
    right, wrong = np.eye(3)[truth] * 0.8 + 0.1, np.eye(3)[(truth + 1) % 3] * 0.8 + 0.1
    mixed = np.concatenate([np.repeat(right, 16, 0), np.repeat(wrong, 16, 0)])
    spread = scores.calibration_error_spread(mixed, np.repeat(truth, 32, 0))
    # ECE of a resample is |accuracy - 0.9| with accuracy the share of right images:
    # its standard error is that of a mean of 32 coin flips, 0.5 / sqrt(32)
    np.testing.assert_allclose(spread, 0.5 / np.sqrt(32), rtol=0.2)


def test_colour_clustering_recovers_well_separated_classes():
    city = seg.CITIES["A"]
    maps = seg.generate_maps(jax.random.PRNGKey(6), 4, city)
    images = seg.render(jax.random.PRNGKey(7), maps, city)
    probs, fit = baselines.colour_clustering(images, city.palette)
    assert scores.pixel_accuracy(probs.argmax(-1), maps).mean() > 0.95
    smoothed = baselines.potts_smoothing(fit, coupling=1.0)
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-6)
    matched = baselines.matched_clustering(images, maps, 6)
    assert scores.pixel_accuracy(matched.argmax(-1), maps).mean() > 0.8


def test_brightness_normal_draws_have_the_covariance_its_density_states():
    d = posterior.BrightnessNormal(jnp.array([0.3, 0.5, 0.4]), 0.05, 0.08)
    x = np.asarray(d.sample(jax.random.PRNGKey(0), (40_000,)))
    want = 0.05**2 * np.eye(3) + 0.08**2 * np.ones((3, 3))
    # standard error of a sample covariance entry: sqrt((s_ii s_jj + s_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(want), np.diag(want)) + want**2) / len(x))
    assert np.all(np.abs(np.cov(x.T) - want) < 4 * se)


def test_colour_clustering_recovers_each_class_brightness_spread():
    # two classes, 20,000 pixels each, drawn from the appearance model's class density
    colours = jnp.array([[[0.2, 0.5, 0.3], [0.7, 0.6, 0.4]]])
    scales, spreads = np.array([0.03, 0.05]), np.array([0.08, 0.02])
    draws = [
        posterior.BrightnessNormal(colours[0, k], scales[k], spreads[k]).sample(
            jax.random.PRNGKey(k), (100, 200)
        )
        for k in range(2)
    ]
    images = np.concatenate(draws, 0)[None]  # (1, 200, 200, 3)
    truth = np.repeat([0, 1], 100)[None, :, None] * np.ones((1, 1, 200), int)
    probs, fit = baselines.colour_clustering(images, colours[0], brightness=True)
    assert scores.pixel_accuracy(probs.argmax(-1), truth).mean() > 0.999
    # relative standard error of a standard deviation from n draws: 1 / sqrt(2 n)
    np.testing.assert_allclose(fit.scales[0], scales, rtol=4 / np.sqrt(2 * 2 * 20_000))
    np.testing.assert_allclose(fit.brightness[0], spreads, rtol=0.1)
    _, iso = baselines.colour_clustering(images, colours[0])

    def fitted_log_likelihood(f):
        return np.mean(logsumexp(np.log(f.weights)[:, None, None] + f.log_likelihood, -1))

    assert np.all(iso.brightness == 0)
    assert fitted_log_likelihood(iso) < fitted_log_likelihood(fit) - 0.1


def test_bad_images_get_clear_errors():
    city = seg.CITIES["A"]
    good = np.full((1, 8, 8, 3), 0.5)
    with pytest.raises(ValueError, match="RGB"):
        seg.segment(jax.random.PRNGKey(0), np.zeros((1, 8, 8)), method="clustering")
    with pytest.raises(ValueError, match="NaN"):
        seg.segment(jax.random.PRNGKey(0), np.where(good > 0, np.nan, good), method="clustering")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        seg.segment(jax.random.PRNGKey(0), 255 * good, method="clustering")
    with pytest.raises(ValueError, match="unknown method"):
        seg.segment(jax.random.PRNGKey(0), good, method="kmeans")
    with pytest.raises(ValueError, match="unknown appearance_start 'median'"):
        seg.segment(jax.random.PRNGKey(0), good, method="clustering", appearance_start="median")
    five = tiny_prior(8, 5)
    with pytest.raises(ValueError, match="5 classes"):
        seg.segment(jax.random.PRNGKey(0), good, city=city, prior=five, method="plug_and_play")
    six = tiny_prior(16, 6)
    with pytest.raises(ValueError, match="resize"):
        seg.segment(jax.random.PRNGKey(0), good, city=city, prior=six, method="plug_and_play")
    with pytest.raises(ValueError, match="labels must lie"):
        seg.render(jax.random.PRNGKey(0), np.full((1, 4, 4), 6), city)


def test_label_shift_reweights_the_class_shares_between_dirichlets():
    probs = jnp.asarray(np.eye(3)[np.array([[[0, 0], [1, 2]]])])  # shares 0.5, 0.25, 0.25
    target, source = np.array([0.2, 0.3, 0.5]), np.array([0.5, 0.25, 0.25])
    got = posterior.label_shift(probs, target, source, concentration=10.0)
    share = np.array([0.5, 0.25, 0.25]) + 1e-6
    np.testing.assert_allclose(got, [10.0 * np.sum((target - source) * np.log(share))], rtol=1e-5)
    assert float(posterior.label_shift(probs, source, source, 10.0)[0]) == 0.0


@pytest.mark.compile_bound
def test_point_estimates_of_a_batch_of_images_shard_over_devices():
    """A tiny random prior: this checks the batching, not the segmentation."""
    prior = tiny_prior(8, 6)
    city = seg.CITIES["B"]
    images = seg.render(
        jax.random.PRNGKey(1), seg.generate_maps(jax.random.PRNGKey(2), 4, city, size=8), city
    )
    results = [
        seg.segment(
            jax.random.PRNGKey(3),
            images,
            city=city,
            prior=prior,
            method="plug_and_play",
            num_steps=10,
            chain_method=chain_method,
        )
        for chain_method in ("vectorized", "sharded")
    ]
    assert results[0].probs.shape == (4, 8, 8, 6) and results[0].colours.shape == (4, 6, 3)
    np.testing.assert_allclose(results[0].probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(results[1].probs, results[0].probs, atol=1e-4)


def test_a_class_swap_trades_map_and_appearance_and_keeps_the_pixels_likelihood():
    """ClassSwap is its own inverse; in one image it swaps two map channels with those
    classes' colours, scales and brightness; the pixels' log-likelihood is unchanged
    while the colour prior around the palette sees the swap."""
    import numpyro

    from numpyro_diffusion.tasks.segmentation.swap import ClassSwap

    prior = tiny_prior(4, 3)
    palette = np.array([[0.2, 0.3, 0.4], [0.6, 0.6, 0.6], [0.3, 0.6, 0.2]])
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 4, 4, 3))
    values = random_appearance(2, 4, 3)
    swap = ClassSwap.for_palette(palette, 0.05)
    assert swap == ClassSwap.for_palette(palette.copy(), 0.05)  # reuses the compiled walk

    def trace_of(v):
        model = numpyro.handlers.substitute(posterior.appearance_model, v)
        return numpyro.handlers.trace(model).get_trace(prior, images, palette, colour_scale=0.05)

    before = trace_of(values)
    seen = set()
    for seed in range(12):
        key = jax.random.PRNGKey(seed)
        swapped = swap(key, values)
        again = swap(key, swapped)
        swapped = {name: np.asarray(v) for name, v in swapped.items()}
        for name in values:
            np.testing.assert_allclose(again[name], values[name], atol=1e-5)
        after = trace_of(swapped)
        changed = [
            b for b in range(2) if not np.allclose(swapped["labels"][b], values["labels"][b])
        ]
        assert len(changed) == 1  # one image
        b = changed[0]
        moved = np.flatnonzero(np.any(swapped["labels"][b] != values["labels"][b], axis=(0, 1)))
        assert len(moved) == 2
        j, k = moved
        seen.add((int(j), int(k)))
        for name in ("colours", "scales", "brightness"):
            np.testing.assert_allclose(
                np.asarray(after[name]["value"])[b][[j, k]],
                np.asarray(before[name]["value"])[b][[k, j]],
                atol=1e-5,
            )
        np.testing.assert_allclose(
            np.asarray(after["labels"]["value"])[b][..., [j, k]],
            np.asarray(before["labels"]["value"])[b][..., [k, j]],
        )
        np.testing.assert_allclose(
            after["pixels"]["fn"].log_prob(images),
            before["pixels"]["fn"].log_prob(images),
            rtol=1e-5,
        )
        prior_change = after["colour_offsets"]["fn"].log_prob(swapped["colour_offsets"])
        assert not np.allclose(
            prior_change[b], before["colour_offsets"]["fn"].log_prob(values["colour_offsets"])[b]
        )
    assert seen == {(0, 1), (0, 2), (1, 2)}  # every pair is proposed


def test_chains_start_each_class_colour_in_its_own_palette_cell():
    """InitToOwnColours draws each class's colour from its prior restricted to the
    colours nearest its palette entry: none starts two classes swapped, a class far from
    the rest keeps its standard normal offsets, and two close classes' offsets along
    the line between them follow the normal truncated at the cells' boundary."""
    import numpyro
    from scipy.stats import truncnorm

    from numpyro_diffusion.infer.potential import init_to_diffusion_noise
    from numpyro_diffusion.tasks.segmentation.start import InitToOwnColours

    palette = np.array([[0.40, 0.40, 0.40], [0.45, 0.42, 0.40], [0.90, 0.10, 0.10]])
    start = InitToOwnColours()
    n = 4000  # images, one start each
    images = jnp.full((n, 4, 4, 3), 0.5)
    model = numpyro.handlers.substitute(
        numpyro.handlers.seed(posterior.appearance_model, jax.random.PRNGKey(0)),
        substitute_fn=init_to_diffusion_noise(fallback=start),
    )
    trace = numpyro.handlers.trace(model).get_trace(tiny_prior(4, 3), images, palette, 0.05)
    offsets = np.asarray(trace["colour_offsets"]["value"])  # (n, K, 3)
    colours = palette + 0.05 * offsets
    nearest = np.linalg.norm(colours[:, :, None] - palette, axis=-1).argmin(-1)
    assert np.all(nearest == np.arange(3))
    far = offsets[:, 2]
    np.testing.assert_allclose(far.mean(0), 0.0, atol=4 / np.sqrt(n))
    np.testing.assert_allclose(far.std(0), 1.0, atol=4 / np.sqrt(2 * n))
    axis = (palette[1] - palette[0]) / np.linalg.norm(palette[1] - palette[0])
    boundary = np.linalg.norm(palette[1] - palette[0]) / 2 / 0.05  # in prior sds
    for k, along in ((0, offsets[:, 0] @ axis), (1, -(offsets[:, 1] @ axis))):
        exact = truncnorm(-np.inf, boundary)
        np.testing.assert_allclose(along.mean(), exact.mean(), atol=4 * exact.std() / np.sqrt(n))
        across = offsets[:, k] - np.outer(offsets[:, k] @ axis, axis)  # unrestricted
        np.testing.assert_allclose((across**2).sum(1).mean(), 2.0, atol=4 * 2 / np.sqrt(n))
    scales = np.asarray(trace["scale_offsets"]["value"])  # drawn from the prior
    np.testing.assert_allclose(scales.std(), 1.0, atol=4 / np.sqrt(2 * scales.size))


def test_the_own_cell_start_names_what_a_model_must_declare():
    import numpyro
    import numpyro.distributions as dist

    from numpyro_diffusion.tasks.segmentation.start import InitToOwnColours

    def undeclared():
        numpyro.sample("colour_offsets", dist.Normal(0.0, 1.0).expand((3, 3)).to_event(2))

    model = numpyro.handlers.substitute(
        numpyro.handlers.seed(undeclared, 0), substitute_fn=InitToOwnColours()
    )
    with pytest.raises(ValueError, match="infer=.*palette"):
        numpyro.handlers.trace(model).get_trace()


@pytest.mark.compile_bound
def test_the_own_cell_start_compiles_one_walk_for_every_palette():
    """The start reads the palette from the model's arguments (the colour site's
    ``infer``), not from constants of its own, so a second palette reuses the walk."""
    from numpyro_diffusion.tasks.segmentation.start import InitToOwnColours

    sampler = nd.AnnealedMCMC(
        posterior.appearance_model,
        "uhmc",
        num_chains=2,
        steps_per_level=1,
        levels=2,
        init_strategy=InitToOwnColours(),
        progress_bar=False,
    )
    images = jnp.full((1, 4, 4, 3), 0.5)
    base = np.array([[0.40, 0.40, 0.40], [0.45, 0.42, 0.40], [0.90, 0.10, 0.10]])
    for palette in (base, base[::-1].copy()):
        sampler.run(jax.random.PRNGKey(0), tiny_prior(4, 3), images, palette, 0.05)
    assert sampler.num_traces == 1


@pytest.mark.compile_bound
def test_images_sharing_an_unadjusted_run_do_not_touch_each_other():
    """U-HMC moves each image's coordinates alone, so an image's draws do not depend on
    the image beside it in a run; MALA accepts or rejects the run's images together."""
    prior = tiny_prior(8, 6)
    city = seg.CITIES["B"]
    images = np.asarray(
        seg.render(
            jax.random.PRNGKey(1), seg.generate_maps(jax.random.PRNGKey(2), 3, city, size=8), city
        )
    )

    def first_image(kernel, neighbour, start="palette"):
        result = seg.segment(
            jax.random.PRNGKey(3),
            images[[0, neighbour]],
            city=city,
            prior=prior,
            kernel=kernel,
            images_per_run=2,
            num_samples=2,
            levels=3,
            steps_per_level=2,
            appearance_start=start,
        )
        assert result.probs.shape == (2, 8, 8, 6) and result.label_draws.shape == (2, 2, 8, 8)
        # each draw's probabilities: their mean is probs, their argmax the label draws
        np.testing.assert_allclose(result.draw_probs.mean(0), result.probs, atol=1e-6)
        np.testing.assert_array_equal(result.draw_probs.argmax(-1), result.label_draws)
        return result.probs[0]

    np.testing.assert_allclose(first_image("uhmc", 1), first_image("uhmc", 2), atol=1e-5)
    own_cell = [first_image("uhmc", neighbour, "own_cell") for neighbour in (1, 2)]
    np.testing.assert_allclose(*own_cell, atol=1e-5)  # a drawn start draws per image too
    assert np.abs(first_image("mala", 1) - first_image("mala", 2)).max() > 1e-3
