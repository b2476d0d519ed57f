import subprocess
import sys

import pytest

from numpyro_diffusion.cli import main


def test_help_explains_the_demo(capsys):
    with pytest.raises(SystemExit) as info:
        main(["demo", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--chains",
        "--levels",
        "--steps-per-level",
        "--kernel",
        "--output",
        "--retrain",
    ):
        assert option in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["demo", "--chains", "zero"], "expected a positive integer"),
        (["demo", "--kernel", "nuts"], "invalid choice: 'nuts'"),
        (["demo", "--bogus"], "unrecognized arguments: --bogus"),
        (["train"], "invalid choice: 'train'"),
    ],
)
def test_bad_options_exit_2_with_a_message(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err


def test_console_script_is_installed():
    result = subprocess.run(
        [sys.executable, "-m", "numpyro_diffusion.cli", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "demo" in result.stdout


@pytest.mark.slow
def test_demo_shows_annealed_hmc_closer_to_the_truth(tmp_path, capsys):
    from numpyro_diffusion.tasks.demo import run_demo

    png = tmp_path / "demo.png"
    rows = run_demo(chains=300, levels=50, steps_per_level=8, output=str(png), progress_bar=False)
    out = capsys.readouterr().out
    assert "reverse diffusion" in out and "annealed HMC" in out and "log-lik" in out
    reverse, hmc = rows
    assert hmc["log_lik"] > reverse["log_lik"] + 2.0
    assert 0.4 < hmc["acceptance"] < 1.0
    assert png.exists() and png.stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.compile_bound
def test_tsp_command_prints_the_gap_table_and_writes_the_figure(tmp_path, capsys):
    import numpy as np

    coords = np.random.default_rng(0).random((2, 50, 2))
    np.save(tmp_path / "cities.npy", coords)
    out = tmp_path / "tsp.png"
    argv = ["tsp", "--input", str(tmp_path / "cities.npy"), "--steps", "8", "--output", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "LKH-3" in printed and "greedy edge + 2-opt" in printed and "image prior" in printed
    assert out.exists()
    with pytest.raises(ValueError, match="unit square"):
        np.save(tmp_path / "bad.npy", coords + 1.0)
        main(["tsp", "--input", str(tmp_path / "bad.npy")])


@pytest.mark.slow
def test_segment_command_scores_generated_images_and_writes_the_figure(tmp_path, capsys):
    import numpy as np

    out = tmp_path / "segment.png"
    argv = ["segment", "--images", "1", "--method", "potts", "--output", str(out)]
    assert main(argv) == 0
    assert "pixel accuracy" in capsys.readouterr().out and out.exists()
    np.save(tmp_path / "bad.npy", np.full((1, 32, 32, 3), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        main(["segment", "--input", str(tmp_path / "bad.npy")])
