"""The exported `explain` signature answers like the in-memory `Explainer`."""
import json
import pathlib

import numpy as np
import pytest
import tensorflow as tf

from tfrec.errors import ConfigError
from tfrec.explain.serving import QueryExplainer, hybrid_explainer
from tfrec.export.retrieval import METADATA_FILE, RetrievalModule, export_retrieval
from tfrec.export.warmup import read_warmup
from tfrec.models.serving import hybrid_serving_parts


def test_saved_explain_signature_equals_the_python_explainer(tiny, tmp_path):
    rec, data, split, ex = tiny
    qf = rec.query_features
    query_model, spec, _, _ = hybrid_serving_parts(rec.model, qf)
    explainer = hybrid_explainer(rec.model, qf, rec.item_ids, rec.item_embeddings)
    path = export_retrieval(query_model, spec, rec.item_ids, rec.item_embeddings, explainer=explainer, k=5,
                            root=tmp_path, name="explain")
    meta = json.loads((pathlib.Path(path) / "assets.extra" / METADATA_FILE).read_text())
    assert meta["explain_attribute_names"] == ex.occlusion_names
    assert "explain" in meta["signatures"]
    assert "explain" in [sig for _, sig, _ in read_warmup(path)]
    sig = tf.saved_model.load(path).signatures["explain"]

    ts = int(split.val["timestamp"].max()) + 1
    users = [split.val["user_id"].astype(str).iloc[-1], "never-seen"]
    histories = [None, ["i1", "i2"]]  # the known (full) history; a short one the signature pads
    items = ["i3", "i10"]
    feats = [ex.features(u, ts, h) for u, h in zip(users, histories)]
    req = {k: np.concatenate([f[k] for f in feats]) for k in feats[0] if k != "history"}
    # Raw requests: wider than the model's N = 5, "" on the left; the export keeps the newest 5.
    req["history"] = np.array([["", ""] + list(feats[0]["history"][0]), [""] * 5 + ["i1", "i2"]], dtype=object)
    out = sig(**{k: tf.constant(v) for k, v in req.items()}, item_ids=tf.constant(items))
    for b in range(2):
        want = ex.attribute(feats[b], [items[b]])
        np.testing.assert_allclose(out["score"].numpy()[b], want["score"][0], atol=1e-5)
        np.testing.assert_allclose(out["history_contributions"].numpy()[b], want["leave_one_out"][0], atol=1e-5)
        np.testing.assert_allclose(out["attribute_contributions"].numpy()[b], want["occlusion"][0], atol=1e-5)
        assert [s.decode() for s in out["history_item_ids"].numpy()[b]] == list(feats[b]["history"][0])
    assert np.abs(out["history_contributions"].numpy()).max() > 1e-4


def test_query_explainer_pads_short_histories_and_scores_unknown_items_zero():
    # A linear "query model": mean of the history vectors (0 without history) + a user offset.
    table = {"a": [1.0, 0.0], "b": [0.0, 2.0], "c": [3.0, 1.0]}

    class Mean(tf.Module):
        def __call__(self, f):
            keys = tf.constant(list(table))
            vals = tf.constant(list(table.values()))
            idx = tf.argmax(tf.cast(f["history"][..., None] == keys, tf.int32), axis=-1)  # (b, N)
            real = tf.cast(f["history"] != "", tf.float32)[..., None]
            h = tf.reduce_sum(tf.gather(vals, idx) * real, 1) / tf.maximum(tf.reduce_sum(real, 1), 1.0)
            return h + tf.where(f["user_id"] == "vip", 1.0, 0.0)[:, None]

    ex = QueryExplainer(Mean(), ["x", "y"], [[1.0, 0.0], [0.0, 1.0]], history_length=3,
                        occlusions={"user_id": "\x00oov"})
    out = ex({"user_id": tf.constant(["vip"]), "history": tf.constant([["a", "b"]])}, tf.constant(["x"]))
    # By hand: history ["", "a", "b"] -> mean (0.5, 1) + 1 -> score on x = 1.5.
    # Without a: mean (0, 2) + 1 -> 1.0 (drop 0.5); without b: (1, 0) + 1 -> 2.0 (drop -0.5).
    # user_id unknown: no +1 -> 0.5 (drop 1.0).
    assert out["score"].numpy().tolist() == [1.5]
    assert out["history_contributions"].numpy().tolist() == [[0.0, 0.5, -0.5]]
    assert [s.decode() for s in out["history_item_ids"].numpy()[0]] == ["", "a", "b"]
    assert out["attribute_contributions"].numpy().tolist() == [[1.0]]
    unknown = ex({"user_id": tf.constant(["vip"]), "history": tf.constant([["a", "b"]])}, tf.constant(["zz"]))
    assert unknown["score"].numpy().tolist() == [0.0]
    assert unknown["history_contributions"].numpy().tolist() == [[0.0, 0.0, 0.0]]


