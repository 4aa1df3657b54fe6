"""Evidence, sentences, JSON form and edge cases of `Explainer` on a tiny trained model."""
import json
import types

import numpy as np
import pandas as pd
import pytest

from tfrec.errors import DataError
from tfrec.explain.evidence import CoOccurrence, shared_values, text_similarity
from tfrec.explain.explainer import Explanation, HistoryEvidence
from tfrec.explain.text import join_titles, sentence


def test_co_occurrence_equals_a_plain_python_count():
    train = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b", "c", "c", "c", "a"],
                          "item_id": ["x", "y", "z", "x", "y", "y", "z", "w", "x"]})  # a-x twice: counts once
    co = CoOccurrence(train, ["x", "y", "z", "w", "v"])
    seen = {}
    for u, i in zip(train.user_id, train.item_id):
        seen.setdefault(u, set()).add(i)
    for item in ["x", "y", "z", "w", "v"]:
        others = ["x", "y", "z", "w", "v", "unknown"]
        want = [sum(1 for s in seen.values() if item in s and o in s) for o in others]
        assert co.counts(item, others).tolist() == want
    assert co.popularity.tolist() == [2, 3, 2, 1, 0]


def test_co_occurrence_on_the_tiny_train_split(tiny):
    rec, data, split, ex = tiny
    users = split.train.groupby("user_id")["item_id"].apply(set)
    item, others = "i3", ["i0", "i1", "i5", "i7"]
    want = [int(sum(item in s and o in s for s in users)) for o in others]
    assert ex.cooc.counts(item, others).tolist() == want


def test_shared_values_by_hand():
    # Comedy is in 2 history items, Animation in 1, Drama not in the item.
    assert shared_values("Animation|Comedy", ["Comedy", "Animation|Comedy", "Drama", np.nan]) == [
        ("Comedy", 2), ("Animation", 1)]
    assert shared_values("Horror", ["Comedy"]) == []
    assert shared_values(np.nan, ["Comedy"]) == []


def test_text_similarity_is_cosine():
    e = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]], np.float32)
    np.testing.assert_allclose(text_similarity(e, 0, [1, 2]), [0.0, 1 / np.sqrt(2)], atol=1e-6)


def test_explanation_evidence_matches_the_data(tiny):
    rec, data, split, ex = tiny
    user = split.val["user_id"].astype(str).iloc[-1]
    ts = int(split.val["timestamp"].max()) + 1
    exps = ex.recommend_with_explanations(user, k=3, timestamp=ts)
    top = rec.recommend(user, k=3, timestamp=ts)
    assert [e.item_id for e in exps] == top["item_id"].tolist() and [e.rank for e in exps] == [1, 2, 3]
    np.testing.assert_allclose([e.score for e in exps], top["score"], atol=1e-5)
    e = exps[0]
    genres = data.items.set_index("item_id")["genres"]
    hist = [h for h in ex.features(user, ts)["history"][0] if h]
    assert sorted(h.item_id for h in e.history) == sorted(hist)
    # Genres by hand: for each genre of the item, the number of history items having it.
    mine = genres[e.item_id].split("|")
    want = {g: sum(g in genres[h].split("|") for h in hist) for g in mine}
    assert dict(e.shared_genres) == {g: n for g, n in want.items() if n}
    # History evidence sorted by leave-one-out, and top_history only positive.
    loo = [h.leave_one_out for h in e.history]
    assert loo == sorted(loo, reverse=True)
    assert all(h.leave_one_out > 0 for h in e.top_history(3))
    assert e.sentence


def _explanation(history, genres=(), cooc=(), attributes=None, title="Target (2000)"):
    return Explanation(user_id="u", item_id="t", title=title, score=0.5, rank=1, genres=["Comedy"],
                       history=[HistoryEvidence(i, t, p, loo, loo, 0, 0.0, [])
                                for p, (i, t, loo) in enumerate(history)],
                       shared_genres=list(genres), similar_titles=[], co_occurrence=list(cooc), item_popularity=7,
                       attributes=attributes or {})


