import os
import pathlib

import pytest

import tfrec  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_ML100K = REPO.parent / "shared" / "datasets" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_path() -> pathlib.Path:
    """The real MovieLens 100K folder (GroupLens layout) beside the repo, or TFREC_ML100K."""
    path = pathlib.Path(os.environ.get("TFREC_ML100K", SHARED_ML100K))
    if not (path / "u.data").exists():
        # Not a skip: CI always has ../shared, so a missing folder is a broken set-up.
        pytest.fail(f"MovieLens 100K not found at {path}; set TFREC_ML100K to its folder.")
    return path


def demo_overrides(root, ml100k_path, *extra):
    """The main job of `make demo` (hybrid retrieval + ranking stage, MiniLM), shortened to 2
    retrieval epochs, 1 ranking epoch and 4 baselines, writing under `root`. The co-occurrence
    block is fixed off, as `make demo`'s validation chooses it (the 2-epoch retriever's would
    not, and the exports documented in docs/serving.md have its shapes); its run-folder and
    export paths are tested in tests/test_run.py (the text-profile run) and
    tests/models/test_cooccurrence.py."""
    return [f"--data.source={ml100k_path}", "--train.epochs=2", "--train.verbose=0", "--model.cooccurrence=0",
            "--eval.baselines=random,most_popular,recent_popular,ease", "--eval.n_bootstrap=200",
            "--ranking.enabled=true", "--ranking.epochs=1",  # ~1 min an epoch on 2 cores
            f"--export.root={root / 'saved_models'}", f"--run_root={root / 'runs'}", *extra]


@pytest.fixture(scope="session")
def ml100k_demo(tmp_path_factory, ml100k_path):
    """(RunResult, root): the main job on the real ML-100K with MiniLM, run once per test session and
    shared by tests/test_run.py, test_artifacts.py, test_export_cli.py and test_demo_export_proofs.py."""
    from tfrec.cli.run import run
    from tfrec.config import load_config

    root = tmp_path_factory.mktemp("demo")
    return run(load_config(None, demo_overrides(root, ml100k_path))), root
