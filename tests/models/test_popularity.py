"""Point-in-time item popularity (ranking feature) against a naive pandas count."""
import json

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec.errors import ConfigError
from tfrec.models.popularity import DAY, ItemPopularity, popularity_layer

T0 = 880_000_000  # some Unix time; day boundaries fall wherever they fall


@pytest.fixture(scope="module")
def events():
    rng = np.random.default_rng(3)
    n = 400
    return pd.DataFrame({"item_id": rng.choice(["a", "b", "c", "d"], n, p=[0.5, 0.3, 0.15, 0.05]),
                         "timestamp": T0 + rng.integers(0, 40 * DAY, n)})


def _naive(events, item, t, window, last_known_day):
    """log1p of the item's events on the `window` whole days before t's day, and on
    all days before it; a t after the known data reads the day after its last."""
    day = min(t // DAY, last_known_day + 1)
    days = events.loc[events["item_id"] == item, "timestamp"] // DAY
    return np.log1p([((days >= day - window) & (days < day)).sum(), (days < day).sum()])


def test_counts_match_a_naive_count_per_request_time(events):
    # The table spans 60 days (as if built over the whole data) but knows only these 40.
    layer = popularity_layer(7, ["a", "b", "c", "d", "e"], [T0, T0 + 60 * DAY])
    layer.set_counts(events)
    rng = np.random.default_rng(4)
    times = T0 + rng.integers(-3 * DAY, 70 * DAY, 50)  # before, inside and after the known days
    items = rng.choice(["a", "b", "c", "d", "e", "unknown"], (50, 6))
    got = layer(tf.constant(items), tf.constant(times, tf.int64)).numpy()
    last = int(events["timestamp"].max()) // DAY
    want = np.array([[_naive(events, it, int(t), 7, last) for it in row] for row, t in zip(items, times)])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got.shape == (50, 6, 2)
    assert not got[items == "unknown"].any() and not got[items == "e"].any()  # no events: zero


def test_an_event_never_counts_itself_or_its_own_day(events):
    layer = popularity_layer(30, ["a", "b", "c", "d"], events["timestamp"])
    layer.set_counts(events)
    row = events.iloc[[0]]
    got = layer(tf.constant([[row["item_id"].iloc[0]]]), tf.constant(row["timestamp"].to_numpy())).numpy()[0, 0]
    same_or_later = (events["item_id"] == row["item_id"].iloc[0]) & (
        events["timestamp"] // DAY >= int(row["timestamp"].iloc[0]) // DAY)
    total = int((events["item_id"] == row["item_id"].iloc[0]).sum())
    assert np.expm1(got[1]) == pytest.approx(total - same_or_later.sum())


def test_refilling_the_table_replaces_the_counts(events):
    layer = popularity_layer(30, ["a", "b", "c", "d"], events["timestamp"])
    layer.set_counts(events)
    layer.set_counts(events.iloc[:10])
    after = tf.constant([T0 + 100 * DAY], tf.int64)  # after the data: every known event counts
    got = layer(tf.constant([["a"]]), after).numpy()[0, 0, 1]
    assert np.expm1(got) == pytest.approx((events.iloc[:10]["item_id"] == "a").sum())


def test_bad_ranges_are_refused_with_the_fix(events):
    layer = popularity_layer(30, ["a"], [T0, T0 + DAY])
    with pytest.raises(ConfigError, match="fall outside the popularity table's days"):
        layer.set_counts(events)
    with pytest.raises(ConfigError, match=r"set `ranking.popularity_days=0`"):
        ItemPopularity([str(i) for i in range(1_000_000)], 0, 100)
    assert popularity_layer(0, ["a"], [T0]) is None


def test_keras_json_round_trip():
    layer = ItemPopularity(["a", "b"], 10_000, 50, window_days=14, name="pop")
    config = json.loads(json.dumps(layer.get_config()))
    clone = ItemPopularity.from_config(config)
    assert clone.get_config() == layer.get_config()
    assert (clone.item_ids, clone.first_day, clone.n_days, clone.window_days) == (["a", "b"], 10_000, 50, 14)
