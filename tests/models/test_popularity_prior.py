"""The retrieval model's query-time popularity prior: the extra retrieval-space
dimension against a naive pandas count, its choice on validation, config errors."""
import tfrec  # noqa: F401  (before TensorFlow: sets TF_USE_LEGACY_KERAS)

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.models.worlds import seeded_hybrid, synthetic_world
from tfrec.config import ModelConfig
from tfrec.errors import ConfigError

DAY = 86400


@pytest.fixture(scope="module")
def world():
    return synthetic_world(50, 30, 1200, data_seed=3, split="temporal", text_dim=6, history_length=4)


def _naive_counts(interactions, days, ids):
    """Each id's interactions in the `days` days before the latest one, by pandas."""
    now = interactions["timestamp"].max()
    recent = interactions[interactions["timestamp"] > now - days * DAY]
    return recent["item_id"].astype(str).value_counts().reindex(ids, fill_value=0).to_numpy(np.float64)


def test_prior_is_one_more_dimension_scoring_w_log1p_recent_count(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world, popularity_prior=(0.0, 2.0))
    assert model.has_popularity_prior and model.popularity_prior == (0.0, 14)  # off until set
    ids = np.asarray(cat.item_ids).astype(str)
    feats = {k: tf.constant(v) for k, v in qf.build(split.val.head(5), context=split.train).items()}
    model.set_popularity_prior(split.train, 2.0, 3)
    v = model.item_embeddings(tf.constant(ids)).numpy()  # (I, 9)
    q = model.query_embedding(feats).numpy()  # (5, 9)
    assert v.shape == (len(ids), 9) and q.shape == (5, 9)
    np.testing.assert_allclose(v[:, :8], model.item_vectors(tf.constant(ids)).numpy(), atol=1e-6)
    np.testing.assert_allclose(q[:, :8], model.query_vector(feats).numpy(), atol=1e-6)
    np.testing.assert_array_equal(q[:, 8], 1.0)
    counts = _naive_counts(split.train, 3, ids)
    assert 0 < (counts > 0).sum() < len(ids)  # some items inside the window, some outside
    # score / T = cos / T + w * log(1 + n)
    want = q[:, :8] @ v[:, :8].T / model.temperature + 2.0 * np.log1p(counts)[None, :]
    np.testing.assert_allclose(q @ v.T / model.temperature, want, rtol=1e-5, atol=1e-4)
    # Unknown ids count nothing; refilling replaces the counts; weight 0 is the towers' score.
    assert model.item_embeddings(tf.constant(["no-such-item"])).numpy()[0, 8] == 0.0
    everything = pd.concat([split.train, split.val, split.test])
    model.set_popularity_prior(everything)  # weight and days kept
    assert model.popularity_prior == (2.0, 3)
    got = model.item_embeddings(tf.constant(ids)).numpy()[:, 8] / model.temperature
    np.testing.assert_allclose(got, 2.0 * np.log1p(_naive_counts(everything, 3, ids)), rtol=1e-5)
    model.set_popularity_prior(everything, 1.5, 0)  # 0 days: all-time counts
    got = model.item_embeddings(tf.constant(ids)).numpy()[:, 8] / model.temperature
    all_time = everything["item_id"].astype(str).value_counts().reindex(ids, fill_value=0).to_numpy(np.float64)
    np.testing.assert_allclose(got, 1.5 * np.log1p(all_time), rtol=1e-5)
    model.set_popularity_prior(everything, 0.0)
    assert not model.item_embeddings(tf.constant(ids)).numpy()[:, 8].any()
    with pytest.raises(ValueError, match="weight >= 0 and days >= 0"):
        model.set_popularity_prior(everything, -1.0)


def test_model_without_the_prior_keeps_the_towers_space(world):
    model = seeded_hybrid(world)  # popularity_prior=(0.0,)
    assert not model.has_popularity_prior
    assert model.item_embeddings(tf.constant(["i1"])).shape[-1] == 8
    with pytest.raises(ValueError, match="popularity_prior=True"):
        model.set_popularity_prior(world[1].train)


