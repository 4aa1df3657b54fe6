"""`tfrec run --train.strategy=multi_worker` end to end: the same main job, two worker
processes on 127.0.0.1 (one CPU device each, the cluster in TF_CONFIG), real
MovieLens-100K. Only the chief leaves a run folder and an export; the other worker
trains the same steps and writes into a temporary folder that is gone afterwards."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from tests.training.cluster import _env, free_ports, tf_config

pytestmark = pytest.mark.slow

WAIT_S = 400


def test_tfrec_run_multi_worker_writes_one_run_folder_and_one_export(tmp_path, ml100k_path):
    ports = free_ports(2)
    args = ["run", f"--data.source={ml100k_path}", "--model.kind=two_tower", "--train.epochs=1",
            "--train.strategy=multi_worker", "--train.verbose=0", "--eval.baselines=most_popular",
            "--eval.n_bootstrap=50", "--ranking.enabled=false"]
    code = "import sys; from tfrec.cli.main import main; sys.exit(main(sys.argv[1:]))"
    procs = []
    for i in range(2):
        # Each worker its own roots, as on two hosts: what the non-chief writes is visible.
        root = tmp_path / f"host{i}"
        scratch = tmp_path / f"tmp{i}"
        scratch.mkdir()
        env = _env({"TF_CONFIG": tf_config(ports, i), "TMPDIR": str(scratch)})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", code, *args, f"--run_root={root / 'runs'}", f"--export.root={root / 'saved_models'}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=str(tmp_path)))
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=WAIT_S)[0])
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise AssertionError("a worker of `tfrec run --train.strategy=multi_worker` hung")
    for i, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"worker {i}:\n{out[-4000:]}"
    train_line = next((line for line in outs[0].splitlines() if line.startswith("train: two_tower")), outs[0][-3000:])
    assert "MultiWorkerMirroredStrategy over 2 replica(s)" in train_line, train_line
    chief_runs = list((tmp_path / "host0" / "runs").iterdir())
    assert len(chief_runs) == 1 and (chief_runs[0] / "metrics.json").exists()
    metrics = json.loads((chief_runs[0] / "metrics.json").read_text())
    assert {"tfrec two-tower (ids)", "most_popular"} <= set(metrics["models"])
    assert (tmp_path / "host0" / "saved_models" / "ml100k_retrieval" / "1" / "saved_model.pb").exists()
    # The non-chief trained the same steps but kept nothing: no run folder, no export, no checkpoints,
    # and its scratch folder (under its TMPDIR) was removed.
    assert not (tmp_path / "host1").exists() or not any((tmp_path / "host1").rglob("*.pb"))
    assert not (tmp_path / "host1" / "runs").exists() or not any((tmp_path / "host1" / "runs").iterdir())
    assert os.listdir(tmp_path / "tmp1") == []
