"""Test configuration: CPU only, four fake devices for the sharding tests."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in flags:
    os.environ["XLA_FLAGS"] = (flags + " --xla_force_host_platform_device_count=4").strip()
os.environ.setdefault("MPLBACKEND", "Agg")

if "JAX_COMPILATION_CACHE_DIR" not in os.environ and "PYTEST_XDIST_WORKER" not in os.environ:
    # One XLA compilation cache for the whole run, shared by the xdist workers and the
    # notebook kernels (they inherit the environment): many tests build the same program
    # from fresh closures, and each module's programs are released after it. The cache
    # starts empty each run, so the suite's time is what a clean checkout (CI) sees.
    # A JAX_COMPILATION_CACHE_DIR already set is used instead.
    import tempfile

    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="jax-compile-cache-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"


if "PYTEST_XDIST_WORKER" not in os.environ:
    # ArviZ writes a once-a-day stamp file on first import (a temporary file renamed
    # over it); xdist workers importing it together race on the rename, so the
    # controller imports it first, before any worker starts.
    import arviz  # noqa: E402, F401

import gc  # noqa: E402

import pytest  # noqa: E402


def pytest_unconfigure(config):
    cache = os.environ.get("JAX_COMPILATION_CACHE_DIR", "")
    if "PYTEST_XDIST_WORKER" not in os.environ and "jax-compile-cache-" in cache:
        import shutil

        shutil.rmtree(cache, ignore_errors=True)


def pytest_configure(config):
    """The core set (``-m "not slow"``: small exact targets, many short programs) is
    bound by compiling, not running: it compiles with XLA's backend optimisation off
    (about a fifth faster here). Runs that include the applications keep the default,
    under which their large networks run faster. JAX reads the flag when its backend
    starts, after this hook (each xdist worker runs it too)."""
    if "not slow" in (config.getoption("markexpr", "") or ""):
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_backend_optimization_level" not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level=0".strip()


@pytest.fixture(autouse=True)
def _compile_bound_tests_skip_most_optimisations(request, monkeypatch):
    """Tests marked ``compile_bound`` run tiny settings of big networks (smoke tests of
    benchmarks and notebooks): compiling takes most of their time, so XLA skips most
    optimisations for them (notebook kernels read the environment variable). Tests whose
    networks run long keep the default: unoptimised, they run several times slower."""
    if request.node.get_closest_marker("compile_bound") is None:
        yield
        return
    import jax

    monkeypatch.setenv("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
    before = jax.config.values["jax_disable_most_optimizations"]
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
        _clear_compiled_programs()  # later tests compile their own, optimised


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """Each test module's compiled programs go with it: a worker runs many modules, and
    the samplers' shared caches would otherwise keep every U-Net walk in memory."""
    yield
    _clear_compiled_programs()


def _clear_compiled_programs() -> None:
    import importlib

    import jax

    from numpyro_diffusion.infer.annealed import clear_compiled_walks

    clear_compiled_walks()
    importlib.import_module("numpyro_diffusion.infer.plug_and_play")._CACHE.clear()
    jax.clear_caches()
    gc.collect()


def pytest_collection_modifyitems(config, items):
    """The slow tests (applications, notebooks, benchmark smoke tests: up to minutes each)
    run first and the core's short ones last, so that xdist's workers finish together:
    a long test started near the end keeps one worker busy while the other waits. The
    sort is stable, so the order within each group is the collection's."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
