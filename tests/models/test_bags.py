"""`tfrec.models.bags`: the history blocks' row sums, gathered and as a product, against numpy loops."""
import numpy as np
import pytest
import tensorflow as tf

import tfrec.models.bags as bags


def _naive(table, rows, weights):
    out = np.zeros((rows.shape[0], table.shape[1]))
    for b in range(rows.shape[0]):
        for r, w in zip(rows[b], weights[b]):
            out[b] += w * table[r]
    return out


@pytest.mark.parametrize("ratio, queries", [(0, 9), (10**6, 9), (bags.DENSE_RATIO, 9), (10**6, 1)],
                         ids=["gathered", "product", "default", "one query"])
@pytest.mark.parametrize("width", [1, 3, 40])
def test_sum_rows_is_the_weighted_sum_of_each_querys_rows(monkeypatch, ratio, queries, width):
    monkeypatch.setattr(bags, "DENSE_RATIO", ratio)
    assert bags.MIN_QUERIES <= 9
    rng = np.random.default_rng(width)
    table = rng.normal(size=(30, 5)).astype(np.float32)
    rows = rng.integers(0, 30, size=(queries, width))
    rows[0] = 4  # one row repeated: counted each time
    weights = rng.normal(size=(queries, width)).astype(np.float32)
    got = bags.sum_rows(tf.constant(table), tf.constant(rows, tf.int64), tf.constant(weights)).numpy()
    np.testing.assert_allclose(got, _naive(table, rows, weights), atol=1e-5)
    # Inside a traced function with an unknown window width, as the scorer calls it.
    fn = tf.function(lambda r, w: bags.sum_rows(tf.constant(table), r, w),
                     input_signature=[tf.TensorSpec([None, None], tf.int64), tf.TensorSpec([None, None], tf.float32)])
    np.testing.assert_allclose(fn(rows, weights).numpy(), _naive(table, rows, weights), atol=1e-5)


def test_per_row_sums_weights_per_index_within_each_row():
    rows = np.array([[2, 0, 2], [1, 1, 1]])
    weights = np.array([[0.5, 1.0, 2.0], [1.0, 1.0, 3.0]], np.float32)
    np.testing.assert_allclose(bags.per_row(tf.constant(rows), tf.constant(weights), 4).numpy(),
                               [[1.0, 0.0, 2.5, 0.0], [0.0, 5.0, 0.0, 0.0]])