def test_sentence_cites_only_positive_evidence():
    e = _explanation([("a", "Toy Story (1995)", 0.03), ("b", "Aladdin (1992)", 0.01), ("c", "Heat (1995)", -0.02),
                      ("d", "Zero (1990)", 0.0)], genres=[("Animation", 3), ("Comedy", 1)])
    s = sentence(e)
    assert s == "Because you watched Toy Story (1995) and Aladdin (1992), and you often watch Animation."
    # Nothing positive in the history: co-watching, then attributes, then popularity.
    neg = [("c", "Heat (1995)", -0.02)]
    assert sentence(_explanation(neg, genres=[("Comedy", 1)],
                                 cooc=[{"item_id": "c", "title": "Heat (1995)", "count": 4}])) == \
        "People who watched Heat (1995) also watched Target (2000) (4 of them)."
    s = sentence(_explanation(neg, attributes={"age": -0.1, "occupation": 0.02}))
    assert "occupation" in s and "age" not in s and "Heat" not in s
    assert sentence(_explanation([], attributes={"age": -0.1})) == "Target (2000) is popular: 7 viewers watched it."
    assert join_titles(["A", "B", "C"]) == "A, B and C"
    # The popularity prior is cited first when it is at least half of the score (0.5 here).
    e.popularity_prior = 0.25
    assert sentence(e) == ("Because it is popular lately, you watched Toy Story (1995) and Aladdin (1992), "
                           "and you often watch Animation.")
    e.popularity_prior = 0.2
    assert sentence(e).startswith("Because you watched Toy Story")
    alone = _explanation(neg, attributes={"age": 0.1})
    alone.popularity_prior = 0.4
    assert sentence(alone) == "Because it is popular lately."
    alone.prior_predicted = True  # no interactions yet: the content prior's prediction
    assert sentence(alone) == "Because items like it are popular lately."
    # The co-occurrence block, likewise, when it is at least half of the score (0.5).
    e.popularity_prior = 0.0
    e.cooccurrence = 0.25
    assert sentence(e) == ("Because people who watched what you watched also watched it, you watched Toy Story "
                           "(1995) and Aladdin (1992), and you often watch Animation.")
    e.cooccurrence = 0.2
    assert sentence(e).startswith("Because you watched Toy Story")
    # The text profile, with its lexical term's words: function words, single letters and the words given
    # as skipped (a template's own) are not named; three at most.
    e.cooccurrence = 0.0
    e.text_profile = 0.1
    assert sentence(e).startswith("Because its description is like what you watched, you watched Toy Story")
    e.text_profile_words = [("the", 0.05), ("genres", 0.04), ("s", 0.03), ("trek", 0.02), ("1994", 0.01),
                            ("star", 0.01), ("wars", 0.005)]
    assert sentence(e, skip_words={"genres"}).startswith(
        'Because its description shares "trek", "1994" and "star" with what you watched, you watched Toy Story')
    e.text_profile_words = [("the", 0.05), ("genres", 0.04)]
    assert sentence(e, skip_words={"genres"}).startswith("Because its description is like what you watched")
    e.text_profile = -0.01  # the profile lowered the score: not cited, whatever its words
    assert sentence(e).startswith("Because you watched Toy Story")


def test_json_round_trip(tiny):
    rec, data, split, ex = tiny
    e = ex.explain(split.val["user_id"].astype(str).iloc[0], "i3", timestamp=int(split.val["timestamp"].max()) + 1)
    d = json.loads(e.to_json())
    assert Explanation.from_dict(d) == e
    assert set(d) >= {"history", "shared_genres", "co_occurrence", "similar_titles", "attributes", "sentence"}


def test_empty_history_and_unknown_user(tiny):
    rec, data, split, ex = tiny
    e = ex.explain("never-seen-user", "i3", history=[], timestamp=1)
    assert e.history == [] and e.shared_genres == [] and e.co_occurrence == []
    assert e.attributes["user_id"] == pytest.approx(0.0, abs=1e-6)  # unknown already: occluding changes nothing
    assert "popular" in e.sentence and np.isfinite(e.score)
    exps = ex.recommend_with_explanations("never-seen-user", k=2, history=["i1", "i2"], timestamp=1)
    assert len(exps) == 2 and {h.item_id for h in exps[0].history} == {"i1", "i2"}
    with pytest.raises(DataError, match="`item_id` \\['nope'\\] not in the catalogue"):
        ex.explain("u1", "nope")


