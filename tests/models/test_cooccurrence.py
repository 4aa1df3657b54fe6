"""The co-occurrence block (`set_cooccurrence`): every item also scores w x EASE's
item-item scores from the user's known items, checked against an independent EASE
(one ridge regression per item, without that item) and through a SavedModel."""
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.models.worlds import cold_items_world, seeded_hybrid
from tfrec.config import ModelConfig
from tfrec.errors import ConfigError
from tfrec.evaluation.baselines.ease import ease_weights
from tfrec.models.cooccurrence import factorise
from tfrec.models.scoring import HybridScorer
from tfrec.models.text_profile import PROFILE_FEATURE


@pytest.fixture(scope="module")
def world():
    return cold_items_world()


def _ridge_ease(x, l2):
    """Naive EASE: column j of B is the ridge regression of item j's column on every
    other item's (B[j, j] = 0), solved one column at a time."""
    n = x.shape[1]
    b = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        a = x[:, others]
        b[others, j] = np.linalg.solve(a.T @ a + l2 * np.eye(n - 1), a.T @ x[:, j])
    return b


def _user_item(interactions, item_ids):
    """0/1 users x items matrix over `item_ids` (users in order of appearance)."""
    ia = interactions[interactions["item_id"].astype(str).isin(item_ids)]
    users = pd.factorize(ia["user_id"].astype(str))[0]
    x = np.zeros((users.max() + 1, len(item_ids)))
    x[users, pd.Index(item_ids).get_indexer(ia["item_id"].astype(str))] = 1.0
    return x


def test_ease_weights_equal_one_ridge_regression_per_item():
    rng = np.random.default_rng(0)
    x = (rng.random((30, 9)) < 0.3).astype(float)
    np.testing.assert_allclose(ease_weights(x, 5.0), _ridge_ease(x, 5.0), atol=1e-10)
    b = _ridge_ease(x, 5.0)
    p, q = factorise(b, 9)  # full rank: B itself
    np.testing.assert_allclose(p @ q.T, b, atol=1e-10)
    p, q = factorise(b, 3)  # rank 3: the error is the discarded singular values (Eckart-Young)
    s = np.linalg.svd(b, compute_uv=False)
    assert np.linalg.norm(b - p @ q.T) == pytest.approx(np.sqrt((s[3:] ** 2).sum()), rel=1e-9)
    assert factorise(b, 50)[0].shape == (9, 9)  # a rank above the item count: all of it


