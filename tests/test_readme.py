"""Every Python block of the README runs, in order, as a user would paste them."""

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_its_examples():
    assert len(python_blocks()) >= 3


@pytest.mark.slow
def test_every_readme_block_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # blocks write checkpoints where they run
    namespace: dict = {}
    for i, block in enumerate(python_blocks()):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            exec(compile(block, f"README block {i + 1}", "exec"), namespace)
        if i == 0:  # the Quickstart: a latent noise scale, preconditioned HMC
            sampler = namespace["sampler"]
            # 4,867 before preconditioning; 10 to 21 over six seeds since: under one in
            # 10,000 of the ~485,000 sampling transitions, each rejected and reported
            assert sampler.num_divergent <= 48
            assert not [w for w in caught if "ignored" in str(w.message)]
            assert "sigma" in capsys.readouterr().out  # print_summary printed the sites
            sigma = namespace["sampler"].get_samples()["sigma"]
            assert 0.1 < float(sigma.mean()) < 0.6
    # the SMC block: two independent estimates of the same log p(y) (the prior is exact)
    smc, log_py, stderr = namespace["smc"], namespace["log_py"], namespace["stderr"]
    spread = (smc.log_normalizer_stderr**2 + stderr**2) ** 0.5
    assert abs(smc.log_normalizer - log_py) < 4.5 * spread
