"""Whole-profile queries ("profile"): what a query and a training example see.

Expected histories and request times come from naive Python loops over the event
rows (or are written out by hand), never from the code under test.
"""
import numpy as np
import pandas as pd
import pytest

from tfrec.config import EvalConfig
from tfrec.data.history import profile_histories, profile_times
from tfrec.data.splits import make_split
from tfrec.errors import ConfigError
from tfrec.evaluation.protocols import (
    Protocol,
    get_protocol,
    protocol_from_config,
    query_history_for,
    queries_for_test,
    queries_for_validation,
)
from tfrec.features.catalogue import Catalogue


def _events(n_users=12, n_items=15, n=160, seed=0):
    """Random events with timestamp ties inside a user (and no repeated user-item pair)."""
    rng = np.random.default_rng(seed)
    pairs = {(f"u{rng.integers(n_users)}", f"i{rng.integers(n_items)}") for _ in range(n)}
    rows = sorted(pairs)
    return pd.DataFrame({"user_id": [u for u, _ in rows], "item_id": [i for _, i in rows],
                         "timestamp": rng.integers(0, 40, len(rows)).astype(np.int64)})


def _catalogue(events, split):
    items = pd.DataFrame({"item_id": sorted(events["item_id"].unique()), "title": "t", "genres": "Drama"})
    return Catalogue.fit(items, split.train, events)


def _naive_last(rows, n, skip_item=None, before=None):
    """The user's last `n` items by (timestamp, item_id), optionally without `skip_item`
    and only before `before`; "" left-padded."""
    rows = sorted((t, i) for i, t in rows if i != skip_item and (before is None or t < before))
    items = [i for _, i in rows][-n:]
    return [""] * (n - len(items)) + items


def _by_user(frame):
    out = {}
    for u, i, t in frame[["user_id", "item_id", "timestamp"]].itertuples(index=False):
        out.setdefault(u, []).append((i, int(t)))
    return out


# --- training examples -----------------------------------------------------------------

def test_profile_histories_match_a_naive_loop_and_never_hold_the_target():
    events = _events()
    # A repeated rating of the same item: both rows are the target, both are left out.
    events = pd.concat([events, events.iloc[[0]].assign(timestamp=39)], ignore_index=True)
    by_user = _by_user(events)
    for n in (1, 3, 50):
        got = profile_histories(events, n, context=events)
        expected = [_naive_last(by_user[u], n, skip_item=i) for u, i in events[["user_id", "item_id"]].itertuples(
            index=False)]
        assert got.tolist() == expected
        assert not (got == events["item_id"].to_numpy(dtype=object)[:, None]).any()


def test_profile_histories_by_hand():
    ctx = pd.DataFrame({"user_id": ["1", "1", "1", "2"], "item_id": ["a", "b", "c", "x"],
                        "timestamp": [30, 10, 20, 5]})
    # u1 in time order: b(10) c(20) a(30); u2 has only x, its own target.
    assert profile_histories(ctx, 2, context=ctx).tolist() == [["b", "c"], ["c", "a"], ["b", "a"], ["", ""]]
    assert profile_times(["1", "2", "new"], ctx).tolist() == [31, 6, 31]  # new user: end of all context


def test_refit_training_examples_under_recbole_general_take_profiles_from_train_only():
    """`train.refit` trains on train + validation; the protocol's test queries know train only,
    so a validation row is a target whose profile is the user's whole train profile (no
    validation item in any profile), and a train row's profile is train without itself."""
    from tfrec.cli.retrieval_stage import training_features
    from tfrec.config import load_config
    from tfrec.features.query_features import QueryFeatures

    events = _events(seed=3)
    split = get_protocol("recbole_general").make_split(events)
    cat = _catalogue(events, split)
    both = pd.concat([split.train, split.val], ignore_index=True)
    config = load_config(None, ["--eval.protocol=recbole_general"])
    qf = QueryFeatures.fit(both, None, 50)
    feats = training_features(config, both, cat.refitted(both), qf, profiles=split.train, log=lambda *a: None)
    ids = np.append(np.asarray(cat.item_ids, dtype=object), "")  # rows -> ids ("" = padding)
    hist, target = ids[feats["history_row"]], ids[feats["item_row"]]
    train = _by_user(split.train)
    for row, (u, i) in enumerate(both[["user_id", "item_id"]].itertuples(index=False)):
        assert list(hist[row]) == _naive_last(train[u], 50, skip_item=i)
        assert feats["timestamp"][row] == max(t for _, t in train[u]) + 1  # asked at the end of the train profile
        assert target[row] == i
    # The default (profiles from the rows trained on) would put validation items into profiles.
    default = ids[training_features(config, both, cat.refitted(both), qf, log=lambda *a: None)["history_row"]]
    assert len(split.val) and (default != hist).any()


# --- evaluation queries ------------------------------------------------------------------

