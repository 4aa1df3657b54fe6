import numpy as np
import pandas as pd
import pytest

from tfrec.data.history import histories, history_values, prior_totals


def _naive(events, context, n):
    """Reference: for each event, scan every context row (O(n^2) loops)."""
    out = []
    for u, t in zip(events.user_id, events.timestamp):
        prior = sorted(((ct, ci) for cu, ci, ct in zip(context.user_id, context.item_id, context.timestamp)
                        if cu == u and ct < t))
        items = [i for _, i in prior][-n:]
        out.append([""] * (n - len(items)) + items)
    return np.array(out, dtype=object)


def test_history_is_strictly_before_and_matches_naive_scan():
    rng = np.random.default_rng(0)
    # Repeated timestamps on purpose: events at the same second must not see each other.
    ctx = pd.DataFrame({
        "user_id": rng.choice(["a", "b", "c", "d"], 200).astype(object),
        "item_id": rng.choice([f"i{k}" for k in range(30)], 200).astype(object),
        "timestamp": rng.integers(0, 60, 200),
    })
    ctx = ctx.drop_duplicates(["user_id", "timestamp", "item_id"]).reset_index(drop=True)
    events = pd.concat([ctx.sample(50, random_state=1),
                        pd.DataFrame({"user_id": ["zz"], "item_id": ["i1"], "timestamp": [30]})])
    got = histories(events, 5, context=ctx)
    want = _naive(events, ctx, 5)
    np.testing.assert_array_equal(got, want)
    assert (got[-1] == "").all()  # unknown user: empty history, no crash


def test_no_future_leak_from_later_events():
    ctx = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": [1, 2, 2, 3]})
    got = histories(ctx, 3, context=ctx)
    # Hand-worked: t=1 sees nothing; both t=2 events see only 'a'; t=3 sees a, b, c.
    assert got.tolist() == [["", "", ""], ["", "", "a"], ["", "", "a"], ["a", "b", "c"]]


def test_event_order_puts_earlier_same_second_events_in_the_history():
    # Hand-worked: b and c share t=2 and the file lists c before b (event_order 3 < 5).
    ctx = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": [1, 2, 2, 3],
                        "event_order": [0, 5, 3, 9]})
    got = histories(ctx, 3, context=ctx)
    assert got.tolist() == [["", "", ""], ["", "a", "c"], ["", "", "a"], ["a", "c", "b"]]
    # The same counted by prior_totals (one value per context row: 1, 10, 100, 1000).
    count, total = prior_totals(ctx, np.array([1.0, 10.0, 100.0, 1000.0]), context=ctx)
    assert count.tolist() == [0, 2, 1, 3] and total.tolist() == [0.0, 101.0, 1.0, 111.0]
    # A request without an event_order (a live query) sees strictly earlier seconds only,
    # in the file's order of each second.
    live = pd.DataFrame({"user_id": ["u", "u"], "timestamp": [2, 4]})
    assert histories(live, 3, context=ctx).tolist() == [["", "", "a"], ["c", "b", "d"]]


def test_event_order_matches_a_naive_scan_of_the_sequence():
    rng = np.random.default_rng(3)
    ctx = pd.DataFrame({"user_id": rng.choice(["a", "b", "c"], 300).astype(object),
                        "item_id": [f"i{k}" for k in range(300)],
                        "timestamp": rng.integers(0, 25, 300)})  # ties of up to ~10 events
    ctx["event_order"] = rng.permutation(300)
    events = ctx.sample(80, random_state=2)
    got = histories(events, 6, context=ctx)
    want = []
    for u, t, o in zip(events.user_id, events.timestamp, events.event_order):
        prior = sorted((ct, co, ci) for cu, ci, ct, co in zip(ctx.user_id, ctx.item_id, ctx.timestamp,
                                                              ctx.event_order) if cu == u and (ct, co) < (t, o))
        items = [i for _, _, i in prior][-6:]
        want.append([""] * (6 - len(items)) + items)
    np.testing.assert_array_equal(got, np.array(want, dtype=object))


def _naive_prior(events, context):
    """Reference: each event's user's context rows strictly before it, as (timestamp,
    item_id, rating) sorted like `histories` (ties in time broken by item id)."""
    out = []
    for u, t in zip(events.user_id, events.timestamp):
        out.append(sorted((ct, ci, cr) for cu, ci, ct, cr in zip(context.user_id, context.item_id,
                                                                  context.timestamp, context.rating)
                          if cu == u and ct < t))
    return out


def _tied_context(seed=0):
    rng = np.random.default_rng(seed)
    ctx = pd.DataFrame({
        "user_id": rng.choice(["a", "b", "c"], 150).astype(object),
        "item_id": rng.choice([f"i{k}" for k in range(40)], 150).astype(object),
        "timestamp": rng.integers(0, 25, 150),  # many events share a second
        "rating": rng.integers(1, 6, 150).astype(float),
    })
    return ctx.drop_duplicates(["user_id", "timestamp", "item_id"]).reset_index(drop=True)


def test_history_values_are_the_ratings_of_the_history_items_strictly_before():
    ctx = _tied_context()
    events = pd.concat([ctx.sample(40, random_state=2),
                        pd.DataFrame({"user_id": ["new"], "item_id": ["i1"], "timestamp": [9], "rating": [3.0]})])
    n = 6
    hist = histories(events, n, context=ctx)
    got = history_values(events, n, context=ctx)
    want = np.zeros((len(events), n), np.float32)
    want_items = np.full((len(events), n), "", dtype=object)
    for r, prior in enumerate(_naive_prior(events, ctx)):
        last = prior[-n:]
        for j, (_, item, rating) in enumerate(last):
            want[r, n - len(last) + j] = rating
            want_items[r, n - len(last) + j] = item
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(hist, want_items)  # aligned slot by slot with the item ids
    assert (got[-1] == 0).all()  # unknown user: padding only


def test_history_values_hand_worked_ties_and_missing_column():
    ctx = pd.DataFrame({"user_id": ["u"] * 4, "item_id": ["a", "b", "c", "d"], "timestamp": [1, 2, 2, 3],
                        "rating": [5.0, 1.0, 2.0, 4.0]})
    # t=1: nothing; both t=2 events see only a (5); t=3 sees a, b, c (5, 1, 2).
    assert history_values(ctx, 3, context=ctx).tolist() == [[0, 0, 0], [0, 0, 5], [0, 0, 5], [5, 1, 2]]
    with pytest.raises(ValueError, match="`score` column"):
        history_values(ctx, 3, context=ctx, column="score")


def test_prior_totals_match_a_naive_scan_over_the_whole_profile():
    ctx = _tied_context(1)
    events = pd.concat([ctx.sample(40, random_state=3),
                        pd.DataFrame({"user_id": ["new"], "item_id": ["i1"], "timestamp": [9], "rating": [3.0]})])
    values = ctx["rating"].to_numpy() * 10 + np.arange(len(ctx))  # row-specific, to catch misalignment
    count, total = prior_totals(events, values, context=ctx)
    for r, (u, t) in enumerate(zip(events.user_id, events.timestamp)):
        rows = [k for k in range(len(ctx)) if ctx.user_id[k] == u and ctx.timestamp[k] < t]
        assert count[r] == len(rows)
        assert total[r] == pytest.approx(values[rows].sum())
    assert count[-1] == 0 and total[-1] == 0
    with pytest.raises(ValueError, match="one entry per context row"):
        prior_totals(events, values[:-1], context=ctx)
