"""Application tests (numpyro_diffusion.tasks) are all marked slow: `pytest -m "not slow"`
is the core on small exact targets."""

import pytest


def pytest_collection_modifyitems(config, items):
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.slow)
