import numpy as np
import pandas as pd
import pytest

from tfrec.data.history import with_event_order
from tfrec.data.splits import make_split
from tfrec.errors import DataError


def _events(n_users=20, per_user=10, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        ts = np.sort(rng.choice(np.arange(1000, 100000), size=per_user, replace=False))
        items = rng.choice(50, size=per_user, replace=False)
        rows += [(str(u), str(i), int(t)) for i, t in zip(items, ts)]
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


def _key(df):
    return set(map(tuple, df[["user_id", "item_id", "timestamp"]].to_numpy().tolist()))


@pytest.mark.parametrize("kind", ["temporal", "leave_last_n", "random", "per_user_random", "cold_items"])
def test_splits_partition_the_events(kind):
    ev = _events()
    s = make_split(ev, kind, val_fraction=0.1, test_fraction=0.2)
    parts = [_key(s.train), _key(s.val), _key(s.test)]
    assert parts[0].isdisjoint(parts[1]) and parts[0].isdisjoint(parts[2]) and parts[1].isdisjoint(parts[2])
    assert parts[0] | parts[1] | parts[2] == _key(ev)
    assert len(s.test) > 0 and len(s.train) > 0


def test_temporal_split_has_no_future_in_train():
    ev = _events()
    s = make_split(ev, "temporal", val_fraction=0.1, test_fraction=0.2)
    assert s.train["timestamp"].max() < s.val["timestamp"].min()
    assert s.val["timestamp"].max() < s.test["timestamp"].min()
    # Fractions by a naive count: 20% of 200 events are test.
    assert len(s.test) == 40 and len(s.val) == 20


def test_leave_last_n_takes_each_users_latest():
    ev = _events()
    s = make_split(ev, "leave_last_n", n_last=1)
    for u, g in ev.groupby("user_id"):
        g = g.sort_values("timestamp")
        assert _key(s.test[s.test.user_id == u]) == _key(g.tail(1))
        assert _key(s.val[s.val.user_id == u]) == _key(g.iloc[-2:-1])


def test_leave_last_n_breaks_ties_by_event_order_when_given():
    # Hand-worked: u's last second holds x, y, z; by item id z is last, by the file order y.
    ev = pd.DataFrame({"user_id": ["u"] * 5, "item_id": ["a", "y", "z", "x", "b"],
                       "timestamp": [1, 5, 5, 5, 2]})
    by_item = make_split(ev, "leave_last_n", n_last=1)
    assert by_item.test.item_id.tolist() == ["z"] and by_item.val.item_id.tolist() == ["y"]
    by_file = make_split(with_event_order(ev), "leave_last_n", n_last=1)
    assert by_file.test.item_id.tolist() == ["x"] and by_file.val.item_id.tolist() == ["z"]
    assert sorted(by_file.train.item_id) == ["a", "b", "y"]


def test_random_split_is_seeded():
    ev = _events()
    a = make_split(ev, "random", val_fraction=0.0, test_fraction=0.2, seed=42)
    b = make_split(ev, "random", val_fraction=0.0, test_fraction=0.2, seed=42)
    c = make_split(ev, "random", val_fraction=0.0, test_fraction=0.2, seed=7)
    assert _key(a.test) == _key(b.test) and _key(a.test) != _key(c.test)


def test_per_user_random_sizes_each_user_as_recbole_does():
    # Hand-worked from RecBole's Dataset._calcu_split_ids with ratios 0.8 / 0.1 / 0.1: validation and
    # test get int(0.1 n); a part with 0 < 0.1 n < 1 takes one event from train while train keeps two.
    want = {20: (16, 2, 2), 25: (21, 2, 2), 29: (25, 2, 2), 31: (25, 3, 3), 9: (7, 1, 1), 2: (1, 0, 1)}
    ev = pd.DataFrame([(f"u{n}", f"i{k}", k) for n in want for k in range(n)],
                      columns=["user_id", "item_id", "timestamp"])
    s = make_split(ev, "per_user_random", val_fraction=0.1, test_fraction=0.1, seed=3)
    for n, (n_train, n_val, n_test) in want.items():
        got = tuple(int((part.user_id == f"u{n}").sum()) for part in (s.train, s.val, s.test))
        assert got == (n_train, n_val, n_test), n


def test_per_user_random_keeps_every_user_in_train():
    ev = _events()
    s = make_split(ev, "per_user_random", val_fraction=0.1, test_fraction=0.1, seed=1)
    assert set(s.train.user_id) == set(ev.user_id)
    # 10 events per user at 80/10/10: 8/1/1 each.
    assert (s.train.groupby("user_id").size() == 8).all()
    assert (s.test.groupby("user_id").size() == 1).all()


def test_cold_items_appear_only_in_test():
    ev = _events()
    s = make_split(ev, "cold_items", cold_item_fraction=0.2, seed=3)
    cold = set(s.cold_items)
    assert len(cold) == 10  # 20% of the 50 items that have interactions
    assert cold.isdisjoint(s.train.item_id) and cold.isdisjoint(s.val.item_id)
    assert cold <= set(s.test.item_id)
    assert _key(s.test) >= _key(ev[ev.item_id.isin(cold)])


def test_split_errors():
    ev = _events()
    with pytest.raises(DataError, match=r"Unknown `split.kind` 'weekly'"):
        make_split(ev, "weekly")
    with pytest.raises(DataError, match=r"val_fraction.*test_fraction.*below 1"):
        make_split(ev, "temporal", val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(DataError, match=r"empty train set.*Fix: lower `split.n_last`"):
        make_split(ev, "leave_last_n", n_last=5)
    with pytest.raises(DataError, match=r"test set empty"):
        make_split(ev, "random", val_fraction=0.0, test_fraction=0.001)
