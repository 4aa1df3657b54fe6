"""The towers' string and bucketing work computed ahead (session 24): the item tower's
per catalogue row (`ItemTower.row_inputs`, gathered by row in training), the query
tower's per training example (`QueryTower.precomputed_inputs`). Expected indices are
worked out by hand from the lookups' documented layouts; the towers' outputs must be the
ones they compute from the raw columns."""
import numpy as np
import pytest
import tensorflow as tf

from tfrec.models.item_tower import ItemTower
from tfrec.models.query_tower import QueryTower

T0 = 1_700_000_000


def _item_tower():
    tf.keras.utils.set_random_seed(0)
    return ItemTower(["a", "b", "c"], output_dim=4, id_dim=4, categorical={"genres": ["x", "y"]},
                     numeric=["price"], id_dropout=0.5, hidden_units=(8,), seed=3)


def test_item_row_inputs_are_the_towers_lookups():
    ids = ["b", "zz", "", "a"]
    genres = ["x|y", "y", "", "q|x"]
    got = _item_tower().row_inputs(ids, {"genres": genres})
    # Id lookup: "" is the mask (0), unknown ids the one OOV index (1), the vocabulary from 2.
    np.testing.assert_array_equal(got["item_index"], [3, 1, 0, 2])
    # Multi-hot: OOV at 0, the vocabulary from 1; "" splits to one empty (unknown) token, as str.split does.
    np.testing.assert_array_equal(got["genres_multi_hot"], [[0, 1, 1], [0, 0, 1], [1, 0, 0], [1, 1, 0]])


def test_item_tower_reads_row_inputs_as_it_computes_them():
    tower = _item_tower()
    ids, genres = ["b", "zz", "", "a", "c", "b"], ["x|y", "y", "", "q|x", "x", "x|y"]
    raw = {"item_id": tf.constant(ids), "genres": tf.constant(genres),
           "text_embedding": tf.constant(np.random.default_rng(1).normal(size=(6, 5)), tf.float32),
           "price": tf.constant([0.1, -1.0, 0.0, 2.0, 0.5, 0.1])}
    ahead = {**raw, **{k: tf.constant(v) for k, v in tower.row_inputs(ids, {"genres": genres}).items()}}
    del ahead["genres"], ahead["item_id"]  # the strings are not read when their lookups are there
    for training in (False, True):  # True: id dropout (op seed 3) draws the same on the index as on the id
        tf.random.set_seed(7)
        want = tower(raw, training=training, with_content=True)
        tf.random.set_seed(7)
        got = tower(ahead, training=training, with_content=True)
        for w, g in zip(want, got):
            np.testing.assert_array_equal(w.numpy(), g.numpy())
    # Not vacuous: the tower reads what it is given.
    for k in ("item_index", "genres_multi_hot"):
        shifted = dict(ahead, **{k: tf.roll(ahead[k], 1, axis=0)})
        assert not np.array_equal(tower(shifted).numpy(), tower(ahead).numpy()), k


def _query_tower():
    tf.keras.utils.set_random_seed(0)
    return QueryTower(["u1", "u2"], output_dim=4, id_dim=4,
                      categorical={"zip_code": ["12", "55"], "gender": ["F", "M"]},
                      numeric={"age": [18.0, 25.0, 35.0]}, prefixes={"zip_code": 2}, use_history=False,
                      reference_time=T0, user_id_dropout=0.5, hidden_units=(8,), seed=2)


def _raw_requests():
    return {"user_id": np.array(["u2", "new", "u1", "u2"], object),
            "zip_code": np.array(["12345", "99999", "55", ""], object),
            "gender": np.array(["M", "X", "F", "F"], object),
            "age": np.array([17.0, 25.0, 40.0, 35.0], np.float32),
            "timestamp": np.array([T0 - 86400 * 3, T0 - 3600, T0, T0 - 7 * 86400], np.int64)}


def test_query_precomputed_inputs_are_the_towers_lookups():
    got = _query_tower().precomputed_inputs(_raw_requests())
    np.testing.assert_array_equal(got["user_index"], [3, 1, 2, 3])  # mask 0, OOV 1, vocabulary from 2
    # Categoricals: OOV 0, the vocabulary from 1; zip codes cut to their first 2 characters first.
    np.testing.assert_array_equal(got["zip_code_index"], [1, 0, 2, 0])
    np.testing.assert_array_equal(got["gender_index"], [2, 0, 1, 1])
    # Buckets: x < 18 -> 0, 18 <= x < 25 -> 1, 25 <= x < 35 -> 2, x >= 35 -> 3.
    np.testing.assert_array_equal(got["age_index"], [0, 2, 3, 3])
    assert got["time_features"].shape == (4, 5)
    # Chunks do not change anything.
    small = _query_tower().precomputed_inputs(_raw_requests(), chunk=3)
    for k, v in got.items():
        np.testing.assert_array_equal(small[k], v)


def test_query_tower_reads_precomputed_inputs_as_it_computes_them():
    tower = _query_tower()
    raw = {k: tf.constant(v) for k, v in _raw_requests().items()}
    # Only the precomputed columns: the raw ones are not read when those are there.
    ahead = {k: tf.constant(v) for k, v in tower.precomputed_inputs(_raw_requests()).items()}
    for training in (False, True):  # True: user id dropout draws the same on the index as on the id
        tf.random.set_seed(7)
        want = tower(raw, training=training).numpy()
        tf.random.set_seed(7)
        np.testing.assert_array_equal(want, tower(ahead, training=training).numpy())
    # Not vacuous: each precomputed column is what the tower reads.
    for k in ("user_index", "zip_code_index", "gender_index", "age_index", "time_features"):
        other = dict(ahead, **{k: tf.roll(ahead[k], 1, axis=0)})
        assert not np.array_equal(tower(other).numpy(), tower(ahead).numpy()), k


@pytest.mark.parametrize("categorical, numeric", [({"user": ["a"]}, {}), ({"gender": ["F"]}, {"gender_index": [1.0]}),
                                                  ({"time_features": ["a"]}, {})])
def test_user_attributes_that_would_be_read_as_precomputed_inputs_are_refused(categorical, numeric):
    with pytest.raises(ValueError, match="clash with the query tower's precomputed input columns"):
        QueryTower(["u1"], categorical=categorical, numeric=numeric)


@pytest.mark.parametrize("categorical, numeric", [({}, ["item_index"]), ({"genres": ["x"]}, ["genres_multi_hot"])])
def test_item_features_that_would_be_read_as_precomputed_inputs_are_refused(categorical, numeric):
    with pytest.raises(ValueError, match="clash with the item tower's precomputed input columns"):
        ItemTower(["a"], categorical=categorical, numeric=numeric)
