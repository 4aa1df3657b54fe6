"""`tfrec export --run RUN_DIR` and `export_run`: versions that are never overwritten or half-written."""
import hashlib
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

import tfrec.export.retrieval as retrieval
from tfrec.cli.artifacts import load_run
from tfrec.cli.export import export_run
from tfrec.cli.main import main
from tfrec.errors import ConfigError
from tfrec.export.inspection import rest_inputs
from tfrec.export.versioning import existing_versions

NAME = "ml100k_retrieval"


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(pathlib.Path(folder).rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + p.read_bytes())
    return h.hexdigest()


def _checkpoint(export_dir):
    reader = tf.train.load_checkpoint(str(pathlib.Path(export_dir) / "variables" / "variables"))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map() if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.fixture(scope="module")
def served_root(ml100k_demo, tmp_path_factory):
    """A copy of the demo's `saved_models/ml100k_retrieval/1`, then `tfrec export` of its run as version 2."""
    result, _ = ml100k_demo
    root = tmp_path_factory.mktemp("serving") / "saved_models"
    shutil.copytree(result.export_path, root / NAME / "1")
    v1 = _digest(root / NAME / "1")
    rc = main(["export", "--run", result.run_dir, f"--export.root={root}"])
    assert rc == 0
    return result, root, v1


@pytest.mark.slow
def test_cli_export_of_a_run_folder_is_the_runs_own_export_as_the_next_version(served_root):
    result, root, v1 = served_root
    assert existing_versions(root / NAME) == [1, 2]
    assert sorted(p.name for p in (root / NAME).iterdir()) == ["1", "2"]  # no temporary folder left
    assert _digest(root / NAME / "1") == v1  # version 1 untouched
    # Same weights (the model rebuilt from the run folder), same index, same signatures.
    a, b = _checkpoint(root / NAME / "1"), _checkpoint(root / NAME / "2")
    assert len(b) > 50
    index = sorted(n for n in b if n.startswith(("index/", "items/")))
    assert index and index == sorted(n for n in a if n.startswith(("index/", "items/")))
    for n in index:
        np.testing.assert_array_equal(b[n], a[n], err_msg=n)
    # Model variables are numbered in traversal order, and the run's own export also holds the
    # trained model's optimizer slots (tracked through `model.optimizer`), so match by content:
    # every weight of version 2 is a weight of version 1, bit for bit. Weights: float tensors
    # with more than one value, and string tables; left out are scalars (step counters, metric
    # totals) and the int64 [2] states of Keras 3 dropout seed generators, which advance with use.
    def content(t):
        t = np.asarray(t)
        raw = b"\x00".join(t.reshape(-1).tolist()) if t.dtype == object else t.tobytes()
        return t.dtype.str, t.shape, hashlib.sha256(raw).hexdigest()

    def weights(ckpt):
        out = {n: t for n, t in ckpt.items() if t.dtype == object or (t.dtype.kind == "f" and t.size > 1)}
        # A mutable hash table (the ranker's rating-base pairs) exports its entries in hash
        # order, which differs between two tables holding the same entries: sort them by key.
        for n in [n for n in out if n.endswith("/table-keys")]:
            keys, values = np.asarray(ckpt[n]), np.asarray(ckpt[n.replace("table-keys", "table-values")])
            order = np.argsort(keys.astype(str), kind="stable")
            out[n], out[n.replace("table-keys", "table-values")] = keys[order], values[order]
        return out

    have = {content(t) for t in weights(a).values()}
    mine = weights(b)
    missing = [n for n in mine if content(mine[n]) not in have]
    assert len(mine) > 50 and missing == [], f"weights of the re-export not in the run's export: {missing[:5]}"
    assert rest_inputs(root / NAME / "2") == rest_inputs(root / NAME / "1")
    assert (root / NAME / "2" / "assets.extra" / "tf_serving_warmup_requests").exists()


@pytest.mark.slow
def test_cli_refuses_an_existing_version_and_bad_arguments(served_root, capsys, tmp_path):
    result, root, v1 = served_root
    rc = main(["export", "--run", result.run_dir, "--version", "1", f"--export.root={root}"])
    err = capsys.readouterr().err
    assert rc == 2 and "tfrec: error:" in err and "already exists; tfrec never overwrites a version" in err
    assert _digest(root / NAME / "1") == v1
    for args, message in [(["--version", "0"], "must be a positive integer"),
                          (["--version", "two"], "must be a positive integer"),
                          (["--train.epochs=3"], "takes `--export.<key>=value` overrides only"),
                          (["--export.nmae=x"], "Did you mean `export.name`")]:
        rc = main(["export", "--run", result.run_dir, f"--export.root={root}", *args])
        assert rc == 2 and message in capsys.readouterr().err, args
    rc = main(["export", "--run", str(tmp_path)])
    assert rc == 2 and "is not a run folder" in capsys.readouterr().err
    assert existing_versions(root / NAME) == [1, 2]


@pytest.mark.slow
def test_a_failing_export_leaves_the_earlier_versions_and_nothing_servable(served_root, monkeypatch):
    result, root, v1 = served_root
    loaded = load_run(result.run_dir)

    def dies_half_way(module, export_dir, **kwargs):
        (pathlib.Path(export_dir) / "saved_model.pb").write_bytes(b"half a graph")
        raise RuntimeError("killed while writing variables/")

    monkeypatch.setattr(retrieval, "save_module", dies_half_way)
    with pytest.raises(RuntimeError, match="killed while writing"):
        export_run(loaded, root=str(root))
    assert sorted(p.name for p in (root / NAME).iterdir()) == ["1", "2"]
    assert _digest(root / NAME / "1") == v1
    with pytest.raises(ConfigError, match="already exists"):  # and the Python call refuses like the CLI
        export_run(loaded, root=str(root), version=2)


def test_a_killed_export_process_leaves_the_earlier_versions_and_no_integer_folder(tmp_path):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "saved_model.pb").write_text("v1")
    code = textwrap.dedent(f"""
        import os, signal
        from tfrec.export.versioning import atomic_version_dir
        with atomic_version_dir({str(tmp_path)!r}, "m") as (tmp, version):
            (tmp / "saved_model.pb").write_text("half")
            os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no rename: as `kill -9` mid-export
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert existing_versions(tmp_path / "m") == [1]
    assert (tmp_path / "m" / "1" / "saved_model.pb").read_text() == "v1"
    # The half-written folder stays, but hidden and not an integer: TF Serving never loads it.
    leftovers = [p.name for p in (tmp_path / "m").iterdir() if p.name != "1"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-") and not leftovers[0].isdigit()