def test_cli_prints_explanations_and_json(tiny, capsys):
    from tfrec.cli.explain import explain_loaded
    from tfrec.cli.main import main

    rec, data, split, _ = tiny
    loaded = types.SimpleNamespace(recommender=rec, split=split)
    user = split.val["user_id"].astype(str).iloc[-1]
    lines = []
    exps = explain_loaded(loaded, user, k=2, timestamp=int(split.val["timestamp"].max()) + 1, out=lines.append)
    text = "\n".join(lines)
    assert text.startswith(f"user {user}: top 2")
    for r, e in enumerate(exps, start=1):
        assert f"{r}. {e.title} [{e.item_id}]" in text and e.sentence in text
    assert "user attributes / context" in text
    out = []
    explain_loaded(loaded, user, item="i3", as_json=True, timestamp=1, out=out.append)
    parsed = json.loads(out[0])
    assert len(parsed) == 1 and parsed[0]["item_id"] == "i3" and parsed[0]["sentence"]
    # The subcommand is wired: a folder that is not a run is a clear error, exit status 2.
    assert main(["explain", "--run", "no/such/run", "--user", "1"]) == 2
    assert "tfrec: error" in capsys.readouterr().err


def test_popularity_prior_is_its_own_part_of_the_explained_score():
    import tensorflow as tf

    from tests.explain.conftest import build_recommender
    from tfrec.explain.explainer import Explainer
    from tfrec.models.recommender import Recommender

    rec, data, split = build_recommender("mean", fit=False)
    model = rec.model
    assert model.has_popularity_prior
    w, days = 2.0, 5
    model.set_popularity_prior(split.train, w, days)
    rec = Recommender(model, rec.query_features, data.items, rec.text_embeddings, rec.known)
    ex = Explainer(rec, split.train)
    user, ts = split.val["user_id"].astype(str).iloc[-1], int(split.val["timestamp"].max()) + 1
    # Independently: each item's train events in the `days` days before the last one, by pandas.
    recent = split.train[split.train["timestamp"] > split.train["timestamp"].max() - days * 86400]
    counts = recent["item_id"].astype(str).value_counts()
    items = [counts.index[0], counts.index[-1], next(i for i in rec.item_ids if i not in counts.index)]
    feats = ex.features(user, ts)
    q = model.query_vector({k: tf.constant(v) for k, v in feats.items()}).numpy()[0]  # the towers only
    for e in ex._explain(feats, items, 3):
        want = model.temperature * w * np.log1p(counts.get(e.item_id, 0))
        assert e.popularity_prior == pytest.approx(want, rel=1e-5, abs=1e-7)
        v = model.item_vectors(tf.constant([e.item_id])).numpy()[0]
        assert e.score - e.popularity_prior == pytest.approx(float(q @ v), abs=1e-5)
    from tfrec.cli.explain import format_explanation

    assert "popularity prior adds +" in format_explanation(ex._explain(feats, items[:1], 3)[0])


def test_an_item_without_interactions_explains_its_prior_as_the_content_prediction():
    """With the content prior, an item nobody has interacted with carries the prior its
    content predicts; its explanation says so (and a counted item's still says "lately")."""
    import tensorflow as tf

    from tests.explain.conftest import build_recommender
    from tfrec.cli.explain import format_explanation
    from tfrec.explain.explainer import Explainer
    from tfrec.models.content_prior import ContentPrior
    from tfrec.models.recommender import Recommender

    rec, data, split = build_recommender("mean", fit=False)
    model = rec.model
    counts = split.train["item_id"].astype(str).value_counts()
    new, old = counts.index[0], counts.index[1]  # the most watched item, made "new" by dropping its events
    known = split.train[split.train["item_id"].astype(str) != new]
    model.content_prior = ContentPrior()
    try:
        model.set_popularity_prior(known, 2.0, 0)
        rec = Recommender(model, rec.query_features, data.items, rec.text_embeddings, known)
        ex = Explainer(rec, known)
        feats = ex.features(split.val["user_id"].astype(str).iloc[-1], int(split.val["timestamp"].max()) + 1)
        e_new, e_old = ex._explain(feats, [new, old], 3)
        want = model.temperature * 2.0 * model.content_prior.predict(model.lookup, [new])[0]
        assert want > 0 and e_new.popularity_prior == pytest.approx(want, rel=1e-5)
        assert e_new.prior_predicted and not e_old.prior_predicted and e_old.popularity_prior > 0
        assert "its content predicts" in format_explanation(e_new)
        assert "popular lately" in format_explanation(e_old)
        assert model.prior_column(tf.constant([new])).numpy()[0] == pytest.approx(want, rel=1e-5)
    finally:
        model.content_prior = None
