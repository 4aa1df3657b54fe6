"""tf.data service on localhost (dispatcher + one worker in this process) feeding
`tfrec.training.trainer.train`: every example consumed once per epoch, the same
training as without the service."""
import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.pipeline import make_dataset
from tfrec.data.service import distribute, start_dispatcher, start_worker
from tfrec.data.synthetic import generate
from tfrec.models.two_tower import TwoTowerRetrieval
from tfrec.training.trainer import train

pytestmark = pytest.mark.slow

N, BATCH, EPOCHS = 500, 64, 2  # 7 full batches + one of 52


class _Counting(TwoTowerRetrieval):
    """Counts the rows it trains on: n, sum and sum of squares of their `row` index."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.seen = tf.Variable(tf.zeros([3], tf.float64), trainable=False)

    def compute_loss(self, features, training=False):
        row = tf.cast(features["row"], tf.float64)
        self.seen.assign_add(tf.stack([tf.cast(tf.size(row), tf.float64), tf.reduce_sum(row),
                                       tf.reduce_sum(row * row)]))
        return super().compute_loss(features, training)


@pytest.fixture(scope="module")
def service():
    dispatcher = start_dispatcher(port=0)
    worker = start_worker(dispatcher.target, port=0)
    yield dispatcher
    worker.stop()
    dispatcher.stop()


def _fit(ds, users, items, steps_per_execution=1):
    model, history, _ = train(lambda: _Counting(users, items, 8), ds, strategy=tf.distribute.get_strategy(),
                              epochs=EPOCHS, optimizer="adagrad", learning_rate=0.1, seed=0, verbose=0,
                              steps_per_execution=steps_per_execution)
    return model, history


# `train.steps_per_execution` 3: the service's dataset has no known length, which Keras
# refuses with more than one step per call, so `train` trains it one step per call.
@pytest.mark.parametrize("steps_per_execution", [1, 3])
def test_training_through_the_data_service_consumes_every_example_once_per_epoch(service, steps_per_execution):
    ia = generate(n_users=50, n_items=40, n_interactions=N, seed=5).interactions.iloc[:N]
    feats = {"user_id": ia["user_id"].astype(str).to_numpy(dtype=object),
             "item_id": ia["item_id"].astype(str).to_numpy(dtype=object), "row": np.arange(N, dtype=np.int64)}
    users, items = sorted(set(feats["user_id"])), sorted(set(feats["item_id"]))
    spe = steps_per_execution
    local, _ = _fit(make_dataset(feats, BATCH, seed=1), users, items, spe)
    served, served_hist = _fit(distribute(make_dataset(feats, BATCH, seed=1), service.target, f"test-job-{spe}"),
                               users, items, spe)
    assert int(local._steps_per_execution.numpy()) == spe and int(served._steps_per_execution.numpy()) == 1
    rows = np.arange(N, dtype=np.float64)
    expected = EPOCHS * np.array([N, rows.sum(), (rows ** 2).sum()])  # each row exactly once per epoch
    np.testing.assert_array_equal(local.seen.numpy(), expected)
    np.testing.assert_array_equal(served.seen.numpy(), expected)
    assert served_hist["mean_batch_loss"][1] < served_hist["mean_batch_loss"][0]

    # "distributed_epoch" hands the row range to the tf.data workers in splits, so a
    # shuffled order is not the local one; unshuffled, one worker produces the local
    # batches in order and the training is the same (float32 on 2 threads: 1e-5).
    local, _ = _fit(make_dataset(feats, BATCH, shuffle=False), users, items, spe)
    served, _ = _fit(distribute(make_dataset(feats, BATCH, shuffle=False), service.target, f"test-job-2-{spe}"),
                     users, items, spe)
    np.testing.assert_array_equal(served.seen.numpy(), expected)
    for a, b in zip(local.trainable_variables, served.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)
