"""MultiWorkerMirroredStrategy on 127.0.0.1: two worker processes (one CPU device
each) train the id two-tower through `tfrec.training.trainer.train`.

Reference: ONE process with MirroredStrategy over 2 logical CPU devices, same global
batch and seed. Not one device: TFRS's in-batch softmax takes its negatives per
replica, so 2 workers x 1 replica is the same computation as 1 process x 2 replicas
(each replica: half the global batch, its own softmax; gradients summed), not as
one replica over the whole batch.

Why the weights could differ at all: the per-replica gradients are summed by a
different all-reduce (gRPC ring collective vs. in-process), so the float32
additions may happen in another order; with two addends a+b == b+a and the runs
agree bit for bit here, but the tolerance (1e-5 relative) states the contract.
"""
import json

import numpy as np
import pytest

from tests.training.cluster import start_mirrored, start_workers

pytestmark = pytest.mark.slow

EPOCHS = 2
ARGS = {"epochs": EPOCHS, "rows": 512, "batch": 64, "dim": 8}  # 8 steps an epoch, 32 examples per replica
WAIT_S = 180  # per process; a hang fails the test instead of blocking CI


def _weights(path):
    with np.load(path) as f:
        return [f[f"w{i}"] for i in range(len(f.files))]


def _assert_close(a, b, what):
    assert len(a) == len(b) == 2  # user and item embedding tables
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=what)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """A 2-worker job and its single-process reference, run side by side."""
    root = tmp_path_factory.mktemp("mw")
    for i in range(2):
        (root / f"tmp{i}").mkdir()
    # Worker 1 gets its own (never created) checkpoint and TensorBoard folders and its
    # own TMPDIR, so the test can see that a non-chief writes nothing but temp files.
    workers = start_workers(
        [{**ARGS, "out": str(root / f"w{i}.npz"), "ckpt": str(root / f"ckpt{i}"), "log_dir": str(root / f"tb{i}")}
         for i in range(2)], root / "logs",
        env_per_worker=[{"TMPDIR": str(root / f"tmp{i}")} for i in range(2)])
    ref = start_mirrored({**ARGS, "out": str(root / "ref.npz")}, root / "logs")
    rcs = [p.wait(WAIT_S) for p in workers + [ref]]
    assert rcs == [0, 0, 0], [(p.name, p.stderr()[-2000:]) for p in workers + [ref]]
    return root, workers, ref


def test_two_workers_match_one_process_with_two_replicas(uninterrupted):
    root, workers, ref = uninterrupted
    results = [p.result() for p in workers + [ref]]
    assert [r["replicas"] for r in results] == [2, 2, 2]
    reference = _weights(root / "ref.npz")
    _assert_close(_weights(root / "w0.npz"), reference, "chief vs single-process MirroredStrategy")
    _assert_close(_weights(root / "w1.npz"), reference, "worker 1 vs single-process MirroredStrategy")
    # The logged epoch loss is the global mean on every worker (tf-keras's default
    # would SUM it over workers: twice the single-process value).
    for r in results[:2]:
        np.testing.assert_allclose(r["loss"], results[2]["loss"], rtol=1e-5)
    assert results[2]["loss"][1] < results[2]["loss"][0]


def test_only_the_chief_writes(uninterrupted):
    root, _, _ = uninterrupted
    state = json.loads((root / "ckpt0" / "train_state.json").read_text())
    assert state["epoch"] == EPOCHS and state["completed"]
    assert (root / "ckpt0" / f"epoch-{EPOCHS}.index").exists()
    assert (root / "tb0").is_dir()
    # Worker 1 saved every epoch too (it must: the save is collective), but into temp
    # folders that are gone; its checkpoint and TensorBoard folders were never created.
    assert not (root / "ckpt1").exists() and not (root / "tb1").exists()
    assert not [p.name for p in (root / "tmp1").iterdir() if p.name.startswith("tfrec-worker-")]