def test_query_explainer_subtracts_the_repeat_penalty_from_history_items():
    table = {"a": [1.0, 0.0], "b": [0.0, 2.0], "zz": [5.0, 5.0]}

    class Mean(tf.Module):
        def __call__(self, f):
            keys, vals = tf.constant(list(table)), tf.constant(list(table.values()))
            idx = tf.argmax(tf.cast(f["history"][..., None] == keys, tf.int32), axis=-1)
            real = tf.cast(f["history"] != "", tf.float32)[..., None]
            h = tf.reduce_sum(tf.gather(vals, idx) * real, 1) / tf.maximum(tf.reduce_sum(real, 1), 1.0)
            return h + tf.where(f["user_id"] == "vip", 1.0, 0.0)[:, None]

    ex = QueryExplainer(Mean(), ["a", "x"], [[1.0, 0.0], [0.0, 1.0]], history_length=3,
                        occlusions={"user_id": "\x00oov"}, repeat_penalty=0.25, prior_column=True)
    q = {"user_id": tf.constant(["vip", "vip", "vip"]), "history": tf.constant([["a", "b"], ["a", "b"], ["zz", "b"]])}
    out = ex(q, tf.constant(["a", "x", "zz"]))
    # By hand, item a (in the history): ["", a, b] -> (0.5, 1) + 1 -> 1.5, penalised 1.25.
    # Without a: (0, 2) + 1 -> 1.0, no longer a repeat (drop 0.25); without b: (1, 0) + 1 -> 2.0,
    # still a repeat, 1.75 (drop -0.5). user_id unknown: 0.5 - 0.25 (drop 1.0, the penalty cancels).
    # Item x is no history item: (1.5, 2) . (0, 1) = 2.0. An unknown item scores 0 even in the history.
    np.testing.assert_allclose(out["score"].numpy(), [1.25, 2.0, 0.0])
    np.testing.assert_allclose(out["history_contributions"].numpy()[0], [0.0, 0.25, -0.5])
    np.testing.assert_allclose(out["attribute_contributions"].numpy()[0], [1.0])
    np.testing.assert_allclose(out["history_contributions"].numpy()[2], [0.0, 0.0, 0.0])
    # prior_column: the item embedding's last coordinate is the popularity prior's part (0 for unknown items).
    np.testing.assert_allclose(out["popularity_prior"].numpy(), [0.0, 1.0, 0.0])


