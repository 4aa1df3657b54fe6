"""The notebooks in notebooks/: each runs top to bottom without errors (small settings,
`TFREC_NOTEBOOK_FAST=1`), and the committed files carry no outputs."""
import pathlib
import shutil
import sys
import time

import nbformat
import pytest

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Absolute paths that would tie a notebook to this checkout: the repo and the folder beside it.
LOCAL_PREFIXES = {str(NOTEBOOK_DIR.resolve().parents[1]) + "/", str(pathlib.Path.home()) + "/"}
CELL_TIMEOUT_S = 600


def test_the_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    for prefix in ("01_", "02_", "03_", "04_", "05_", "06_"):
        assert any(n.startswith(prefix) for n in names), f"no notebook {prefix}* in notebooks/: {names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_notebook_has_no_outputs(path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name} cell {i} has outputs; strip them before committing"
            assert cell.execution_count is None, f"{path.name} cell {i} has an execution count; strip it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_source_imports_only_tfrec_and_display_libraries(path):
    allowed = {"tfrec", "os", "pathlib", "tempfile", "json", "time", "matplotlib", "numpy", "pandas",
               "tensorflow", "tensorflow_text"}
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]):
                top = words[1].split(".")[0]
                assert top in allowed, f"{path.name} imports {words[1]!r}: notebooks import tfrec (+ display libs)"
            assert not line.startswith(("def ", "class ")), f"{path.name} defines {line!r}: put it in tfrec"
            for local in LOCAL_PREFIXES:  # this machine's checkout location, whatever it is
                assert local not in line, f"{path.name} holds an absolute path: {line!r}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel inherits this environment: small settings, temp folders inside tmp_path.
    monkeypatch.setenv("TFREC_NOTEBOOK_FAST", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    nb = nbformat.read(str(path), as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S, allow_errors=False,
                            resources={"metadata": {"path": str(NOTEBOOK_DIR)}})
    before = _untracked_or_changed()
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the cell and its traceback) on the first failing cell
    seconds = time.perf_counter() - start
    print(f"{path.name}: {seconds:.1f} s", file=sys.stderr)
    assert sum(len(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code") > 0
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    # A notebook never leaves files in the repository that git would see.
    assert _untracked_or_changed() - before == set(), "the notebook wrote files git sees"
    shutil.rmtree(tmp_path, ignore_errors=True)  # passed: drop its runs and SavedModels (~90 MB each)


def _untracked_or_changed():
    import subprocess

    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all", "--", "notebooks"],
                             cwd=NOTEBOOK_DIR.parent, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return set()
    return {line[3:] for line in out.stdout.splitlines()} if out.returncode == 0 else set()
