"""The text-profile term (`set_text_profile`): items without a trained id also score
w x cos(the user's text profile, the item's centred text), checked against numpy."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.models.worlds import cold_items_world, seeded_hybrid, unit as _unit
from tfrec.config import ModelConfig
from tfrec.errors import ConfigError
from tfrec.models.scoring import HybridScorer
from tfrec.models.text_profile import PROFILE_FEATURE


@pytest.fixture(scope="module")
def world():
    return cold_items_world()


def _centred(text, dim=0, like=None):
    """Reference t_i: the unit text rows less their mean, projected onto their top `dim` principal
    directions (scikit-learn's PCA) when 0 < dim < the width, normalised. A direction's sign is
    arbitrary (cosines do not depend on it); `like` [t, dim] (a model's) sets each one's, so that
    coordinates can be compared too."""
    from sklearn.decomposition import PCA

    unit = _unit(text.astype(np.float64))
    centred = unit - unit.mean(axis=0)
    if 0 < dim < text.shape[1]:
        directions = PCA(n_components=dim).fit(unit).components_.T  # (t, dim)
        if like is not None:
            directions *= np.sign(np.sum(directions * np.asarray(like), axis=0))
        centred = centred @ directions
    return _unit(centred)


def _numpy_term(text, item_ids, trained, weight, shrinkage, known, user, before, dim=0):
    """Naive reference: centre the unit text rows on their mean (and project them, `_centred`),
    profile = unit sum of the user's n known items strictly before `before` x n / (n + k),
    term = w x profile . t_i for untrained items."""
    centred = _centred(text, dim)
    row = {i: n for n, i in enumerate(item_ids)}
    mine = known[(known["user_id"].astype(str) == user) & (known["timestamp"] < before)]
    profile = _unit(sum((centred[row[str(i)]] for i in mine["item_id"]), np.zeros(centred.shape[1])))
    profile *= len(mine) / (len(mine) + shrinkage) if len(mine) else 0.0
    return np.array([weight * (profile @ centred[row[i]]) if i not in trained else 0.0 for i in item_ids])


def test_untrained_items_gain_the_text_match_with_the_whole_history_and_trained_items_nothing(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    ids = list(cat.item_ids)
    trained = set(model.item_tower.item_vocabulary)
    assert 0 < len(set(ids) - trained) < len(ids)  # both kinds in the catalogue
    # Asked after everything known, for the users with the most of it, and one mid-way.
    last = split.train.groupby("user_id")["timestamp"].max().sort_index()
    ev = (last.loc[split.train["user_id"].value_counts().index[:7]] + 1).reset_index()
    ev.loc[len(ev)] = [ev["user_id"][0], int(split.train["timestamp"].median())]
    before = HybridScorer(model, qf, split.train, ids).score_queries(ev)  # (n, I), term off
    model.set_text_profile(0.7, shrinkage=5.0)
    try:
        scorer = HybridScorer(model, qf, split.train, ids)
        got = scorer.score_queries(ev)
        feats = scorer.features(ev)
        assert feats["history"].shape[1] == 4 and feats[PROFILE_FEATURE].shape[1] == 1000
        for r, (user, ts) in enumerate(zip(ev["user_id"].astype(str), ev["timestamp"])):
            want = before[r] + _numpy_term(text, ids, trained, 0.7, 5.0, split.train, user, ts)
            np.testing.assert_allclose(got[r], want, atol=1e-5)
        # These users know more than the tower's 4 items: the profile read beyond them.
        assert (np.count_nonzero(feats[PROFILE_FEATURE][:7], axis=1) > 4).all()
    finally:
        model.set_text_profile(0.0)
    np.testing.assert_allclose(HybridScorer(model, qf, split.train, ids).score_queries(ev), before, atol=1e-6)
    # A scorer built before the space changed says so instead of failing in a matrix product.
    stale = HybridScorer(model, qf, split.train, ids)
    model.set_text_profile(0.7)
    with pytest.raises(ConfigError, match="changed after this HybridScorer was built"):
        stale.score_queries(ev)
    with pytest.raises(ConfigError, match="retrieval space changed after the scorer was built"):
        stale.query_embeddings(ev)  # the query side alone: its vectors no longer match the scorer's items
    model.set_text_profile(0.0)


def test_many_queries_of_every_history_length_score_as_one_at_a_time(world, monkeypatch):
    """The scorer embeds queries with a profile window in order of their history's length, a few at a
    time, each call cut to the columns its rows fill (`_embed_by_length`): every train event asked as a
    query (histories of 0 to ~40 items, in calls of 16 rows cut to multiples of 4 columns), each row
    against the numpy reference and in the events' own order."""
    import tfrec.models.scoring as scoring

    monkeypatch.setattr(scoring, "ROWS_PER_CALL", 16)
    monkeypatch.setattr(scoring, "WIDTH_STEP", 4)
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    ids = list(cat.item_ids)
    trained = set(model.item_tower.item_vocabulary)
    ev = split.train[["user_id", "timestamp"]].sample(frac=1.0, random_state=0).reset_index(drop=True)
    before = HybridScorer(model, qf, split.train, ids).score_queries(ev)  # term off: no profile window
    model.set_text_profile(0.7, shrinkage=5.0)
    try:
        scorer = HybridScorer(model, qf, split.train, ids)
        lengths = np.count_nonzero(scorer.features(ev)[PROFILE_FEATURE], axis=1)
        assert len(ev) > 40 * 16 and lengths.min() == 0 and lengths.max() > 8 * 4  # many calls and widths
        got = scorer.score_queries(ev)
    finally:
        model.set_text_profile(0.0)
    for r, (user, ts) in enumerate(zip(ev["user_id"].astype(str), ev["timestamp"])):
        want = before[r] + _numpy_term(text, ids, trained, 0.7, 5.0, split.train, user, ts)
        np.testing.assert_allclose(got[r], want, atol=1e-5)


def test_the_profile_in_a_few_principal_directions_is_the_projected_cosine(world):
    """`dim`: items and profiles projected onto the catalogue texts' top principal directions (the
    block D columns wide), against the numpy reference with scikit-learn's PCA."""
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    ids = list(cat.item_ids)
    trained = set(model.item_tower.item_vocabulary)
    last = split.train.groupby("user_id")["timestamp"].max().sort_index()
    ev = (last.loc[split.train["user_id"].value_counts().index[:5]] + 1).reset_index()
    before = HybridScorer(model, qf, split.train, ids).score_queries(ev)
    model.set_text_profile(0.7, shrinkage=5.0, dim=3)
    try:
        scorer = HybridScorer(model, qf, split.train, ids)
        assert scorer.item_embeddings.shape[1] == model.item_tower.output_dim + 3 and text.shape[1] == 6
        got = scorer.score_queries(ev)
    finally:
        model.set_text_profile(0.0)
    for r, (user, ts) in enumerate(zip(ev["user_id"].astype(str), ev["timestamp"])):
        want = before[r] + _numpy_term(text, ids, trained, 0.7, 5.0, split.train, user, ts, dim=3)
        np.testing.assert_allclose(got[r], want, atol=1e-5)
    model.set_text_profile(0.7, dim=6)  # as wide as the texts: every dimension, no projection
    assert model.text_profile.projection is None and model.text_profile.text_dim == 6
    model.set_text_profile(0.0)


def test_a_catalogue_with_fewer_items_than_directions_asked_gets_one_per_item():
    """40 items with 50-dimensional texts and `dim` 45: the centred texts have at most 40 principal
    directions, and the block is that wide on both sides (the lexical term's columns follow it)."""
    from tests.models.worlds import synthetic_world

    world = synthetic_world(60, 40, 1500, data_seed=5, split="cold_items", text_dim=50, history_length=4,
                            cold_item_fraction=0.2, seed=1)
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    model.set_text_profile(0.5, dim=45)
    n_rows = len(model.lookup.item_ids)
    assert n_rows <= 40 and model.text_profile.text_dim == model.text_profile.dim == n_rows
    scorer = HybridScorer(model, qf, split.train, list(cat.item_ids))
    assert scorer.item_embeddings.shape[1] == model.item_tower.output_dim + n_rows
    events = split.test.head(3)[["user_id", "timestamp"]]
    assert scorer.score_queries(events).shape == (3, len(cat.item_ids))


def test_empty_and_unknown_histories_give_a_zero_profile(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    model.set_text_profile(1.0)
    feats = qf.build(split.test.head(2), context=split.train)
    feats["history"] = np.array([[""] * 4, ["", "", "no-such-item", ""]], dtype=object)
    q = model.query_embedding({k: tf.constant(v) for k, v in feats.items()}).numpy()
    d = model.item_tower.output_dim
    np.testing.assert_array_equal(q[:, d:], 0.0)  # only the profile block follows the tower's d (no prior here)
    assert q.shape[1] == d + text.shape[1] and np.isfinite(q).all()


def test_text_profile_settings_are_checked(world):
    model = seeded_hybrid(world)
    bad_settings = ((-0.5, 10, 1.0, 0), (0.5, 0, 1.0, 0), (0.5, 10, -1.0, 0), (0.5, 10, 1.0, -1))
    for weight, length, shrinkage, dim in bad_settings:
        with pytest.raises(ConfigError, match="weight > 0, a length >= 1, a shrinkage >= 0, a lexical weight >= 0 "
                                              "and a dim >= 0"):
            model.set_text_profile(weight, length, shrinkage, dim=dim)
    for bad in ({"text_profile": -1.0}, {"text_profile_shrinkage": -2.0}, {"text_profile_dim": -1},
                {"text_profile": 0.5, "text_profile_lexical": -0.5},
                {"text_profile": 0.5, "text_profile_lexical": 0.5, "text_profile_lexical_terms": -1}):
        with pytest.raises(ConfigError, match=list(bad)[-1]):
            ModelConfig(**bad)
    assert ModelConfig(text_profile=0.5, text_profile_lexical=0.5).text_profile_lexical == 0.5
    assert ModelConfig(text_profile=0).text_profile_lexical == 0.5  # valid: the lexical term is off with the profile
    no_text = seeded_hybrid(world, use_text=False)
    with pytest.raises(ConfigError, match=r"cached text embeddings.*model.text_profile=0"):
        no_text.set_text_profile(0.5)


def test_with_text_profile_follows_the_config(world):
    from tfrec.models.text_profile import with_text_profile

    data = world[0]
    model = seeded_hybrid(world)
    lines = []
    with_text_profile(model, ModelConfig(text_profile=0), lines.append, data.items)  # off: its lexical term too
    assert model.text_profile is None and not lines
    with_text_profile(model, ModelConfig(text_profile=0.25, text_profile_lexical=0), lines.append)
    n_untrained = len(set(model.lookup.item_ids) - set(model.item_tower.item_vocabulary))
    assert model.text_profile.weight == 0.25 and f"the {n_untrained} catalogue items" in lines[-1]
    assert model.text_profile.lexical is None and "TF-IDF" not in lines[-1]
    # The default: weight 0.5, the lexical term 0.5 over the words of at most 1,024 texts, 64 directions.
    with_text_profile(model, ModelConfig(), lines.append, data.items)
    tp = model.text_profile
    assert (tp.weight, tp.lexical_weight, tp.shrinkage) == (0.5, 0.5, 40.0) and "0.5 x their words' TF-IDF" in lines[-1]
    assert tp.lexical.dim == min(1024, tp.lexical.n_words) and tp.text_dim == min(64, world[3].shape[1])
    # A model without cached text has none, and the log says why (`tfrec run --model.use_text=false`).
    no_text = seeded_hybrid(world, use_text=False)
    with_text_profile(no_text, ModelConfig(), lines.append, data.items)
    assert no_text.text_profile is None and "no text profile (it needs cached text embeddings" in lines[-1]


def test_recommender_and_the_popularity_prior_keep_the_blocks_in_order(world):
    """With the prior too, item vectors are [tower, prior, profile block] and the query
    [tower, 1, profile]; `Recommender.query_features_of` sends the long history."""
    from tfrec.models.recommender import Recommender

    data, split, cat, text, qf = world
    model = seeded_hybrid(world, popularity_prior=(0.0, 1.0))
    model.set_popularity_prior(split.train, 1.0, 0)
    model.set_text_profile(0.5, length=50)
    ids = list(cat.item_ids)
    d, t = model.item_tower.output_dim, text.shape[1]
    emb = model.item_embeddings(tf.constant(ids)).numpy()
    assert emb.shape == (len(ids), d + 1 + t)
    np.testing.assert_allclose(emb[:, d], model.prior_column(tf.constant(ids)).numpy(), atol=1e-6)
    rec = Recommender(model, qf, data.items, text, split.train)
    user = str(split.train["user_id"].value_counts().index[0])  # the user with the longest history
    ts = int(split.train["timestamp"].max()) + 1
    feats = rec.query_features_of(user, timestamp=ts)
    mine = split.train[split.train["user_id"].astype(str) == user].sort_values("timestamp", kind="mergesort")
    want = mine["item_id"].astype(str).tolist()[-50:]
    assert [h for h in feats[PROFILE_FEATURE][0] if h] == want
    q = rec.query_embedding(user, timestamp=ts)
    assert q.shape == (d + 1 + t,) and q[d] == 1.0
    untrained = [i for i in ids if i not in set(model.item_tower.item_vocabulary)]
    out = rec.recommend(user, k=5, timestamp=ts, include=untrained)
    top = pd.Series(emb @ q, index=ids).drop(mine["item_id"].astype(str), errors="ignore")
    top = top[[i for i in top.index if i in set(untrained)]]
    assert out["item_id"].tolist() == top.sort_values(ascending=False, kind="mergesort").index[:5].tolist()
    # `Recommender.set_text_profile` switches it on the model and re-reads the index, no retraining.
    assert rec.set_text_profile(0).item_embeddings.shape == (len(ids), d + 1) and model.text_profile is None
    assert rec.set_text_profile(0.5, shrinkage=0, lexical=0).item_embeddings.shape == (len(ids), d + 1 + t)
    assert model.text_profile.shrinkage == 0.0


@pytest.mark.parametrize("dim", [0, 5], ids=["every dimension", "5 principal directions"])
def test_a_saved_model_scores_the_text_profile_from_the_whole_history_it_is_sent(tmp_path, dim):
    """The exported query model reads the tower's newest items and the profile's from one
    `history` input of any length; `encode_items` gives a new item its block from its text
    (projected onto the catalogue's principal directions with `dim`, as the catalogue's)."""
    from tests.models.worlds import tiny_bert_world
    from tfrec.explain.serving import hybrid_explainer
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.factory import build_hybrid
    from tfrec.models.serving import hybrid_serving_parts

    data, split, cat, enc, text, qf = tiny_bert_world(40, 30, 1200, data_seed=3, history_length=3)
    tf.keras.utils.set_random_seed(0)
    # Without item ids no item has a trained id, so every item carries the profile's block.
    model = build_hybrid(ModelConfig(embedding_dim=8, use_id=False), cat, data.items, text, qf)
    model.set_popularity_prior(split.train, 0.5, 0)
    model.set_text_profile(0.5, length=20, dim=dim)
    query_model, spec, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, enc)
    ids = list(cat.item_ids)
    emb = model.item_embeddings(tf.constant(ids)).numpy()
    explainer = hybrid_explainer(model, qf, ids, emb)
    path = export_retrieval(query_model, spec, ids, emb, item_encoder=item_encoder, item_encoder_spec=item_spec,
                            explainer=explainer, root=tmp_path, name="tp", k=5)
    loaded = tf.saved_model.load(path)
    # One user's whole known history (more than both windows), sent as one request.
    user = str(split.train["user_id"].value_counts().index[0])
    mine = split.train[split.train["user_id"].astype(str) == user].sort_values("timestamp", kind="mergesort")
    history = mine["item_id"].astype(str).tolist()
    assert len(history) > 20
    ts = int(mine["timestamp"].max()) + 1
    request = {"user_id": tf.constant([user]), "timestamp": tf.constant([ts], tf.int64),
               "history": tf.constant([history])}
    request.update({k: tf.constant(v) for k, v in qf.attributes([user]).items()})
    got = loaded.signatures["encode_query"](**request)["embedding"].numpy()
    events = pd.DataFrame({"user_id": [user], "timestamp": [ts]})
    want = HybridScorer(model, qf, split.train, ids).query_embeddings(events)  # history 3, profile 20
    np.testing.assert_allclose(got, want, atol=1e-5)
    d, t = model.item_tower.output_dim, dim or text.shape[1]
    assert text.shape[1] > 5 and model.text_profile.text_dim == t
    projection = model.text_profile.projection
    centred = _centred(text, dim, like=None if projection is None else projection.numpy())
    row = {i: n for n, i in enumerate(ids)}
    want_profile = _unit(sum(centred[row[i]] for i in history[-20:])) * 20 / (20 + 40)  # default shrinkage 40
    np.testing.assert_allclose(got[0, d + 1:], want_profile, atol=1e-5)
    # `explain` scores an item as the retrieval does (the profile from the whole history sent, the
    # tower's window left one out at a time) and reports the prior's coordinate, not the profile's.
    item = ids[int(np.argmax(emb[:, d]))]  # the item with the largest prior
    assert np.abs(emb[row[item], d + 1:]).max() > 0  # it carries the profile's block too
    out = loaded.signatures["explain"](**request, item_ids=tf.constant([item]))
    np.testing.assert_allclose(out["score"].numpy(), got @ emb[row[item]], atol=1e-5)
    np.testing.assert_allclose(out["popularity_prior"].numpy(), [emb[row[item], d]], atol=1e-6)
    np.testing.assert_allclose(out["text_profile"].numpy(), [got[0, d + 1:] @ emb[row[item], d + 1:]], atol=1e-5)
    assert abs(float(out["text_profile"].numpy()[0])) > 1e-4
    assert emb[row[item], d] > 0
    # New items: their block is w x their centred text, as an untrained catalogue item's.
    items = data.items.iloc[:3]
    raw = {}
    for name, s in item_spec.items():
        col = pd.Series([f"new-{i}" for i in range(3)]) if name == "item_id" else items[name]
        raw[name] = tf.constant(col.astype(str).tolist() if s.dtype == tf.string else col.astype(np.float32).to_numpy())
    new = loaded.signatures["encode_items"](**raw)["embedding"].numpy()
    assert new.shape == (3, d + 1 + t)
    np.testing.assert_allclose(new[:, d + 1:], 0.5 * centred[[row[str(i)] for i in items["item_id"]]], atol=1e-4)
    # `index_items` gives the same items the same block (the lookup it replaces is the one the profile reads).
    from tfrec.models.recommender import Recommender

    rec = Recommender(model, qf, data.items, text, split.train, text_encoder=enc)
    rec.index_items(items.assign(item_id=[f"new-{i}" for i in range(3)]))
    np.testing.assert_allclose(rec.item_embeddings[-3:, d + 1:], new[:, d + 1:], atol=1e-4)
    # A history holding new items: the profile counts their text (the same texts as the first three items').
    sent = history[-5:] + ["new-0", "new-2"]
    q = rec.query_embedding(user, timestamp=ts, history=sent)
    same = [row[str(i)] for i in items["item_id"]]
    rows = [row[i] for i in history[-5:]] + [same[0], same[2]]
    np.testing.assert_allclose(q[d + 1:], _unit(centred[rows].sum(axis=0)) * 7 / (7 + 40), atol=1e-5)


def test_explainer_scores_an_untrained_item_with_its_text_profile_term():
    """`Explainer` explains the score the recommender ranks by, the profile's part included
    (leave-one-out removes items from the tower's window; the profile keeps the whole history)."""
    from tests.explain.conftest import build_recommender
    from tfrec.explain.explainer import Explainer
    from tfrec.models.recommender import Recommender

    rec, data, split = build_recommender("mean", fit=False)
    model = rec.model
    model.set_text_profile(0.5, shrinkage=0.0)
    rec = Recommender(model, rec.query_features, data.items, rec.text_embeddings, rec.known)
    untrained = [i for i in rec.item_ids if i not in set(model.item_tower.item_vocabulary)]
    assert untrained
    user = str(split.train["user_id"].value_counts().index[0])
    ts = int(split.train["timestamp"].max()) + 1
    ex = Explainer(rec, split.train)
    e = ex._explain(ex.features(user, ts), untrained[:1], 3)[0]
    q = rec.query_embedding(user, timestamp=ts)
    v = rec.item_embeddings[list(rec.item_ids).index(untrained[0])]
    d = model.item_tower.output_dim
    assert e.score == pytest.approx(float(q @ v), abs=1e-5)
    part = float(q[d + 1:] @ v[d + 1:])  # after the tower's d and the prior's coordinate
    assert abs(part) > 1e-4 and e.text_profile == pytest.approx(part, abs=1e-6)
    from tfrec.cli.explain import format_explanation
    from tfrec.explain.text import sentence

    # An item whose text matches the history says so, first among the history clauses.
    liked = max(untrained, key=lambda i: float(q[d + 1:] @ rec.item_embeddings[list(rec.item_ids).index(i)][d + 1:]))
    best = ex._explain(ex.features(user, ts), [liked], 3)[0]
    assert best.text_profile > 0 and "its description is like what you watched" in sentence(best)
    assert "(text profile) adds +" in format_explanation(best)
