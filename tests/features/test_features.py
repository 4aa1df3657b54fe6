import datetime

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.data.splits import make_split
from tfrec.features.catalogue import Catalogue
from tfrec.features.time import TimeFeatures
from tfrec.features.vocabulary import Vocabulary


def test_time_features_match_python_datetime():
    ts = np.array([0, 893286638, 1700000000, 1234567890], dtype=np.int64)
    got = TimeFeatures()(tf.constant(ts)).numpy()
    for row, t in zip(got, ts):
        d = datetime.datetime.fromtimestamp(int(t), tz=datetime.timezone.utc)
        hour = d.hour + d.minute / 60 + d.second / 3600
        np.testing.assert_allclose(row[0], np.sin(2 * np.pi * hour / 24), atol=1e-5)
        np.testing.assert_allclose(row[1], np.cos(2 * np.pi * hour / 24), atol=1e-5)
        np.testing.assert_allclose(row[2], np.sin(2 * np.pi * d.weekday() / 7), atol=1e-5)
        np.testing.assert_allclose(row[3], np.cos(2 * np.pi * d.weekday() / 7), atol=1e-5)


def test_time_features_json_round_trip_and_tf_data():
    layer = TimeFeatures(reference_time=100, recency_scale_days=2.0)
    clone = TimeFeatures.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    ds = tf.data.Dataset.from_tensor_slices(np.array([100, 100 + 86400], np.int64)).batch(2).map(
        clone, num_parallel_calls=tf.data.AUTOTUNE)
    out = next(iter(ds)).numpy()
    np.testing.assert_allclose(out[:, 4], [0.0, 0.5])  # one day of a 2-day scale


def test_recency_is_capped_after_a_year_and_untouched_before():
    """Hand-worked: reference day 0, scale 365 days; 100 days before / 100 days after stay
    -100/365 and 100/365; ten years after is capped at 1 (`max_recency`), 2 with max_recency=2."""
    day = 86400
    ts = np.array([-100 * day, 100 * day, 3650 * day], np.int64)
    np.testing.assert_allclose(TimeFeatures()(tf.constant(ts)).numpy()[:, 4], [-100 / 365, 100 / 365, 1.0],
                               rtol=1e-6)
    np.testing.assert_allclose(TimeFeatures(max_recency=2.0)(tf.constant(ts)).numpy()[:, 4],
                               [-100 / 365, 100 / 365, 2.0], rtol=1e-6)


def test_vocabulary_order_and_lookup_layer_agree():
    v = Vocabulary.fit(["b", "a", "b", "c", "a", "b", ""])
    assert v.values == ("b", "a", "c") and v.counts == (3, 2, 1)  # by count, ties by value
    ids = ["b", "zzz", "", "c"]
    np.testing.assert_array_equal(v.lookup_layer()(tf.constant(ids)).numpy(), v.index(ids))
    np.testing.assert_array_equal(v.index(ids), [2, 1, 0, 4])  # 0 pad, 1 OOV


def _catalogue_world(seed):
    """(events, items table of 70 ids, 60/20/20 temporal split, catalogue fitted on its train part)."""
    rng = np.random.default_rng(seed)
    ev = pd.DataFrame({"user_id": rng.integers(0, 30, 400).astype(str),
                       "item_id": rng.integers(0, 60, 400).astype(str),
                       "timestamp": rng.permutation(400)})
    items = pd.DataFrame({"item_id": [str(i) for i in range(70)]})
    s = make_split(ev, "temporal", val_fraction=0.2, test_fraction=0.2)
    return ev, items, s, Catalogue.fit(items, s.train, ev)


def test_catalogue_is_fitted_on_train_only():
    """Nothing from validation or test reaches vocabularies or popularity."""
    ev, items, s, cat = _catalogue_world(0)
    assert set(cat.item_vocab.values) == set(s.train.item_id)
    assert set(cat.user_vocab.values) == set(s.train.user_id)
    want = s.train.item_id.value_counts()
    for iid, c in zip(cat.item_ids, cat.train_item_counts):
        assert c == want.get(iid, 0)
    # Poison the held-out parts: fitting again must give identical results.
    s.test["item_id"] = "LEAK"
    s.val["user_id"] = "LEAK"
    cat2 = Catalogue.fit(items, s.train, ev)
    assert cat2.item_vocab == cat.item_vocab and cat2.user_vocab == cat.user_vocab
    assert cat.n_items == 70  # evaluation covers the whole catalogue, cold items included


def test_a_refitted_catalogue_keeps_the_evaluation_order_and_counts_what_it_is_given():
    """`train.refit`: the model's vocabularies and counts come from train + validation, the
    catalogue's item and user order (what evaluation and the weights' layout use) does not move."""
    ev, items, s, cat = _catalogue_world(1)
    both = pd.concat([s.train, s.val], ignore_index=True)
    refit = cat.refitted(both)
    assert list(refit.item_ids) == list(cat.item_ids) and list(refit.user_ids) == list(cat.user_ids)
    assert set(refit.item_vocab.values) == set(both.item_id) > set(s.train.item_id)  # val-only items get ids
    assert set(refit.user_vocab.values) == set(both.user_id)
    want = both.item_id.value_counts()
    assert [int(c) for c in refit.train_item_counts] == [int(want.get(i, 0)) for i in cat.item_ids]
    assert cat.item_vocab == Catalogue.fit(items, s.train, ev).item_vocab  # the original is unchanged
