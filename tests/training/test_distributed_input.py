"""TF_CONFIG checks, chief rules, the auto-shard policy and what it does to each
input kind, the lost-worker message and the `tfrec data-service` command."""
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
# What MultiWorkerMirroredStrategy runs on each worker (input_lib.DistributedDataset):
# rebatch the global batch into per-replica batches, then auto-shard.
from tensorflow.python.data.experimental.ops import distribute as tf_distribute
from tensorflow.python.distribute import input_ops

from tfrec.cli.main import main
from tfrec.data.pipeline import make_dataset
from tfrec.data.service import SHARD_DATA, SHARD_FILE, auto_shard_policy, distribute
from tfrec.data.tfrecord import read_shards, write_shards
from tfrec.errors import ConfigError
from tfrec.training.multi_worker import is_chief_task, read_tf_config, worker_lost, worker_scratch
from tfrec.training.strategy import make_strategy


def _cfg(cluster, task):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": task})}


TWO = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


@pytest.mark.parametrize("environ, rule", [
    ({}, "is not set"),
    ({"TF_CONFIG": "{cluster: 1}"}, "must be JSON"),
    ({"TF_CONFIG": json.dumps({"task": {"type": "worker", "index": 0}})}, 'a "cluster" mapping'),
    (_cfg({"worker": []}, {"type": "worker", "index": 0}), 'needs a "worker" \\(or "chief"\\) list'),
    (_cfg({"worker": ["localhost"]}, {"type": "worker", "index": 0}), '"cluster.worker" to be a list of "host:port"'),
    (_cfg(TWO, {"type": "ps", "index": 0}), 'needs a "task"'),
    (_cfg(TWO, {"type": "worker", "index": 2}), r'"task.index" to be an integer in \[0, 2\)'),
])
def test_tf_config_errors_name_the_variable_the_rule_and_show_an_example(environ, rule):
    with pytest.raises(ConfigError, match=rule) as info:
        read_tf_config(environ)
    message = str(info.value)
    assert message.startswith("`TF_CONFIG` ") and "train.strategy=multi_worker" in message
    assert 'e.g. TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}' in message


def test_multi_worker_strategy_checks_tf_config_and_the_timeout_first(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="`TF_CONFIG` is not set"):
        make_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", _cfg(TWO, {"type": "worker", "index": 0})["TF_CONFIG"])
    with pytest.raises(ConfigError, match="`train.collective_timeout_s` must be > 0 seconds, got 0"):
        make_strategy("multi_worker", collective_timeout_s=0)


@pytest.mark.parametrize("cluster, task, chief", [
    (TWO, {"type": "worker", "index": 0}, True),  # no chief task: worker 0 is the chief
    (TWO, {"type": "worker", "index": 1}, False),
    ({"chief": ["h:1"], **TWO}, {"type": "worker", "index": 0}, False),
    ({"chief": ["h:1"], **TWO}, {"type": "chief", "index": 0}, True),
])
def test_chief_rule(cluster, task, chief, monkeypatch):
    assert is_chief_task(_cfg(cluster, task)) is chief
    monkeypatch.setenv("TF_CONFIG", _cfg(cluster, task)["TF_CONFIG"])
    scratch = worker_scratch("multi_worker")  # where a non-chief's run folder and export go
    assert (scratch is None) is chief
    if scratch is not None:
        scratch.cleanup()
    assert worker_scratch("mirrored") is None


@pytest.mark.parametrize("files, workers, policy", [
    (None, 2, SHARD_DATA),  # in-memory columns: nothing to split but the batches
    (1, 2, SHARD_DATA),  # fewer files than workers: a worker would get no file
    (2, 2, SHARD_FILE),
    (8, 2, SHARD_FILE),
    (1, 1, SHARD_FILE),
])
def test_auto_shard_policy(files, workers, policy):
    assert auto_shard_policy(files, workers) == policy