@pytest.mark.parametrize("metric", ["ndcg@10", "hit_rate@100", "mrr@10"])  # tfrec's default, tfrs_tutorial, RecBole
def test_tuning_picks_the_best_validation_pair_and_matches_the_real_prior(world, metric):
    from tfrec.cli.retrieval_stage import tune_popularity_prior
    from tfrec.models.scoring import FullCatalogueValidation

    data, split, cat, text, qf = world
    cfg = ModelConfig(embedding_dim=8, popularity_prior=(0.0, 1.0, 8.0), popularity_prior_days=(2, 30))
    model = seeded_hybrid(world, popularity_prior=cfg.popularity_prior, popularity_prior_days=cfg.popularity_prior_days)
    validation = FullCatalogueValidation(qf, split.train, split.val, cat, k=20, log=lambda *a: None,
                                         select_metric=metric)
    out = tune_popularity_prior(model, cfg, split.train, validation, log=lambda *a: None)
    assert out["metric"] == metric
    pairs = [(t["weight"], t["days"]) for t in out["trials"]]
    assert pairs == [(0.0, 2), (1.0, 2), (8.0, 2), (1.0, 30), (8.0, 30)]  # w = 0 once
    best = max(out["trials"], key=lambda t: t[f"val_{metric}"])  # the first of equals, as the tuner
    assert (out["weight"], out["days"]) == (best["weight"], best["days"]) == model.popularity_prior
    # Independently: each pair set on the model for real (its embeddings' extra dimension),
    # the validation metrics recomputed from those embeddings by the plain evaluator.
    from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking

    for trial in out["trials"]:
        model.set_popularity_prior(split.train, trial["weight"], trial["days"])
        users, items, _ = validation.vectors(model)  # (no repeat penalty here: zero offsets)
        res = evaluate_ranking(embedding_scorer(users, items), validation.users, validation.val_matrix,
                               exclude=validation.train_matrix, ks=(10, 20, 100), return_topk=False).mean()
        for name in ("ndcg@10", "recall@20", metric):
            assert res[name] == pytest.approx(trial[f"val_{name}"], abs=1e-6), (name, trial)
    # Without validation the prior stays off.
    assert tune_popularity_prior(model, cfg, split.train, None, log=lambda *a: None)["weight"] == 0.0
    assert model.popularity_prior[0] == 0.0


@pytest.mark.parametrize("kw, message", [
    ({"popularity_prior": (-1.0,)}, "weights >= 0"),
    ({"popularity_prior": ()}, "weights >= 0"),
    ({"popularity_prior_days": (-1, 7)}, "days >= 0"),
])
def test_bad_prior_config_is_explained(kw, message):
    with pytest.raises(ConfigError, match=message):
        ModelConfig(**kw)


def test_validation_computes_its_selection_metric_at_its_cutoff(world):
    from tfrec.models.scoring import FullCatalogueValidation

    data, split, cat, text, qf = world
    for metric, ks in [("ndcg@10", (10, 20)), ("hit_rate@100", (10, 20, 100)), ("mrr@10", (10, 20)), ("auc", (10, 20))]:
        v = FullCatalogueValidation(qf, split.train, split.val, cat, k=20, log=lambda *a: None, select_metric=metric)
        assert v.ks == ks, metric


def test_run_validation_selects_on_the_protocols_metric(world):
    """`tfrec run`'s validation (what the prior is chosen on) carries the named
    protocol's selection metric, the one its baselines are tuned on."""
    from tfrec.cli.retrieval_stage import retrieval_validation
    from tfrec.config import load_config
    from tfrec.evaluation.protocols import PROTOCOLS

    data, split, cat, text, qf = world
    for name, want in [(None, "ndcg@10"), *((p, PROTOCOLS[p].select_metric) for p in PROTOCOLS)]:
        cfg = load_config(None, [f"--eval.protocol={name}"] if name else [])
        v = retrieval_validation(cfg, qf, split.train, split.val, cat, log=lambda *a: None)
        assert v.select_metric == want, name
    assert PROTOCOLS["tfrs_tutorial"].select_metric == "hit_rate@100"


