"""Smoke tests: every benchmark script runs end to end at tiny settings (untimed)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).parent.parent / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
@pytest.mark.compile_bound
def test_composition_2d_quick(tmp_path):
    argv = ["--quick", "--quiet", "--out", str(tmp_path), "--cache", str(tmp_path / "cache")]
    result = load("composition_2d").main(argv)
    rows = {(r["task"], r["parameterization"], r["sampler"]): r for r in result["rows"]}
    assert np.isfinite(rows[("product", "energy", "HMC")]["log_lik"][0])
    assert ("product", "eps", "MALA") not in rows  # score-only: n/a
    assert rows[("product", "eps", "MALA, line integral")]["seeds"] == 1
    assert ("product", "eps", "annealed SMC (HMC)") not in rows
    assert ("product", "energy", "annealed SMC (HMC)") in rows
    assert {r["setting"] for r in result["rows"]} == {"-", "paper steps", "library defaults"}
    for suffix in ("json", "md", "png"):
        assert (tmp_path / f"composition_2d_quick.{suffix}").exists()
    # a report reads every finished run from the cache: the same table
    again = load("composition_2d").main(argv + ["--report"])
    assert again["rows"] == result["rows"]


@pytest.mark.slow
@pytest.mark.compile_bound
def test_overhead_quick(tmp_path):
    result = load("overhead").main(["--quick", "--out", str(tmp_path)])
    cases = {r["case"]: r for r in result["cases"]}
    assert set(cases) == {"ring", "mlp3x128"}
    for r in cases.values():
        assert r["library_traces"] == 1  # later runs reuse the program
        assert len(r["ratios"]) == 2 and r["chains"] == 16
    stored = json.loads((tmp_path / "overhead_quick.json").read_text())
    assert [r["case"] for r in stored["cases"]] == [r["case"] for r in result["cases"]]


@pytest.mark.slow
@pytest.mark.compile_bound
def test_throughput_quick(tmp_path):
    rows = load("throughput").main(["--quick", "--out", str(tmp_path)])
    measured = [r for r in rows if "chains" in r]
    assert {r["chains"] for r in measured} == {1, 4}
    assert all(r["chain_steps_per_s"] > 0 for r in measured)
    assert (tmp_path / "throughput_quick.md").exists()


def test_throughput_builds_only_the_models_asked_for(monkeypatch):
    throughput = load("throughput")
    ring = object()

    def no_unet(size, conv):
        raise AssertionError(f"the {size}x{size} U-Net was built but not asked for")

    monkeypatch.setattr(throughput, "load_demo_models", lambda: (ring, None))
    monkeypatch.setattr(throughput, "_unet_model", no_unet)
    assert throughput.build_models(False, names=("mlp",)) == {"mlp-2d (energy)": ring}
    with pytest.raises(ValueError, match="no model name starts with"):
        throughput.build_models(True, names=("transformer",))


@pytest.mark.slow
@pytest.mark.compile_bound
@pytest.mark.filterwarnings("ignore:.*divergent transitions")
@pytest.mark.parametrize("part", ["inpainting", "constraints", "cfg"])
def test_digits_quick(tmp_path, part):
    # one part per test: each compiles its own U-Net walks, and parallel workers share them
    result = load("digits").main(["--quick", "--quiet", "--only", part, "--out", str(tmp_path)])
    if part == "inpainting":
        methods = [r["method"] for r in result["inpainting"]]
        assert "plug-and-play (eps)" in methods and "annealed HMC (energy)" in methods
    elif part == "cfg":
        assert [r["w"] for r in result["cfg"]] == [0.0, 4.0]
    else:
        symmetry = result["constraints"]["symmetry"]
        assert symmetry[0]["method"].startswith("no constraint") and len(symmetry) == 3
        assert all(r["error"] >= 0 for r in symmetry)
        methods = {r["method"] for r in result["constraints"]["classifier"]}
        assert methods >= {"plug-and-play (eps)"}
    figure = {"inpainting": "inpainting", "cfg": "cfg", "constraints": "symmetry"}[part]
    for name in ("digits_quick.json", "digits_quick.md", f"digits_quick_{figure}.png"):
        assert (tmp_path / name).exists()


@pytest.mark.slow
@pytest.mark.compile_bound
def test_multiprocess_quick(tmp_path):
    result = load("multiprocess").main(["--quick", "--out", str(tmp_path)])
    assert [r["processes"] for r in result["rows"]] == [1, 2]
    assert all(r["transitions_per_second"] > 0 and r["seconds"] > 0 for r in result["rows"])
    assert (tmp_path / "multiprocess_quick.md").exists()


@pytest.mark.slow
@pytest.mark.compile_bound
def test_tsp_quick(tmp_path):
    result = load("tsp").main(["--quick", "--cities", "50", "--out", str(tmp_path)])
    rows = {r["method"]: r for r in result["rows"]}
    assert rows["LKH-3"]["gap"] == 0.0
    for name, row in rows.items():
        if name.endswith("+ 2-opt"):  # 2-opt never lengthens what it starts from
            assert row["gap"] <= rows[name[: -len(" + 2-opt")]]["gap"] + 1e-12
    assert (tmp_path / "tsp50_quick.md").exists() and (tmp_path / "tsp50_quick.png").exists()


@pytest.mark.slow
@pytest.mark.compile_bound
def test_segmentation_quick(tmp_path):
    # with the brightness colour model, the held appearance and class swaps (the
    # end-to-end test runs the defaults: isotropic, not held, no swaps)
    argv = ["--quick", "--brightness", "--hold-appearance", "--swap-classes"]
    argv += ["--out", str(tmp_path)]
    result = load("segmentation").main(argv)
    rows = {r["method"]: r for r in result["rows"]}
    assert set(rows) == set(load("segmentation").METHODS)
    for row in rows.values():
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["ece"] <= 1.0
    name = "segmentation_B_brightness_hold_swap_cellstart_quick"  # the default start named
    table = (tmp_path / f"{name}.md").read_text()
    assert "brightness spread" in table and "holds the appearance" in table
    assert "class swaps" in table and "nearer its own palette entry" in table
    assert (tmp_path / f"{name}_reliability.png").exists()


def test_segmentation_lays_a_city_out_like_another():
    segmentation = load("segmentation")
    a, b = segmentation.seg.CITIES["A"], segmentation.seg.CITIES["B"]
    city = segmentation.laid_out_like(a, b)
    assert city.name == "B-layoutA"
    for field in ("palette", "texture", "colour_jitter", "shading", "noise"):
        assert getattr(city, field) is getattr(b, field)
    for field in ("proportions", "road_width", "building_size", "field_scale"):
        assert getattr(city, field) is getattr(a, field)


def test_segmentation_recolours_a_city_reproducibly():
    segmentation = load("segmentation")
    city = segmentation.seg.CITIES["B"]
    recoloured = segmentation.recoloured(city, 31, 0.06)
    assert recoloured.name == "B-palette31" and recoloured.palette.shape == city.palette.shape
    assert np.all((recoloured.palette >= 0.05) & (recoloured.palette <= 0.95))
    assert 0.01 < np.abs(recoloured.palette - city.palette).mean() < 0.1
    again = segmentation.recoloured(city, 31, 0.06)
    np.testing.assert_array_equal(recoloured.palette, again.palette)
    assert recoloured.proportions is city.proportions  # only the colours change


def test_segmentation_chains_scores_groups_of_draws(tmp_path):
    """The script's scoring and figure on draws whose scores are known (its sampler run
    is segment's, which test_segmentation_quick covers)."""
    bench = load("segmentation_chains")
    truth = np.zeros((2, 3, 3), int)
    # four one-hot draws: three right everywhere (class 0), the last wrong (class 1)
    draws = np.zeros((4, 2, 3, 3, 6))
    draws[:3, ..., 0] = 1.0
    draws[3, ..., 1] = 1.0
    rows = bench.by_group_size(draws, truth, [1, 2, 4])
    assert [r["groups"] for r in rows] == [4, 2, 1]
    got = [[r["accuracy"], r["confidence"], r["ece"]] for r in rows]
    # pairs: (0, 1) certain and right; (2, 3) a tie, argmax class 0, right at 1/2
    expected = [[0.75, 1.0, 0.25], [1.0, 0.75, 0.25], [1.0, 0.75, 0.25]]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    bench.plot(rows, str(tmp_path / "chains.png"))
    assert (tmp_path / "chains.png").exists()


