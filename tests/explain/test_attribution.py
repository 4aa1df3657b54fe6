"""Attributions against independent computations: a naive per-deletion loop, finite differences."""
import numpy as np
import pytest
import tensorflow as tf

from tests.explain.conftest import build_recommender
from tfrec.explain.attribution import GradientTimesInput, history_variants, leave_one_out, occlusion
from tfrec.explain.explainer import Explainer


def _query(split):
    """A user with a full history (5 items) at the end of the validation period."""
    ts = int(split.val["timestamp"].max()) + 1
    return split.val["user_id"].astype(str).iloc[-1], ts


def _naive_score(model, feats, item_id):
    """One eager model call: dot(query embedding, item embedding)."""
    q = model.query_embedding({k: tf.constant(v) for k, v in feats.items()}, training=False)
    v = model.item_embeddings(tf.constant([item_id]), training=False)
    return float(tf.reduce_sum(q[0] * v[0]))


@pytest.mark.parametrize("sequence", ["mean", "gru", "sasrec"])
def test_leave_one_out_equals_one_model_call_per_deletion(sequence):
    rec, data, split = build_recommender(sequence, fit=False)
    ex = Explainer(rec, split.train)
    user, ts = _query(split)
    feats = ex.features(user, ts)
    hist = feats["history"][0]
    assert (hist != "").sum() == 5
    items = ["i3", "i10", "i41"]
    vecs = rec.item_embeddings[rec._index.get_indexer(items)]
    score, loo = leave_one_out(rec.scorer._query_fn, feats, vecs)  # (m,), (m, N)
    for m, item in enumerate(items):
        base = _naive_score(rec.model, feats, item)
        assert score[m] == pytest.approx(base, abs=1e-5)
        for j in range(len(hist)):
            # The user without item j, through the Recommender's own request path.
            without = [h for i, h in enumerate(hist) if i != j and h != ""]
            q = rec.query_embedding(user, ts, history=without)
            want = base - float(q @ rec.item_embeddings[rec._index.get_loc(item)])
            assert loo[m, j] == pytest.approx(want, abs=1e-5), (sequence, item, j)
    assert np.abs(loo).max() > 1e-4  # the history matters at all, so the comparison means something


def test_explained_scores_include_the_repeat_penalty_as_recommend_ranks_them():
    p = 2.0  # a cosine moves by at most 2, so the own entry's contribution (its effect - p) must be negative
    rec, data, split = build_recommender("mean", fit=False, repeat_penalty=p)
    assert float(rec.model.repeat_penalty) == pytest.approx(p, rel=1e-5)
    ex = Explainer(rec, split.train)
    user, ts = _query(split)
    feats = ex.features(user, ts)
    padded = list(feats["history"][0])
    hist = [h for h in padded if h != ""]
    once = next(h for h in hist if hist.count(h) == 1)
    twice = next(h for h in hist if hist.count(h) == 2)  # removing one of its entries keeps the penalty
    other = next(i for i in rec.item_ids if i not in hist)
    items = [once, twice, other]  # history items (penalised) and one that is not
    # The score the recommender ranks by (its own penalty path, `HybridScorer.penalise`).
    ranked = rec.recommend(user, k=len(rec.item_ids), timestamp=ts, exclude_seen=False).set_index("item_id")
    explanations = ex._explain(feats, items, 3)
    for e, item in zip(explanations, items):
        assert e.score == pytest.approx(float(ranked.loc[item, "score"]), abs=1e-5)
        repeat = item in hist
        assert e.score == pytest.approx(_naive_score(rec.model, feats, item) - p * repeat, abs=1e-5)
        assert e.repeat_penalty == (pytest.approx(p, rel=1e-5) if repeat else 0.0)
        for h in e.history:  # leave-one-out against the user re-scored without that item, penalty included
            without = [x for j, x in enumerate(padded) if j != h.position and x != ""]
            q = rec.query_embedding(user, ts, history=without)
            want = e.score - (float(q @ rec.item_embeddings[rec._index.get_loc(item)]) - p * (item in without))
            assert h.leave_one_out == pytest.approx(want, abs=1e-5), (item, h.item_id)
    own = next(h for h in explanations[0].history if h.item_id == once)
    assert own.leave_one_out < 0  # removing the item's only entry lifts the penalty
    from tfrec.cli.explain import format_explanation

    assert "repeat penalty -2.0000" in format_explanation(explanations[0])
    assert "repeat penalty" not in format_explanation(explanations[2])
    # Occlusion keeps the history, so the penalty cancels: the same numbers as without it.
    att = ex.attribute(feats, items)
    plain = occlusion(rec.scorer._query_fn, feats, rec.item_embeddings[rec._index.get_indexer(items)],
                      ex.occlusion_names, ex.neutral_time)
    np.testing.assert_allclose(att["occlusion"], plain, atol=1e-5)


def test_history_variants_remove_one_item_each():
    feats = {"user_id": np.array(["u"], object), "history": np.array([["", "a", "b"]], object)}
    v = history_variants(feats)
    assert v["history"].tolist() == [["", "a", "b"], ["", "a", "b"], ["", "", "b"], ["", "", "a"]]
    assert v["user_id"].tolist() == ["u"] * 4


@pytest.mark.parametrize("sequence", ["mean", "gru"])
def test_gradient_x_input_matches_finite_differences(sequence):
    # gxi_j = sum_e dscore/dh_je * h_je = d/dt score(h_j * (1 + t)) at t = 0: a central difference.
    rec, data, split = build_recommender(sequence, fit=False)
    ex = Explainer(rec, split.train)
    user, ts = _query(split)
    feats = ex.features(user, ts)
    items = ["i3", "i10"]
    vecs = rec.item_embeddings[rec._index.get_indexer(items)]
    gxi = GradientTimesInput(rec.model)(feats, vecs)  # (m, N)
    model = rec.model
    tf_feats = {k: tf.constant(v) for k, v in feats.items()}
    hv = model.item_vectors(tf_feats["history"]).numpy().astype(np.float64)  # (1, N, d)
    eps = 1e-2
    for m in range(len(items)):
        for j in range(hv.shape[1]):
            def f(t):
                h = hv.copy()
                h[0, j] *= 1.0 + t
                q = model.query_embedding(tf_feats, history_vectors=tf.constant(h, tf.float32)).numpy()[0]
                return float(q.astype(np.float64) @ vecs[m])
            fd = (f(eps) - f(-eps)) / (2 * eps)
            assert gxi[m, j] == pytest.approx(fd, abs=3e-4), (sequence, m, j)
    assert np.abs(gxi).max() > 1e-3


def test_occlusion_replaces_each_feature_by_its_unknown_value():
    rec, data, split = build_recommender("mean", fit=False)
    ex = Explainer(rec, split.train)
    user, ts = _query(split)
    feats = ex.features(user, ts)
    vecs = rec.item_embeddings[:2]
    occ = occlusion(rec.scorer._query_fn, feats, vecs, ex.occlusion_names, ex.neutral_time)  # (2, A)
    assert ex.occlusion_names == ["user_id", "gender", "occupation", "age", "timestamp"]
    unknown = {"user_id": "someone-not-in-train", "gender": "", "occupation": "", "age": -1.0,
               "timestamp": ex.neutral_time}
    for a, name in enumerate(ex.occlusion_names):
        changed = dict(feats, **{name: np.array([unknown[name]], dtype=feats[name].dtype)})
        for m, item in enumerate(rec.item_ids[:2]):
            want = _naive_score(rec.model, feats, item) - _naive_score(rec.model, changed, item)
            assert occ[m, a] == pytest.approx(want, abs=1e-5), name
