"""Two local CPU processes on JAX's multi-controller runtime give the draws of one."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import arviz as az
import jax
import numpy as np
import pytest

from numpyro_diffusion.infer.multihost import gather, is_main_process

SCRIPT = Path(__file__).parent.parent / "scripts" / "distributed_sampling.py"


def script():
    spec = importlib.util.spec_from_file_location("distributed_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_process_needs_no_gathering():
    tree = {"a": jax.numpy.ones((4, 2)), "b": np.zeros(3)}
    assert gather(tree) is tree and is_main_process()


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["mcmc", "smc", "pnp"])
def test_two_processes_give_the_draws_of_one(tmp_path, sampler):
    flags = ["--chains", "64", "--levels", "20", "--sampler", sampler, "--no-precondition"]
    out = tmp_path / "draws.npz"
    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(SCRIPT),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
                "--local-devices",
                "1",
                "--out",
                str(out),
                "--quiet",
                *flags,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        logs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]
    assert "2 process(es), 2 device(s)" in logs[0] and "process(es)" not in logs[1]
    distributed = np.load(out)
    module = script()
    if sampler == "pnp":
        single = module.plug_and_play(module.parse(["--quiet", *flags]), "vectorized", 0)
        assert distributed["x"].shape == (64, 2)
        np.testing.assert_allclose(distributed["x"], single["x"], rtol=1e-4, atol=1e-4)
        return
    idata = az.from_netcdf(tmp_path / "draws.nc")  # process 0's ArviZ view of the whole run
    assert idata.posterior.sizes["chain"] == 64 and "level_stats" in idata.groups()
    single = module.build_sampler(module.parse(["--quiet", *flags]), "vectorized")
    single.run(jax.random.PRNGKey(0), np.asarray(module.DATA, np.float32))
    # The same per-chain keys and arithmetic, compiled for another device count: XLA's
    # fusion differs in the last bits, which 600 leapfrog steps can grow to ~1e-4. A wrong
    # key, shard or gather would differ by the posterior's spread.
    for name, value in single.get_samples(group_by_chain=True).items():
        np.testing.assert_allclose(distributed[name], np.asarray(value), rtol=1e-3, atol=1e-3)