def test_auto_shard_policy_reads_the_worker_count_from_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _cfg({"worker": [f"h:{i}" for i in range(4)]}, {"type": "worker", "index": 0})
                       ["TF_CONFIG"])
    assert auto_shard_policy(3) == SHARD_DATA and auto_shard_policy(4) == SHARD_FILE


def _worker_batches(make, index, n_workers=2, global_batch=64):
    """Worker `index`'s per-step batches, as MWMS builds them (one replica per worker)."""
    ds = make()  # every worker builds its own pipeline (a fresh seeded shuffle)
    ds = ds.rebatch(tf_distribute.batch_sizes_for_worker(global_batch, n_workers, 1, index))
    return list(input_ops.auto_shard_dataset(ds, n_workers, index, n_workers))


def test_in_memory_data_is_split_per_batch_and_the_workers_together_see_the_global_batch():
    rows = np.arange(200, dtype=np.int64)
    make = lambda: make_dataset({"row": rows, "user": rows.astype(str).astype(object)}, 64, seed=3,
                                drop_remainder=True)
    assert make().options().experimental_distribute.auto_shard_policy == SHARD_DATA
    single = [b["row"].numpy() for b in make()]  # (64,) each: the single-process global batches
    w0, w1 = (_worker_batches(make, i) for i in range(2))
    assert len(single) == len(w0) == len(w1) == 3
    for step, (a, b, whole) in enumerate(zip(w0, w1, single)):
        assert a["row"].shape == (32,) and b["row"].shape == (32,)
        np.testing.assert_array_equal(np.concatenate([a["row"], b["row"]]), whole, err_msg=f"step {step}")
        np.testing.assert_array_equal(b["user"].numpy().astype(str), b["row"].numpy().astype(str))


def test_tfrecord_shards_go_to_workers_by_file_or_by_data(tmp_path):
    frame = pd.DataFrame({"row": np.arange(120, dtype=np.int64)})
    spec = {"row": tf.io.FixedLenFeature([], tf.int64)}
    four = write_shards(frame, str(tmp_path / "four"), n_shards=4)
    one = write_shards(frame, str(tmp_path / "one"), n_shards=1)
    for files, expected in ((four, SHARD_FILE), (one, SHARD_DATA)):
        make = lambda: read_shards(files, spec, 20, seed=0, shuffle_buffer=0, num_workers=2, drop_remainder=True)
        assert make().options().experimental_distribute.auto_shard_policy == expected
        seen = [np.concatenate([b["row"].numpy() for b in _worker_batches(make, i, global_batch=20)])
                for i in range(2)]
        # Each row read by exactly one worker, whichever way the input was cut.
        assert not set(seen[0]) & set(seen[1])
        np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(120))
        if expected == SHARD_FILE:  # whole files: worker i reads shards i and i + 2 (rows dealt round-robin)
            assert set(seen[0] % 4) == {0, 2} and set(seen[1] % 4) == {1, 3}


def test_a_lost_worker_error_says_how_to_resume():
    cause = tf.errors.UnavailableError(None, None, "Graph execution error:\n\nDetected at node x\n"
                                                   "The tasks have crashed. Check the task logs.")
    message = str(worker_lost(cause, "runs/checkpoints/a", finished_epochs=3))
    assert message.startswith("worker lost during multi-worker training (UnavailableError: The tasks have crashed.")
    assert "restart all workers with the same TF_CONFIG and checkpoint_dir (runs/checkpoints/a) to resume from " \
           "epoch 4" in message
    assert "training starts again at epoch 1" in str(worker_lost(cause, None, 3))


def test_data_service_address_and_cli_errors(capsys):
    with pytest.raises(ConfigError, match=r"`train.data_service` must look like `grpc://HOST:PORT`.*'localhost'"):
        distribute(tf.data.Dataset.range(3), "localhost")
    assert main(["data-service", "worker", "--port", "0"]) == 2
    assert "`tfrec data-service worker` needs `--dispatcher HOST:PORT`" in capsys.readouterr().err
