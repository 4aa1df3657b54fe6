"""RecentPopular (counts in the last N days) and the time matrices it reads:
checked against hand-worked counts and a naive pandas count on ML-100K."""
import tfrec  # noqa: F401  (before TensorFlow: sets TF_USE_LEGACY_KERAS)

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tfrec.errors import ConfigError, DataError
from tfrec.evaluation.baselines import MostPopular, RecentPopular

DAY = 86400


def _matrices(events, shape):
    """(binary csr, time csr) from (user, item, day) triples, one event per pair."""
    u, i, d = (np.array(x) for x in zip(*events))
    ones = sp.csr_matrix((np.ones(len(u), np.float32), (u, i)), shape=shape)
    times = sp.csr_matrix((d.astype(np.float64) * DAY, (u, i)), shape=shape)
    return ones, times


# (user, item, day); the last known day is 10.
EVENTS = [(0, 0, 1), (1, 0, 2), (2, 0, 3),  # item 0: three old events
          (0, 1, 9), (1, 1, 10),            # item 1: two in the last 2 days
          (2, 2, 9),                        # item 2: one in the last 2 days
          (1, 3, 5), (2, 3, 6)]             # item 3: two, days 5 and 6


def test_counts_the_last_days_by_hand():
    train, times = _matrices(EVENTS, (3, 5))
    # days=2: window (day 8, day 10]: item 1 -> 2, item 2 -> 1, others 0; all-time
    # counts (3, 2, 1, 2, 0) only order the rest: 0 before 3 before 4.
    scores = RecentPopular(days=2).fit(train, times=times).score(np.array([0, 2]))
    assert scores.shape == (2, 5)
    assert list(np.argsort(-scores[0], kind="stable")) == [1, 2, 0, 3, 4]
    np.testing.assert_array_equal(scores[0], scores[1])
    # days=5: window (day 5, day 10]: item 1 -> 2, item 2 -> 1, item 3 -> 1 (day 6 only).
    scores = RecentPopular(days=5).fit(train, times=times).score(np.array([0]))[0]
    np.testing.assert_array_equal(np.floor(scores), [0, 2, 1, 1, 0])
    assert scores[3] > scores[2]  # tie on recent counts: item 3 has more events overall
    # A window longer than the data is all-time popularity (the same order as MostPopular).
    long = RecentPopular(days=1000).fit(train, times=times).score(np.array([0]))[0]
    most = MostPopular().fit(train).score(np.array([0]))[0]
    np.testing.assert_array_equal(np.floor(long), most)


def test_fold_in_moves_now_to_the_end_of_the_history():
    train, times = _matrices(EVENTS, (3, 5))
    later = EVENTS + [(0, 4, 30), (1, 4, 31), (2, 4, 31), (0, 3, 29)]
    history, history_times = _matrices(later, (3, 5))
    model = RecentPopular(days=3).fit(train, times=times)
    assert np.argmax(model.score(np.array([0]))[0]) == 1
    # Now is day 31: window (28, 31]: item 4 -> 3, item 3 -> 1 (day 29), the rest 0.
    scores = model.fold_in(history, times=history_times).score(np.array([0]))[0]
    np.testing.assert_array_equal(np.floor(scores), [0, 0, 0, 1, 3])


def test_missing_or_mismatched_times_are_explained():
    train, times = _matrices(EVENTS, (3, 5))
    with pytest.raises(DataError, match=r"RecentPopular needs the interactions' timestamps.*time_matrix"):
        RecentPopular().fit(train)
    with pytest.raises(DataError, match=r"`times` must have the interactions' shape and nonzeros"):
        RecentPopular().fit(train, times=times[:, :4])
    with pytest.raises(DataError, match=r"`times` must be a scipy.sparse"):
        RecentPopular().fit(train, times=times.toarray())
    with pytest.raises(ConfigError, match=r"`days` must be a number > 0"):
        RecentPopular(days=0)


def test_time_matrix_keeps_each_pairs_latest_timestamp():
    from tfrec.features.catalogue import Catalogue

    items = pd.DataFrame({"item_id": ["a", "b", "c"]})
    events = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u1"], "item_id": ["a", "b", "a", "a"],
                           "timestamp": [100, 50, 70, 300]})
    cat = Catalogue.fit(items, events, events)
    times = cat.time_matrix(events)
    assert times.dtype == np.float64
    assert times.nnz == cat.matrix(events).nnz == 3
    dense = times.toarray()  # users u1, u2 x items a, b, c
    np.testing.assert_array_equal(dense, [[300, 50, 0], [70, 0, 0]])
    with pytest.raises(DataError, match="`time_matrix` needs a `timestamp` column"):
        cat.time_matrix(events.drop(columns="timestamp"))


@pytest.mark.slow
def test_protocol_tunes_days_on_validation_and_counts_train_plus_validation(ml100k_path):
    """Through `evaluate_models` on the ML-100K temporal split: the test scores equal a
    naive pandas count of the last `days` days of train + validation."""
    from tfrec.config import EvalConfig
    from tfrec.data.movielens import load_movielens
    from tfrec.data.splits import temporal_split
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.features.catalogue import Catalogue

    data = load_movielens(ml100k_path)
    split = temporal_split(data.interactions)
    cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
    cfg = EvalConfig(ks=(10, 20), baselines=("recent_popular",), n_bootstrap=10)
    report = evaluate_models({}, data, split, cat, cfg, log=lambda *a: None)
    entry = report["models"]["recent_popular"]
    days = entry["params"]["days"]
    assert days in RecentPopular.grid["days"]
    # Naive: count events per item in the `days` days before the last known event.
    known = pd.concat([split.train, split.val])
    now = known["timestamp"].max()
    recent = known[known["timestamp"] > now - days * DAY]["item_id"].astype(str).value_counts()
    total = known["item_id"].astype(str).value_counts()
    ids = pd.Index(cat.item_ids)
    score = recent.reindex(ids, fill_value=0).to_numpy(float) + 1e-6 * total.reindex(ids, fill_value=0).to_numpy()
    test_m, known_m = cat.matrix(split.test), cat.matrix(known)
    users = np.unique(test_m.nonzero()[0])
    want = evaluate_ranking(lambda u: np.broadcast_to(score, (len(u), score.size)), users, test_m,
                            exclude=known_m, ks=(10, 20), return_topk=False).mean()
    assert entry["mean"]["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-6)
    assert entry["mean"]["recall@20"] == pytest.approx(want["recall@20"], abs=1e-6)