def test_recbole_general_test_queries_see_the_train_profile_and_never_their_targets():
    events = _events(seed=1)
    protocol = get_protocol("recbole_general")
    assert protocol.query_history == "profile"
    split = protocol.make_split(events)
    cat = _catalogue(events, split)
    qs = queries_for_test(protocol, split, cat, history_length=50)
    train = _by_user(split.train)
    test_items = {u: {i for i, _ in rows} for u, rows in _by_user(split.test).items()}
    assert qs.query_history == "profile"
    for row, (u, hist, request) in enumerate(qs.queries[["user_id", "history", "request_time"]].itertuples(
            index=False)):
        assert list(hist) == _naive_last(train[u], 50)  # the whole train profile, whatever its time
        assert request == max(t for _, t in train[u]) + 1
        relevant = set(cat.item_ids[qs.relevant[row].indices])
        assert relevant == test_items[u]
        assert not relevant & set(hist)  # leak check: no target in its own query's history


def test_recbole_general_validation_queries_see_train_only():
    events = _events(seed=2)
    protocol = get_protocol("recbole_general")
    split = protocol.make_split(events)
    cat = _catalogue(events, split)
    task = queries_for_validation(protocol, split, cat, history_length=50)
    train = _by_user(split.train)
    held_out = set(map(tuple, pd.concat([split.val, split.test])[["user_id", "item_id"]].to_numpy()))
    for u, hist, request in task.queries.queries[["user_id", "history", "request_time"]].itertuples(index=False):
        assert list(hist) == _naive_last(train[u], 50)
        assert request == max(t for _, t in train[u]) + 1
        assert not {(u, i) for i in hist if i} & held_out


@pytest.mark.parametrize("name", ["temporal", "tfrs_tutorial"])
def test_before_event_protocols_ask_the_queries_they_always_asked(name):
    # The queries as they were before profile queries existed: per-user ones see all
    # known items and are stamped at the user's first target event; per-interaction
    # ones see the known items strictly before their own event.
    events = _events(seed=3)
    protocol = get_protocol(name)
    assert protocol.query_history == "before_event"
    split = protocol.make_split(events)
    cat = _catalogue(events, split)
    qs = queries_for_test(protocol, split, cat, history_length=4)
    assert list(qs.queries.columns) == ["user_id", "user_idx", "timestamp", "history"]
    known = _by_user(pd.concat([getattr(split, p) for p in protocol.known]))
    targets = split.test.sort_values(["user_id", "timestamp", "item_id"])
    if protocol.mode == "per_user":
        users = sorted(targets["user_id"].unique(), key=lambda u: cat.user_index([u])[0])
        stamps = [int(targets.loc[targets["user_id"] == u, "timestamp"].min()) for u in users]
        hists = [_naive_last(known.get(u, []), 4) for u in users]
    else:
        users = sorted(targets["user_id"], key=lambda u: cat.user_index([u])[0])
        order = sorted(targets.itertuples(index=False), key=lambda r: (cat.user_index([r.user_id])[0], r.timestamp,
                                                                        cat.item_index([r.item_id])[0]))
        stamps = [int(r.timestamp) for r in order]
        hists = [_naive_last(known.get(r.user_id, []), 4, before=r.timestamp) for r in order]
    assert qs.queries["user_id"].tolist() == users
    assert qs.queries["timestamp"].tolist() == stamps
    assert [list(h) for h in qs.queries["history"]] == hists


def test_recbole_sequential_orders_same_second_events_as_the_file_and_shows_them_in_the_history():
    # RecBole sorts its file stably by time: a user's sequence is their rows ordered by
    # (timestamp, row position), the last one is test, the one before validation, and
    # the test query reads every earlier event of the sequence, same-second ones too.
    events = _events(seed=4).sample(frac=1.0, random_state=5).reset_index(drop=True)  # row order != item order
    events["timestamp"] //= 8  # many same-second events
    protocol = get_protocol("recbole_sequential")
    split = protocol.make_split(events)
    cat = _catalogue(events, split)
    qs = queries_for_test(protocol, split, cat, history_length=4)
    sequences = {}
    for pos, (u, i, t) in enumerate(events[["user_id", "item_id", "timestamp"]].itertuples(index=False)):
        sequences.setdefault(u, []).append((int(t), pos, i))
    expected = {}
    for u, seq in sequences.items():
        items = [i for _, _, i in sorted(seq)]
        expected[u] = (items[-1], items[-2], ([""] * 4 + items[:-1])[-4:])
    assert dict(zip(split.test["user_id"], split.test["item_id"])) == {u: e[0] for u, e in expected.items()}
    assert dict(zip(split.val["user_id"], split.val["item_id"])) == {u: e[1] for u, e in expected.items()}
    got = {u: list(h) for u, h in qs.queries[["user_id", "history"]].itertuples(index=False)}
    assert got == {u: e[2] for u, e in expected.items()}
    # The fixture has ties where row order and item order disagree, or this proves nothing.
    by_item = {u: [i for _, i, _ in sorted((t, i, p) for t, p, i in seq)][-1] for u, seq in sequences.items()}
    assert any(by_item[u] != e[0] for u, e in expected.items())


