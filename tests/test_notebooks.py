"""The notebooks match their Python sources and execute end to end (small settings)."""

import importlib.util
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
SOURCES = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))


def builder():
    spec = importlib.util.spec_from_file_location(
        "build_notebooks", ROOT / "scripts/build_notebooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_notebook_is_built_from_its_source():
    assert {p.stem for p in SOURCES} == {
        "01_composition_2d",
        "02_diagnostics",
        "03_plug_and_play_digits",
        "04_smc_evidence",
        "05_segmentation",
        "06_tsp",
    }
    build = builder()
    for source in SOURCES:
        stored = nbformat.read(source.with_suffix(".ipynb"), as_version=4)
        expected = build.read_cells(source.read_text())
        assert [(c.cell_type, c.source) for c in stored.cells] == expected, (
            f"{source.with_suffix('.ipynb').name} differs from {source.name}: run "
            f"python scripts/build_notebooks.py {source.stem}"
        )
        assert any(c.get("outputs") for c in stored.cells if c.cell_type == "code"), (
            "notebooks are stored with their outputs"
        )


@pytest.mark.slow
@pytest.mark.compile_bound
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_executes(source, monkeypatch):
    monkeypatch.setenv("NUMPYRO_DIFFUSION_SMALL", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = builder().build_notebook(source, execute=False)
    NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(source.parent)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