def test_a_recommender_follows_the_model_and_an_old_scorer_says_it_is_stale(world):
    """After `model.set_popularity_prior` (e.g. refreshed with today's interactions) a Recommender
    scores with the new prior at its next request; a HybridScorer built before raises a clear error
    instead of scoring with the old item vectors. Reference: the model's own embeddings, by numpy."""
    from tfrec.models.recommender import Recommender
    from tfrec.models.scoring import HybridScorer

    data, split, cat, text, qf = world
    model = seeded_hybrid(world, popularity_prior=(0.0, 2.0))
    model.set_popularity_prior(split.train, 0.0, 3)
    rec = Recommender(model, qf, data.items, text, split.train)
    old = HybridScorer(model, qf, split.train, cat.item_ids)
    before = rec.recommend("u1", k=5)
    everything = pd.concat([split.train, split.val, split.test])
    model.set_popularity_prior(everything, 4.0, 30)
    assert old.stale and not HybridScorer(model, qf, split.train, cat.item_ids).stale
    with pytest.raises(ConfigError, match="changed after this HybridScorer was built.*build a new HybridScorer"):
        old.score_queries(split.val.head(2))
    after = rec.recommend("u1", k=5)
    ids = np.asarray(rec.item_ids)
    v = model.item_embeddings(tf.constant(ids)).numpy()
    q = rec.query_embedding("u1")
    seen = split.train.loc[split.train["user_id"] == "u1", "item_id"].astype(str)
    want = pd.Series(v @ q, index=ids).drop(seen).sort_values(ascending=False, kind="stable").head(5)
    assert after["item_id"].tolist() == want.index.tolist()
    np.testing.assert_allclose(after["score"].to_numpy(), want.to_numpy(), rtol=1e-5)
    assert after["item_id"].tolist() != before["item_id"].tolist()  # the prior (w 4) did move the list


def test_observe_counts_new_interactions_in_the_prior(world):
    """After `Recommender.observe(..., popularity=True)` the prior counts the observed interactions
    (weight and window kept): checked against a pandas count over everything known, as in the
    first test; without it the prior stays as it was."""
    from tfrec.models.recommender import Recommender

    data, split, cat, text, qf = world
    model = seeded_hybrid(world, popularity_prior=(0.0, 2.0))
    model.set_popularity_prior(split.train, 2.0, 3)
    rec = Recommender(model, qf, data.items, text, split.train)
    t = int(split.train["timestamp"].max())
    new = pd.DataFrame({"user_id": ["u1", "u2", "u3"], "item_id": ["i5", "i5", "i7"], "timestamp": [t + 5, t + DAY, t + 2 * DAY]})
    before = rec.item_embeddings[:, -1].copy()
    rec.observe(new.head(1))  # the default: histories and seen items only, the prior as it was
    np.testing.assert_array_equal(rec.item_embeddings[:, -1], before)
    rec.observe(new.tail(2), popularity=True)
    ids = np.asarray(cat.item_ids).astype(str)
    got = rec.item_embeddings[:, -1] / model.temperature  # the prior's coordinate, as the recommender scores it
    want = 2.0 * np.log1p(_naive_counts(pd.concat([split.train, new]), 3, ids))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert model.popularity_prior == (2.0, 3)
    rec.observe(pd.DataFrame({"user_id": ["u1"], "item_id": ["i9"], "timestamp": [t + 3 * DAY]}))
    np.testing.assert_allclose(rec.item_embeddings[:, -1] / model.temperature, want, rtol=1e-5, atol=1e-6)