def test_scores_gain_w_times_ease_from_the_whole_known_history(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    ids = [str(i) for i in cat.item_ids]
    last = split.train.groupby("user_id")["timestamp"].max().sort_index()
    ev = (last.loc[split.train["user_id"].value_counts().index[:6]] + 1).reset_index()
    ev.loc[len(ev)] = [ev["user_id"][0], int(split.train["timestamp"].median())]  # one user mid-way
    assert split.train.duplicated(["user_id", "item_id"]).any()  # repeated items: each counts once, as in EASE
    before = HybridScorer(model, qf, split.train, ids).score_queries(ev)
    model.set_cooccurrence(split.train, 0.8, l2=3.0, rank=len(ids))  # full rank: EASE exactly
    try:
        scorer = HybridScorer(model, qf, split.train, ids)
        got = scorer.score_queries(ev)
        feats = scorer.features(ev)
        assert feats[PROFILE_FEATURE].shape[1] == 1000 and feats["history"].shape[1] == 4
        b = _ridge_ease(_user_item(split.train, ids), 3.0)
        for r, (user, ts) in enumerate(zip(ev["user_id"].astype(str), ev["timestamp"])):
            mine = split.train[(split.train["user_id"].astype(str) == user) & (split.train["timestamp"] < ts)]
            known = np.isin(ids, mine["item_id"].astype(str)).astype(float)
            np.testing.assert_allclose(got[r], before[r] + 0.8 * known @ b, atol=1e-4)
        # Held-out (cold) items have no interactions, so no co-occurrence: their scores do not move.
        cold = [ids.index(i) for i in set(ids) - set(split.train["item_id"].astype(str))]
        assert cold and np.allclose(got[:, cold], before[:, cold], atol=1e-5)
    finally:
        model.set_cooccurrence()
    assert model.cooccurrence is None
    np.testing.assert_allclose(HybridScorer(model, qf, split.train, ids).score_queries(ev), before, atol=1e-6)


def test_empty_unknown_and_new_ids_give_zero_blocks(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    model.set_cooccurrence(split.train, 1.0, rank=5)
    d = model.item_tower.output_dim
    assert model.block_columns("cooccurrence") == (d, d + 5) and model.block_columns("text_profile") is None
    feats = qf.build(split.test.head(2), context=split.train)
    feats["history"] = np.array([[""] * 4, ["", "", "no-such-item", ""]], dtype=object)
    q = model.query_embedding({k: tf.constant(v) for k, v in feats.items()}).numpy()
    assert q.shape[1] == d + 5
    np.testing.assert_array_equal(q[:, d:], 0.0)
    v = model.item_embeddings(tf.constant(["never-seen", ""])).numpy()
    np.testing.assert_array_equal(v[:, d:], 0.0)


def test_settings_are_checked(world, monkeypatch):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    for kw in ({"weight": -1.0}, {"weight": 1.0, "l2": 0.0}, {"weight": 1.0, "rank": 0}):
        with pytest.raises(ConfigError, match="weight > 0, an l2 > 0, a rank >= 1"):
            model.set_cooccurrence(split.train, **kw)
    for bad, message in (({"cooccurrence": (-1.0,)}, "cooccurrence"), ({"cooccurrence": ()}, "cooccurrence"),
                         ({"cooccurrence_l2": 0.0}, "cooccurrence_l2"),
                         ({"cooccurrence_rank": 0}, "cooccurrence_rank")):
        with pytest.raises(ConfigError, match=message):
            ModelConfig(**bad)
    import tfrec.models.cooccurrence as co

    monkeypatch.setattr(co, "MAX_ITEMS", 10)
    with pytest.raises(ConfigError, match=r"too large \(at most 10 items\).*--model.cooccurrence=0"):
        model.set_cooccurrence(split.train, 1.0)


def test_the_block_needs_a_real_gain_over_weight_zero(world, monkeypatch):
    import tfrec.cli.retrieval_stage as stage
    from tfrec.models.scoring import FullCatalogueValidation

    data, split, cat, text, qf = world
    cfg = ModelConfig(embedding_dim=8, cooccurrence=(0.0, 0.5, 4.0), cooccurrence_l2=3.0, cooccurrence_rank=8)
    validation = FullCatalogueValidation(qf, split.train, split.val, cat, k=20, log=lambda *a: None)
    monkeypatch.setattr(stage, "COOCCURRENCE_MIN_GAIN", -1.0)  # any weight may win: the argmax
    model = seeded_hybrid(world)
    out = stage.tune_cooccurrence(model, cfg, split.train, validation, log=lambda *a: None)
    argmax = max(out["trials"], key=lambda t: t["val_ndcg@10"])
    assert out["weight"] == argmax["weight"] and argmax["weight"] > 0  # this world gains from the block
    monkeypatch.setattr(stage, "COOCCURRENCE_MIN_GAIN", 1.0)  # no gain is large enough: off
    out = stage.tune_cooccurrence(model, cfg, split.train, validation, log=lambda *a: None)
    assert out["weight"] == 0.0 and model.cooccurrence is None


def test_tuning_picks_the_best_validation_weight_and_matches_the_real_block(world):
    from tfrec.cli.retrieval_stage import tune_cooccurrence, with_popularity_prior
    from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking
    from tfrec.models.scoring import FullCatalogueValidation

    data, split, cat, text, qf = world
    cfg = ModelConfig(embedding_dim=8, cooccurrence=(0.0, 0.5, 4.0), cooccurrence_l2=3.0, cooccurrence_rank=8)
    model = seeded_hybrid(world)
    validation = FullCatalogueValidation(qf, split.train, split.val, cat, k=20, log=lambda *a: None)
    lines = []
    out = tune_cooccurrence(model, cfg, split.train, validation, log=lines.append)
    assert [t["weight"] for t in out["trials"]] == [0.0, 0.5, 4.0] and out["metric"] == "ndcg@10"
    best = max(out["trials"], key=lambda t: (t["val_ndcg@10"], -t["weight"]))
    if best["val_ndcg@10"] - out["trials"][0]["val_ndcg@10"] < 0.001:  # within noise of weight 0: off
        best = out["trials"][0]
    assert out["weight"] == best["weight"] and "co-occurrence block chosen" in lines[-1]
    assert (model.cooccurrence is None) == (best["weight"] == 0)
    # Independently: each weight set on the model for real, the metrics recomputed by the plain evaluator.
    for trial in out["trials"]:
        model.set_cooccurrence(split.train, trial["weight"], 3.0, 8)
        users, items, _ = validation.vectors(model)
        res = evaluate_ranking(embedding_scorer(users, items), validation.users, validation.val_matrix,
                               exclude=validation.train_matrix, ks=(10, 20), return_topk=False).mean()
        for name in ("ndcg@10", "recall@20"):
            assert res[name] == pytest.approx(trial[f"val_{name}"], abs=1e-6), (name, trial)
    # With the popularity prior each weight is scored with its best prior: the same numbers as
    # setting the block for real and choosing the prior on it.
    from tfrec.cli.retrieval_stage import tune_popularity_prior

    cfg = ModelConfig(embedding_dim=8, cooccurrence=(0.0, 0.5, 4.0), cooccurrence_l2=3.0, cooccurrence_rank=8,
                      popularity_prior=(0.0, 1.0, 8.0), popularity_prior_days=(2, 30))
    model = seeded_hybrid(world, popularity_prior=cfg.popularity_prior, popularity_prior_days=cfg.popularity_prior_days)
    out = tune_cooccurrence(model, cfg, split.train, validation, log=lines.append)
    assert "each weight with its best popularity prior" in lines[-1]
    chosen = model.cooccurrence.weight if model.cooccurrence is not None else 0.0
    best = max(out["trials"], key=lambda t: t["val_ndcg@10"])
    assert chosen == out["weight"] == (best["weight"] if best["val_ndcg@10"] >= out["trials"][0]["val_ndcg@10"] + 0.001
                                       else 0.0)
    for trial in out["trials"]:
        model.set_cooccurrence(split.train, trial["weight"], 3.0, 8)
        prior = tune_popularity_prior(model, cfg, split.train, validation, log=lambda *a: None)
        best = max(prior["trials"], key=lambda t: t["val_ndcg@10"])
        assert [prior["weight"], prior["days"]] == trial["prior"]
        assert best["val_ndcg@10"] == pytest.approx(trial["val_ndcg@10"], abs=1e-6)
    # Test and serving: EASE refitted on everything known, the weight kept.
    model.set_cooccurrence(split.train, 0.5, 3.0, 8)
    with_popularity_prior(model, split.train, split.val)
    known = pd.concat([split.train, split.val], ignore_index=True)
    ids = [str(i) for i in cat.item_ids]
    p, q = factorise(_ridge_ease(_user_item(known, ids), 3.0), 8)
    a, z = model.block_columns("cooccurrence")  # after the tower's and the prior's columns
    assert (a, z) == (model.item_tower.output_dim + 1, model.item_tower.output_dim + 9)
    got = model.item_embeddings(tf.constant(ids)).numpy()[:, a:z]  # 0.5 Q
    np.testing.assert_allclose(model.cooccurrence.query_rows.numpy()[:-1] @ got.T, 0.5 * p @ q.T, atol=1e-4)
    # Off: the grid (0,), no validation, or a catalogue too large (the last two say so).
    assert tune_cooccurrence(model, ModelConfig(cooccurrence=(0.0,)), split.train, validation, lines.append) == \
        {"weight": 0.0, "trials": []}
    assert tune_cooccurrence(model, cfg, split.train, None, lines.append)["weight"] == 0.0
    assert lines[-1] == "train: co-occurrence block off (no validation to choose it on)"


def test_a_saved_model_serves_the_block_and_explains_it(tmp_path):
    """The exported query model reads the block's window from one `history` input of any
    length; `encode_items` gives a new item a zero block and a catalogue item its own;
    `explain` reports the block's part; `Explainer` reports the same in memory."""
    from tests.models.worlds import tiny_bert_world
    from tfrec.explain.explainer import Explainer
    from tfrec.explain.serving import hybrid_explainer
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.factory import build_hybrid
    from tfrec.models.recommender import Recommender
    from tfrec.models.serving import hybrid_serving_parts

    data, split, cat, enc, text, qf = tiny_bert_world(40, 30, 1200, data_seed=3, history_length=3)
    tf.keras.utils.set_random_seed(0)
    model = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf)
    model.set_popularity_prior(split.train, 0.5, 0)
    model.set_cooccurrence(split.train, 2.0, l2=2.0, rank=6, length=12)
    query_model, spec, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, enc)
    ids = [str(i) for i in cat.item_ids]
    emb = model.item_embeddings(tf.constant(ids)).numpy()
    d = model.item_tower.output_dim
    assert emb.shape == (len(ids), d + 1 + 6)
    path = export_retrieval(query_model, spec, ids, emb, item_encoder=item_encoder, item_encoder_spec=item_spec,
                            explainer=hybrid_explainer(model, qf, ids, emb), root=tmp_path, name="co", k=5)
    loaded = tf.saved_model.load(path)
    user = str(split.train["user_id"].value_counts().index[0])
    mine = split.train[split.train["user_id"].astype(str) == user].sort_values("timestamp", kind="mergesort")
    history = mine["item_id"].astype(str).tolist()
    assert len(history) > 12
    ts = int(mine["timestamp"].max()) + 1
    request = {"user_id": tf.constant([user]), "timestamp": tf.constant([ts], tf.int64),
               "history": tf.constant([history])}
    request.update({k: tf.constant(v) for k, v in qf.attributes([user]).items()})
    got = loaded.signatures["encode_query"](**request)["embedding"].numpy()
    want = HybridScorer(model, qf, split.train, ids).query_embeddings(pd.DataFrame({"user_id": [user],
                                                                                    "timestamp": [ts]}))
    np.testing.assert_allclose(got, want, atol=1e-5)
    # The query block: B's factor P summed over the newest 12 known items (B from the naive EASE).
    b = _ridge_ease(_user_item(split.train, ids), 2.0)
    known12 = np.isin(ids, history[-12:]).astype(float)
    np.testing.assert_allclose(got[0, d + 1:] @ emb[:, d + 1:].T, 2.0 * known12 @ factorise(b, 6)[0]
                               @ factorise(b, 6)[1].T, atol=1e-4)
    item = ids[int(np.argmax(got[0, d + 1:] @ emb[:, d + 1:].T))]
    out = loaded.signatures["explain"](**request, item_ids=tf.constant([item]))
    row = ids.index(item)
    np.testing.assert_allclose(out["score"].numpy(), got @ emb[row], atol=1e-5)
    np.testing.assert_allclose(out["cooccurrence"].numpy(), [got[0, d + 1:] @ emb[row, d + 1:]], atol=1e-5)
    np.testing.assert_allclose(out["popularity_prior"].numpy(), [emb[row, d]], atol=1e-6)
    assert float(out["cooccurrence"].numpy()[0]) > 1e-3 and float(out["text_profile"].numpy()[0]) == 0.0
    # New items: a zero block; catalogue items re-encoded: their own.
    items = data.items.iloc[:3]
    raw = {}
    for name, s in item_spec.items():
        col = (pd.Series([f"new-{i}" for i in range(2)] + [str(items["item_id"].iloc[2])]) if name == "item_id"
               else items[name])
        raw[name] = tf.constant(col.astype(str).tolist() if s.dtype == tf.string else col.astype(np.float32).to_numpy())
    new = loaded.signatures["encode_items"](**raw)["embedding"].numpy()
    np.testing.assert_array_equal(new[:2, d + 1:], 0.0)
    np.testing.assert_allclose(new[2, d + 1:], emb[ids.index(str(items["item_id"].iloc[2])), d + 1:], atol=1e-6)
    # In memory: the Explainer's part equals the served one, and the sentence cites it when it is most of the score.
    rec = Recommender(model, qf, data.items, text, split.train)
    e = Explainer(rec, split.train).explain(user, item, timestamp=ts, history=history)
    assert e.cooccurrence == pytest.approx(float(out["cooccurrence"].numpy()[0]), abs=1e-5)
    assert e.score == pytest.approx(float(out["score"].numpy()[0]), abs=1e-5)
    from tfrec.cli.explain import format_explanation

    assert "(co-occurrence block) add +" in format_explanation(e)
