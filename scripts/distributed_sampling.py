"""Annealed MCMC, SMC and batched plug-and-play over several processes or hosts with
``jax.distributed``.

Every process runs this same script; the chains (or, for ``--sampler pnp``, the
independent problems of a batch) are split over all processes' devices
(``chain_method="sharded"``), the results are gathered to every process, and process 0
prints the summary and writes the draws.

One machine, two processes (CPU, gloo collectives)::

    python scripts/distributed_sampling.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 0 &
    python scripts/distributed_sampling.py --coordinator 127.0.0.1:12355 \\
        --num-processes 2 --process-id 1

A cluster (one process per host or per GPU): under SLURM (``srun``) or Open MPI
(``mpirun``) give no coordinator: ``jax.distributed.initialize()`` reads the
scheduler's environment (``SLURM_JOB_NODELIST``, ``SLURM_NTASKS``, ``SLURM_PROCID``,
``SLURM_LOCALID``, ...)::

    srun --nodes 2 --ntasks-per-node 4 --gpus-per-task 1 \\
        python scripts/distributed_sampling.py --chains 65536
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def parse(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="HOST:PORT of process 0 (omit under SLURM / MPI)")
    parser.add_argument("--num-processes", type=int)
    parser.add_argument("--process-id", type=int)
    parser.add_argument("--local-devices", type=int, default=None, help="CPU devices a process")
    parser.add_argument("--sampler", choices=("mcmc", "smc", "pnp"), default="mcmc")
    parser.add_argument("--kernel", default="hmc")
    parser.add_argument("--chains", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--levels", type=int, default=None)
    parser.add_argument("--no-precondition", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timed-runs", type=int, default=0, help="runs timed after the first")
    parser.add_argument("--out", default=None, help="process 0 writes the draws here (.npz)")
    parser.add_argument("--quiet", action="store_true")
    return parser.parse_args(argv)


def start_runtime(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize`` (CPU processes talk through gloo)."""
    if args.local_devices and os.environ.get("JAX_PLATFORMS", "cpu") == "cpu":
        os.environ["XLA_FLAGS"] = (
            f"{os.environ.get('XLA_FLAGS', '')} "
            f"--xla_force_host_platform_device_count={args.local_devices}"
        ).strip()
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if args.coordinator is None:
        jax.distributed.initialize()  # the scheduler's environment (SLURM, Open MPI)
    else:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )


def prior():
    """An exact two-mode Gaussian-mixture diffusion model in 2D."""
    from numpyro_diffusion import GaussianMixtureDiffusion, VPSchedule

    return GaussianMixtureDiffusion(
        [[-1.0, 0.5], [1.0, -0.5]],
        [[0.4, 0.4], [0.4, 0.4]],
        [0.3, 0.7],
        VPSchedule.cosine(100),
    )


def model(y):
    """The mixture prior, a latent noise scale and three observations."""
    import numpyro
    import numpyro.distributions as dist

    from numpyro_diffusion import diffusion_prior

    x = diffusion_prior("x", prior())
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    numpyro.sample("y", dist.Normal(x, sigma).expand((3, 2)).to_event(2), obs=y)


def known_noise_model(y):
    """The mixture prior and three observations of known noise (a point estimate's model)."""
    import numpyro
    import numpyro.distributions as dist

    from numpyro_diffusion import diffusion_prior

    x = diffusion_prior("x", prior())
    numpyro.sample("y", dist.Normal(x, 0.5).expand((3, 2)).to_event(2), obs=y)


DATA = [[0.8, -0.4], [1.1, -0.6], [0.9, -0.2]]


def problems(num_problems: int):
    """``(num_problems, 3, 2)`` observations: DATA shifted along a line, one set a problem."""
    import numpy as np

    shift = np.linspace(-2.0, 0.0, num_problems, dtype=np.float32)[:, None, None]
    return np.asarray(DATA, np.float32)[None] + shift


def plug_and_play(args: argparse.Namespace, chain_method: str, seed: int) -> dict:
    """Point estimates of ``--chains`` problems in one batch; ``{"x": (B, 2)}``."""
    import jax
    import numpy as np

    from numpyro_diffusion import plug_and_play as solve

    result = solve(
        known_noise_model,
        jax.random.PRNGKey(seed),
        problems(args.chains),
        num_steps=20 * args.steps,
        in_axes=(0,),
        chain_method=chain_method,
    )
    return {"x": np.asarray(result.params["x"])}


def build_sampler(args: argparse.Namespace, chain_method: str):
    from numpyro_diffusion import AnnealedMCMC, AnnealedSMC

    common = dict(
        levels=args.levels,
        chain_method=chain_method,
        progress_bar=not args.quiet,
        precondition=False if args.no_precondition else None,
    )
    if args.sampler == "smc":
        return AnnealedSMC(model, args.kernel, args.chains, args.steps, **common)
    return AnnealedMCMC(model, args.kernel, args.chains, args.steps, **common)


def main(argv=None) -> None:
    args = parse(argv)
    start_runtime(args)
    import jax
    import numpy as np

    if args.sampler == "pnp":
        start = time.perf_counter()
        samples = plug_and_play(args, "sharded", args.seed)
        seconds = time.perf_counter() - start
        sampler = idata = None
        timed = []
        for i in range(args.timed_runs):  # the compiled program is reused
            start = time.perf_counter()
            plug_and_play(args, "sharded", args.seed + 1 + i)
            timed.append(time.perf_counter() - start)
    else:
        sampler = build_sampler(args, "sharded")
        y = np.asarray(DATA, np.float32)
        start = time.perf_counter()
        sampler.run(jax.random.PRNGKey(args.seed), y)
        samples = {k: np.asarray(v) for k, v in sampler.get_samples(group_by_chain=True).items()}
        seconds = time.perf_counter() - start
        idata = sampler.to_arviz()  # every process holds the whole run
        timed = []
        for i in range(args.timed_runs):  # the compiled walk is reused
            start = time.perf_counter()
            sampler.run(jax.random.PRNGKey(args.seed + 1 + i), y)
            jax.block_until_ready(sampler.get_samples())
            timed.append(time.perf_counter() - start)
    if jax.process_index() == 0:
        if sampler is not None and not args.quiet:
            sampler.print_summary()
        print(
            f"{jax.process_count()} process(es), {jax.device_count()} device(s): "
            f"{args.chains} chains in {seconds:.2f} s (compilation included)",
            file=sys.stderr,
        )
        if args.out:
            np.savez(args.out, seconds=seconds, timed_seconds=np.asarray(timed), **samples)
            if idata is not None:
                idata.to_netcdf(os.path.splitext(args.out)[0] + ".nc")
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