def test_a_lost_worker_fails_the_job_clearly_and_a_restart_resumes(uninterrupted, tmp_path):
    root, _, _ = uninterrupted
    ckpt = tmp_path / "ckpt"
    args = [{**ARGS, "out": str(tmp_path / f"k{i}.npz"), "ckpt": str(ckpt), "timeout": 20} for i in range(2)]
    # Worker 1 dies (os._exit) when epoch 2 begins, after both saved epoch 1.
    killed = start_workers(args, tmp_path / "logs1", env={"TFREC_TEST_KILL_AT_EPOCH": "1"})
    rc1 = killed[1].wait(WAIT_S)
    rc0 = killed[0].wait(WAIT_S)  # must not hang: the collective fails (timeout 20 s, or the
    # coordination service's crash detection, whichever comes first)
    assert rc1 == 1 and "worker 1 dies at the start of epoch 2" in killed[1].stdout()
    err = killed[0].stderr()
    assert rc0 == 3, err[-3000:]
    assert "worker lost during multi-worker training" in err
    assert f"restart all workers with the same TF_CONFIG and checkpoint_dir ({ckpt}) to resume from epoch 2" in err
    state = json.loads((ckpt / "train_state.json").read_text())
    assert state["epoch"] == 1 and not state["completed"]

    restarted = start_workers(args, tmp_path / "logs2")
    assert [p.wait(WAIT_S) for p in restarted] == [0, 0], [p.stderr()[-2000:] for p in restarted]
    for p in restarted:
        assert "epochs 1-1 already finished, continuing at epoch 2 of 2" in p.stdout()
        # The returned history covers both epochs: epoch 1 from the checkpoint, epoch 2 trained now.
        np.testing.assert_allclose(p.result()["loss"], uninterrupted[1][0].result()["loss"], rtol=1e-5)
    assert json.loads((ckpt / "train_state.json").read_text())["completed"]
    # Ends where the uninterrupted job ends (no shuffling: a resumed iterator would
    # restart the seeded shuffle sequence).
    _assert_close(_weights(tmp_path / "k0.npz"), _weights(root / "w0.npz"), "resumed vs uninterrupted")
    _assert_close(_weights(tmp_path / "k1.npz"), _weights(root / "w0.npz"), "resumed worker 1 vs uninterrupted")


def test_the_hybrid_with_its_history_table_trains_on_two_workers_as_in_one_process(tmp_path):
    # The hybrid's history table (model.history_refresh) is a per-replica cache refreshed
    # inside the training step: on two workers it must be filled and refreshed on each, and
    # the job must compute what one process with two replicas computes.
    args = {**ARGS, "model": "hybrid"}
    workers = start_workers([{**args, "out": str(tmp_path / f"h{i}.npz")} for i in range(2)], tmp_path / "logs")
    ref = start_mirrored({**args, "out": str(tmp_path / "href.npz")}, tmp_path / "logs")
    rcs = [p.wait(WAIT_S) for p in workers + [ref]]
    assert rcs == [0, 0, 0], [(p.name, p.stderr()[-2000:]) for p in workers + [ref]]
    loaded = [dict(np.load(tmp_path / name)) for name in ("h0.npz", "h1.npz", "href.npz")]
    assert len(loaded[2]) > 10 and set(loaded[0]) == set(loaded[1]) == set(loaded[2])
    for name in loaded[2]:
        for got, who in ((loaded[0], "chief"), (loaded[1], "worker 1")):
            np.testing.assert_allclose(got[name], loaded[2][name], rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name}: {who} vs single-process MirroredStrategy")
    assert np.abs(loaded[1]["table"][:-1]).sum() > 0  # worker 1 filled its own copy
    losses = [p.result()["loss"] for p in workers + [ref]]
    np.testing.assert_allclose(losses[0], losses[2], rtol=1e-5)
    assert np.isfinite(losses[2]).all()