# --- the scorer and the configuration -------------------------------------------------------

class _EchoModel:
    """A stand-in model whose query vector is [request time, number of history items]."""

    def item_embeddings(self, ids, training=False):
        import tensorflow as tf

        return tf.ones([tf.shape(ids)[0], 2])

    def query_embedding(self, f, training=False):
        import tensorflow as tf

        n_hist = tf.reduce_sum(tf.cast(f["history"] != "", tf.float32), axis=1)
        return tf.stack([tf.cast(f["timestamp"], tf.float32), n_hist], axis=1)


class _NoAttributes:
    history_length = 3

    def attributes(self, user_ids):
        return {}

    def build(self, events, context=None):
        from tfrec.data.history import histories

        return {"user_id": events["user_id"].astype(str).to_numpy(dtype=object),
                "timestamp": events["timestamp"].to_numpy(np.int64),
                "history": histories(events, self.history_length, context=context)}


def test_scorer_asks_profile_queries_at_their_request_time():
    from tfrec.models.scoring import HybridScorer

    scorer = HybridScorer(_EchoModel(), _NoAttributes(), pd.DataFrame(), ["a", "b"])
    queries = pd.DataFrame({"user_id": ["1", "2"], "timestamp": [5, 7], "request_time": [50, 70],
                            "history": [["a", "b"], ["a"]]})
    np.testing.assert_array_equal(scorer.query_embeddings(queries), [[50, 2], [70, 1]])
    np.testing.assert_array_equal(scorer.query_embeddings(queries.drop(columns="request_time")), [[5, 2], [7, 1]])


def test_validation_callback_asks_each_user_at_the_end_of_their_train_profile():
    from tfrec.models.scoring import FullCatalogueValidation

    train = pd.DataFrame({"user_id": ["1", "1", "2"], "item_id": ["a", "b", "a"], "timestamp": [10, 20, 5]})
    val = pd.DataFrame({"user_id": ["1", "2", "2"], "item_id": ["c", "b", "c"], "timestamp": [15, 1, 9]})
    items = pd.DataFrame({"item_id": list("abc"), "title": "t", "genres": "Drama"})
    cat = Catalogue.fit(items, train, pd.concat([train, val]))
    cb = FullCatalogueValidation(_NoAttributes(), train, val, cat, query_history="profile")
    assert cb.events.to_dict("list") == {"user_id": ["1", "2"], "timestamp": [21, 6]}
    assert FullCatalogueValidation(_NoAttributes(), train, val, cat).events is val


def test_query_history_config_rules():
    assert query_history_for(EvalConfig()) == "before_event"
    assert query_history_for(EvalConfig(protocol="recbole_general")) == "profile"
    with pytest.raises(ConfigError, match=r"`eval.query_history=profile` needs a named protocol"):
        query_history_for(EvalConfig(query_history="profile"))  # would train on profiles, evaluate before_event
    assert protocol_from_config(make_split(_events(), "temporal"), EvalConfig(query_history="profile")).query_history \
        == "profile"
    with pytest.raises(ConfigError, match=r"`eval.query_history=before_event` conflicts with `eval.protocol="):
        query_history_for(EvalConfig(protocol="recbole_general", query_history="before_event"))
    with pytest.raises(ConfigError, match=r"`query_history` must be one of before_event, profile, got 'whole'"):
        query_history_for(EvalConfig(query_history="whole"))
    with pytest.raises(ConfigError, match=r"`query_history` must be one of"):
        Protocol(name="x", title="x", split="temporal", split_params={}, mode="per_user", known=("train",),
                 exclude=(), metrics=("ndcg@10",), ks=(10,), query_history="sometimes")


@pytest.mark.slow
def test_tfrec_run_under_a_profile_protocol_skips_the_ranking_stage_and_says_so(tmp_path, ml100k_path):
    # The ranker is trained on before-event queries; under recbole_general (profile queries)
    # the run trains retrieval only, logs why, and reports no two-stage model.
    from tfrec.cli.run import run
    from tfrec.config import load_config

    lines = []
    cfg = load_config(None, [f"--data.source={ml100k_path}", "--eval.protocol=recbole_general", "--eval.baselines=",
                             "--model.use_text=false", "--train.epochs=1", "--train.verbose=0",
                             "--eval.n_bootstrap=50", "--export.enabled=false", "--ranking.enabled=true",
                             f"--run_root={tmp_path / 'runs'}"])
    result = run(cfg, log=lambda *a: lines.append(" ".join(map(str, a))))
    assert any(line.startswith("rank: skipped: `eval.protocol=recbole_general` asks profile queries")
               for line in lines)
    assert set(result.metrics["models"]) == {"tfrec hybrid"} and "ranking" not in result.metrics
    assert result.recommender.ranker is None
