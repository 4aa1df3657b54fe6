import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.data.pipeline import make_dataset
from tfrec.errors import DataError
from tfrec.models.factory import build_hybrid
from tfrec.models.recommender import Recommender
from tests.models.worlds import tiny_bert_world
from tfrec.text.template import item_texts


@pytest.fixture(scope="module")
def rec():
    data, split, cat, encoder, text, qf = tiny_bert_world(80, 60, 3000, data_seed=5, history_length=5)
    tf.keras.utils.set_random_seed(0)
    model = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf)
    model.compile(tf.keras.optimizers.Adam(0.01))
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    model.fit(make_dataset(feats, 256), epochs=2, verbose=0)
    known = pd.concat([split.train, split.val])
    return Recommender(model, qf, data.items, text, known, text_encoder=encoder), data, known


def test_recommend_excludes_seen_and_given_items(rec):
    r, data, known = rec
    user = known["user_id"].iloc[0]
    seen = set(known.loc[known.user_id == user, "item_id"])
    out = r.recommend(user, k=10, exclude=["i0", "i1"])
    assert len(out) == 10 and not (set(out.item_id) & seen) and not ({"i0", "i1"} & set(out.item_id))
    assert np.all(np.diff(out.score.to_numpy()) <= 0)
    assert "title" in out.columns


def test_the_default_request_time_is_just_after_the_last_known_interaction(rec):
    """Not "now": the synthetic data (like MovieLens) ends long before today."""
    r, data, known = rec
    last = int(known["timestamp"].max())
    assert r.default_timestamp() == last + 1
    user = known["user_id"].iloc[0]
    a, b = r.recommend(user, k=10), r.recommend(user, k=10, timestamp=last + 1)
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(r.query_features_of(user)["timestamp"], [last + 1])


def test_a_given_history_counts_as_seen(rec):
    """A history passed with the request (a live session, a user the recommender does not know)
    is excluded like the known interactions; `exclude_seen=False` keeps it."""
    r, data, _ = rec
    full = r.recommend("brand-new-user", k=len(r.item_ids), exclude_seen=False)["item_id"].tolist()
    history = full[:3]  # the items this query would rank first, so the exclusion is what removes them
    with_history = r.recommend("brand-new-user", k=len(r.item_ids), history=history, exclude_seen=False)
    top = with_history["item_id"].tolist()
    out = r.recommend("brand-new-user", k=10, history=history)
    assert len(out) == 10 and not set(out["item_id"]) & set(history)
    pd.testing.assert_frame_equal(r.recommend("brand-new-user", k=10, history=np.array(history)), out)  # any sequence
    assert out["item_id"].tolist() == [i for i in top if i not in history][:10]  # the same order otherwise
    assert set(history) <= set(top)  # without the exclusion they are still candidates


def test_unknown_user_with_attributes_and_empty_history_is_served(rec):
    r, data, _ = rec
    a = r.recommend("brand-new-user", k=5, history=[], attributes={"gender": "F", "age": 25.0})
    b = r.recommend("brand-new-user", k=5, history=["i3", "i4"])
    assert len(a) == len(b) == 5 and np.isfinite(a.score).all()
    with pytest.raises(DataError, match="Unknown user attribute `shoe_size`"):
        r.recommend("x", attributes={"shoe_size": 42})


def test_index_items_adds_cold_items_without_changing_existing_ones(rec):
    r, data, _ = rec
    before = r.item_embeddings.copy()
    new = pd.DataFrame({"item_id": ["new-1", "new-2"], "title": ["A space opera", "A kitchen drama"],
                        "genres": [data.items.genres.iloc[0], "NoSuchGenre"], "year": [2001, 1990]})
    assert r.index_items(new) == 2
    np.testing.assert_allclose(r.item_embeddings[:len(before)], before, atol=1e-6)
    # Independent recomputation of a new item's embedding: its text through the
    # encoder, its attributes normalised with the catalogue's stats, its id -> OOV.
    stats = r.model.lookup.item_stats
    feats = {"item_id": tf.constant(["new-1"]),
             "text_embedding": r.text_encoder(tf.constant(item_texts(new.iloc[:1].assign(
                 **{c: "" for c in data.items.columns if c not in new.columns}), None))),
             "genres": tf.constant([new.genres.iloc[0]]),
             "year": tf.constant([(2001 - stats["year"][0]) / stats["year"][1]], tf.float32),
             "price": tf.constant([0.0])}  # not given: the catalogue mean, 0 after normalisation
    want = r.model.item_tower(feats, training=False).numpy()[0]
    got = r.item_embeddings[list(r.item_ids).index("new-1")]
    # The tower's vector, then the popularity prior's dimension: 0, a new item has no interactions.
    assert r.model.has_popularity_prior and got.shape == (want.size + 1,) and got[-1] == 0.0
    np.testing.assert_allclose(got[:-1], want, atol=1e-5)
    out = r.recommend(data.users.user_id.iloc[0], k=2, include=["new-1", "new-2"])
    assert set(out.item_id) == {"new-1", "new-2"}
    with pytest.raises(DataError, match="already in the catalogue"):
        r.index_items(new)


def test_observe_puts_new_interactions_in_histories_and_seen_items(rec):
    """Hand-checked: after `observe`, the user's query history ends with the observed items in
    time order, they are excluded as seen, and a new user's observed items are their history."""
    r, data, known = rec
    from tfrec.models.recommender import Recommender

    r = Recommender(r.model, r.query_features, r.items, r.text_embeddings, known.copy())  # leave the fixture as is
    user, t = str(known["user_id"].iloc[0]), int(known["timestamp"].max())
    fresh = [i for i in r.recommend(user, k=20)["item_id"]][:2]  # unseen by the user, ranked high
    n = len(r.known)
    assert r.observe(pd.DataFrame({"user_id": [user, user, "newcomer"], "item_id": [fresh[1], fresh[0], fresh[0]],
                                   "timestamp": [t + 20, t + 10, t + 5]})) == 3
    assert len(r.known) == n + 3
    hist = r.query_features_of(user, timestamp=t + 30)["history"][0]
    assert list(hist[-2:]) == [fresh[0], fresh[1]]  # oldest first
    assert not set(fresh) & set(r.recommend(user, k=20)["item_id"])
    assert list(r.query_features_of("newcomer", timestamp=t + 30)["history"][0][-1:]) == [fresh[0]]
    assert r.default_timestamp() == t + 21
    # Bad input changes nothing.
    with pytest.raises(DataError, match="not in the catalogue.*index_items"):
        r.observe(pd.DataFrame({"user_id": [user], "item_id": ["no-such-item"], "timestamp": [t + 40]}))
    with pytest.raises(DataError, match="missing \\['timestamp'\\]"):
        r.observe(pd.DataFrame({"user_id": [user], "item_id": [fresh[0]]}))
    assert len(r.known) == n + 3