def test_saved_explain_signature_with_a_repeat_penalty_scores_as_recommend_ranks(tmp_path):
    from tests.explain.conftest import build_recommender
    from tfrec.explain.explainer import Explainer

    from tfrec.models.recommender import Recommender

    rec, data, split = build_recommender("mean", fit=False, repeat_penalty=0.5)
    rec.model.set_popularity_prior(split.train, 2.0, 5)  # and a popularity prior with some weight
    rec = Recommender(rec.model, rec.query_features, data.items, rec.text_embeddings, rec.known)
    ex = Explainer(rec, split.train)
    query_model, spec, _, _ = hybrid_serving_parts(rec.model, rec.query_features)
    path = export_retrieval(query_model, spec, rec.item_ids, rec.item_embeddings, k=5, root=tmp_path, name="rp",
                            explainer=hybrid_explainer(rec.model, rec.query_features, rec.item_ids,
                                                       rec.item_embeddings))
    sig = tf.saved_model.load(path).signatures["explain"]
    ts = int(split.val["timestamp"].max()) + 1
    user = split.val["user_id"].astype(str).iloc[-1]
    feats = ex.features(user, ts)
    hist = [h for h in feats["history"][0] if h != ""]
    items = [hist[-1], next(i for i in rec.item_ids if i not in hist)]
    req = {k: tf.constant(np.repeat(v, 2, axis=0)) for k, v in feats.items()}
    out = sig(**req, item_ids=tf.constant(items))
    ranked = rec.recommend(user, k=len(rec.item_ids), timestamp=ts, exclude_seen=False).set_index("item_id")
    want = ex.attribute(feats, items)
    for b, item in enumerate(items):
        np.testing.assert_allclose(out["score"].numpy()[b], float(ranked.loc[item, "score"]), atol=1e-5)
        np.testing.assert_allclose(out["history_contributions"].numpy()[b], want["leave_one_out"][b], atol=1e-5)
        np.testing.assert_allclose(out["attribute_contributions"].numpy()[b], want["occlusion"][b], atol=1e-5)
    np.testing.assert_allclose(out["popularity_prior"].numpy(), want["popularity_prior"], atol=1e-6)
    assert want["popularity_prior"].any()
    plain = float(rec.query_embedding(user, ts) @ rec.item_embeddings[rec._index.get_loc(items[0])])
    np.testing.assert_allclose(out["score"].numpy()[0], plain - 0.5, atol=1e-5)  # the repeat, penalised


def test_explain_item_ids_input_name_is_reserved():
    ex = QueryExplainer(lambda f: tf.zeros([tf.shape(f["history"])[0], 2]), ["x"], [[1.0, 0.0]])
    spec = {"item_ids": tf.TensorSpec([None], tf.string), "history": tf.TensorSpec([None, None], tf.string)}
    with pytest.raises(ConfigError, match="may not name a feature 'item_ids'"):
        RetrievalModule(lambda f: tf.zeros([tf.shape(f["history"])[0], 2]), spec, ["x"], [[1.0, 0.0]],
                        explainer=ex)


@pytest.mark.parametrize("index", ["brute_force", "kmeans"])
def test_an_export_saves_the_item_matrix_once_and_explains_from_the_index(tiny, tmp_path, index):
    """`explain` reads the index's variable (k-means keeps its rows in partition order), not a copy of its
    own: the checkpoint has one variable of the catalogue matrix's shape, and the scores are still q . v."""
    rec, data, split, ex = tiny
    qf = rec.query_features
    query_model, spec, _, _ = hybrid_serving_parts(rec.model, qf)
    explainer = hybrid_explainer(rec.model, qf, rec.item_ids, rec.item_embeddings)
    params = {"partitions": 4, "probes": 4} if index == "kmeans" else None
    path = export_retrieval(query_model, spec, rec.item_ids, rec.item_embeddings, explainer=explainer, k=5,
                            index=index, index_params=params, root=tmp_path, name=index)
    shapes = [tuple(s) for _, s in tf.train.list_variables(str(pathlib.Path(path) / "variables" / "variables"))]
    assert shapes.count(tuple(rec.item_embeddings.shape)) == 1
    assert (len(rec.item_ids) + 1, rec.item_embeddings.shape[1]) not in shapes  # the explainer's old padded copy
    sig = tf.saved_model.load(path).signatures["explain"]
    ts = int(split.val["timestamp"].max()) + 1
    user = split.val["user_id"].astype(str).iloc[-1]
    feats = ex.features(user, ts)
    items = [str(i) for i in rec.item_ids[::7]] + ["no-such-item"]
    req = {k: tf.constant(np.repeat(v, len(items), axis=0)) for k, v in feats.items()}
    out = sig(**req, item_ids=tf.constant(items))
    q = rec.query_embedding(user, ts)
    want = [float(q @ rec.item_embeddings[list(rec.item_ids).index(i)]) for i in items[:-1]] + [0.0]
    np.testing.assert_allclose(out["score"].numpy(), want, atol=1e-5)
    other = hybrid_explainer(rec.model, qf, rec.item_ids, rec.item_embeddings + 1.0)
    with pytest.raises(ConfigError, match="item vectors are not the index's"):
        RetrievalModule(query_model, spec, rec.item_ids, rec.item_embeddings, explainer=other)