@pytest.mark.slow
@pytest.mark.compile_bound
def test_peer_pytorch_quick(tmp_path):
    pytest.importorskip("torch", reason="the peer extra (PyTorch) is not installed")
    result = load("peer_pytorch").main(["--quick", "--out", str(tmp_path)])
    assert result["agreement"] < 1e-4  # the two frameworks compute the same energies
    assert [r["chains"] for r in result["rows"]] == [1, 16]
    assert all(r["library_s"] > 0 and r["pytorch_s"] > 0 for r in result["rows"])
    # the same walk: 16 chains x 90 steps accept equally often (standard error ~0.01)
    last = result["rows"][-1]
    assert abs(last["library_acceptance"] - last["pytorch_acceptance"]) < 0.05
    assert last["library_blocks_s"] > 0 and result["rows"][0]["library_blocks_s"] is None
    assert (tmp_path / "peer_pytorch_quick.md").exists()


@pytest.mark.slow
@pytest.mark.compile_bound
def test_walk_profile_quick(tmp_path):
    # its own process: the script asks XLA for the walk's HLO before JAX starts
    pytest.importorskip("torch", reason="the peer extra (PyTorch) is not installed")
    script = BENCHMARKS / "walk_profile.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads((tmp_path / "walk_profile_quick.json").read_text())["rows"]
    assert [r["chains"] for r in rows] == [4, 16] and rows[1]["block"] == 8
    for r in rows:
        # every operation of the walk was found in the HLO and classed; the networks'
        # matrix products and random numbers are there in both frameworks
        assert r["library_us"]["network: matrix products"] > 0
        assert r["library_us"]["random numbers"] > 0
        assert r["pytorch_us"]["matrix products"] > 0
        assert r["pytorch_us"]["random numbers"] > 0


@pytest.mark.slow
def test_network_step_quick(tmp_path):
    result = load("network_step").main(["--quick", "--out", str(tmp_path)])
    rows = result["rows"]
    assert [r["chains"] for r in rows] == [8, 32]
    assert all(r["in_loop_ms"] > 0 and r["per_call_faults"] >= 0 for r in rows)
    assert (tmp_path / "network_step_quick.md").exists()
