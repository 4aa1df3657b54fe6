"""Ranking stage: losses against numpy, hard negatives, two-stage scores, business
rules, rating baselines against closed forms, joint vs separate training."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tests.two_devices import run_on_two_cpus
from tfrec.config import ModelConfig, RankingConfig
from tfrec.data.history import history_values
from tfrec.data.pipeline import make_dataset
from tfrec.data.splits import make_split
from tfrec.data.synthetic import generate
from tfrec.errors import ConfigError, DataError
from tfrec.evaluation.rating import BiasBaseline, GlobalMean, evaluate_ratings, mae, rmse
from tfrec.features.catalogue import Catalogue
from tfrec.features.query_features import QueryFeatures
from tfrec.models.factory import build_hybrid
from tfrec.models.negatives import hard_negatives
from tfrec.models.ranking import build_ranker
from tfrec.models.recommender import Recommender
from tfrec.models.scoring import HybridScorer
from tfrec.models.two_stage import BELOW, TwoStageScorer, rank_candidates
from tfrec.text.cache import encode_texts
from tfrec.text.encoder import BertTextEncoder
from tfrec.text.template import item_texts

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world():
    data = generate(n_users=80, n_items=60, n_interactions=3000, seed=11)
    ia = data.interactions.copy()
    ia["rating"] = (np.random.default_rng(0).integers(1, 6, len(ia))).astype(float)
    split = make_split(ia, "temporal")
    cat = Catalogue.fit(data.items, split.train, ia, data.users)
    encoder = BertTextEncoder("tiny", sequence_length=16)
    text = encode_texts(encoder, item_texts(data.items), progress=False)
    qf = QueryFeatures.fit(split.train, data.users, 5)
    tf.keras.utils.set_random_seed(0)
    retrieval = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf)
    retrieval.compile(tf.keras.optimizers.Adam(0.01))
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    retrieval.fit(make_dataset(feats, 256), epochs=1, verbose=0)
    return data, split, cat, text, qf, retrieval, encoder


def _ranker(world, **kw):
    data, split, cat, text, qf, retrieval, _ = world
    cfg = dataclasses.replace(RankingConfig(embedding_dim=8, deep_units=(16,)), **kw)
    return build_ranker(cfg, ModelConfig(embedding_dim=8), cat, data.items, text, qf, retrieval=retrieval,
                        rating_mean=3.0, seed=0, timestamps=data.interactions["timestamp"])


def _batch(world, n=6, m=3):
    data, split, cat, text, qf, retrieval, _ = world
    ev = split.train.iloc[100:100 + n]
    feats = qf.build(ev, context=split.train)
    feats["item_id"] = ev["item_id"].astype(str).to_numpy(dtype=object)
    feats["rating"] = ev["rating"].to_numpy(np.float32)
    items = np.asarray(cat.item_ids, dtype=object)
    neg = items[np.random.default_rng(1).integers(0, len(items), (n, m))]
    neg[0, 0] = feats["item_id"][0]  # a negative equal to the positive: must be ignored
    neg[1, 1] = ""  # padding: ignored
    feats["negatives"] = neg
    return {k: tf.constant(v) for k, v in feats.items()}


def _softmax_ce(logits, valid):
    z = np.where(valid, logits, -np.inf)
    return float(np.sum(np.log(np.sum(np.exp(z - z.max(1, keepdims=True)), 1)) + z.max(1) - z[:, 0]))


def test_listwise_loss_is_softmax_cross_entropy_over_positive_and_valid_negatives(world):
    ranker = _ranker(world, num_random_negatives=0, rating_weight=0.0)
    feats = _batch(world)
    cands = tf.concat([feats["item_id"][:, None], feats["negatives"]], axis=1)
    logits = ranker.score(feats, cands)["relevance"].numpy()
    c = cands.numpy()
    valid = (c != c[:, :1]) & (c != b"")
    valid[:, 0] = True
    want = _softmax_ce(logits.astype(np.float64), valid)
    got = float(ranker.compute_loss(feats))
    assert got == pytest.approx(want, rel=1e-4)


def test_bce_and_rating_losses_match_numpy(world):
    ranker = _ranker(world, loss="bce", num_random_negatives=0, rating_weight=0.5)
    feats = _batch(world)
    cands = tf.concat([feats["item_id"][:, None], feats["negatives"]], axis=1)
    out = ranker.score(feats, cands)
    x, r = out["relevance"].numpy().astype(np.float64), out["rating"].numpy()[:, 0].astype(np.float64)
    c = cands.numpy()
    valid = (c != c[:, :1]) & (c != b"")
    valid[:, 0] = True
    y = np.zeros_like(x)
    y[:, 0] = 1
    bce = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    mse = np.sum((feats["rating"].numpy() - r) ** 2)
    # Keras' sum reduction of BinaryCrossentropy with sample weights: sum(w * bce).
    want = float(np.sum(bce * valid) + 0.5 * mse)
    assert float(ranker.compute_loss(feats)) == pytest.approx(want, rel=1e-4)


def test_rating_loss_needs_ratings_and_bad_loss_is_refused(world):
    with pytest.raises(ConfigError, match="ranking.loss"):
        _ranker(world, loss="pairwise")
    ranker = _ranker(world, rating_weight=1.0)
    feats = dict(_batch(world))
    del feats["rating"]
    with pytest.raises(ConfigError, match="rating"):
        ranker.compute_loss(feats)


def _set_bias(layer, vocab, values):
    """Writes `values` (dict id -> bias) into a ranker bias layer; returns the numpy lookup."""
    emb = layer.layers[1]
    table = np.zeros(emb.get_weights()[0].shape, np.float32)
    index = {str(v): k + 1 for k, v in enumerate(vocab)}  # 0 = OOV
    for key, val in values.items():
        table[index[key]] = val
    emb.set_weights([table])
    return lambda ids: np.array([[table[index.get(str(x), 0), 0] for x in row] for row in ids])


@pytest.mark.parametrize("base", ["learned", "bias"])
def test_history_rating_term_matches_numpy_on_fixed_weights(world, base):
    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world, history_ratings=True, history_rating_shrinkage=3.0, rating_base=base)
    feats = dict(_batch(world))
    cands = tf.concat([feats["item_id"][:, None], feats["negatives"]], axis=1)
    ranker.score(feats, cands)  # builds the layers
    rng = np.random.default_rng(5)
    vocab = ranker.item_bias.layers[0].get_vocabulary()[1:]  # the tables' own ids (0 = OOV)
    item_bias = _set_bias(ranker.item_bias, vocab, {v: rng.normal(0, 0.5) for v in vocab})
    users = ranker.user_bias.layers[0].get_vocabulary()[1:]
    user_bias = _set_bias(ranker.user_bias, users, {v: rng.normal(0, 0.5) for v in users})
    hist = feats["history"].numpy().astype(str)
    r = rng.integers(1, 6, hist.shape).astype(np.float32)
    r[0, -1] = 0.0  # rating unknown
    r[1, -1] = np.nan  # rating unknown
    r[hist == ""] = 4.0  # padding: ignored whatever it holds
    hist[2] = ""  # a user without history
    feats["history"] = tf.constant(hist.astype(object))
    feats["history_ratings"] = tf.constant(r)
    uids = feats["user_id"].numpy().astype(str)
    in_base = set()
    if base == "bias":  # ratings the frozen base was fitted on: the term skips them
        in_base = {(uids[3], hist[3, 0]), (uids[3], hist[3, 1]), (uids[4], hist[4, 0])}
        assert all(h != "" for _, h in in_base)
        ranker.rating_base_pairs.insert(tf.constant([f"{u}\x1f{h}" for u, h in in_base]), tf.ones(len(in_base)))
    w = np.array([0.7, -0.2, 0.3, 0.1], np.float32)
    ranker.history_rating_head.set_weights([w[:, None]])
    with_term = ranker.score(feats, cands)
    ranker.history_rating_head.set_weights([np.zeros((4, 1), np.float32)])
    without = ranker.score(feats, cands)

    # Independent: the summary by hand, row by row (mu = 3.0 from `_ranker`). With the frozen
    # bias base the deviations are also taken from the user's own b_u (not counted twice).
    want = np.zeros(len(hist))
    bj = item_bias(hist)
    bu = user_bias(feats["user_id"].numpy().astype(str)[:, None])[:, 0] if base == "bias" else np.zeros(len(hist))
    assert base == "learned" or np.abs(bu).max() > 0
    for row in range(len(hist)):
        keep = [j for j in range(hist.shape[1]) if hist[row, j] != "" and np.isfinite(r[row, j]) and r[row, j] != 0
                and (uids[row], hist[row, j]) not in in_base]
        n = len(keep)
        d = [r[row, j] - 3.0 - bj[row, j] - bu[row] for j in keep]
        std = np.std([r[row, j] for j in keep]) if n else 0.0
        s = [sum(d) / (3.0 + n), sum(d) / max(n, 1), std, np.log1p(n)]
        want[row] = float(np.dot(w, s))
    assert want[2] == 0.0 and want[0] != 0.0
    delta = with_term["rating"].numpy() - without["rating"].numpy()  # (b, c): the same per-user term on every candidate
    np.testing.assert_allclose(delta, np.repeat(want[:, None], delta.shape[1], axis=1), rtol=1e-4, atol=1e-5)
    # The relevance logit does not read the ratings; a missing feature means "none known".
    np.testing.assert_allclose(with_term["relevance"].numpy(), without["relevance"].numpy(), rtol=1e-6)
    ranker.history_rating_head.set_weights([w[:, None]])
    absent = {k: v for k, v in feats.items() if k != "history_ratings"}
    zeros = dict(feats, history_ratings=tf.zeros_like(feats["history_ratings"]))
    np.testing.assert_allclose(ranker.score(absent, cands)["rating"].numpy(),
                               ranker.score(zeros, cands)["rating"].numpy(), rtol=1e-6)


def test_rating_head_without_user_bias_has_no_user_id_bias(world):
    ranker = _ranker(world, history_ratings=True, rating_user_bias=False)
    feats = _batch(world)
    cands = tf.concat([feats["item_id"][:, None], feats["negatives"]], axis=1)
    assert ranker.score(feats, cands)["rating"].shape == cands.shape
    assert ranker.user_bias is None and not [w for w in ranker.weights if "user_bias" in w.name]
    with pytest.raises(ConfigError, match="history_rating_shrinkage"):
        _ranker(world, history_ratings=True, history_rating_shrinkage=-1.0)


def test_online_bias_reestimates_the_user_bias_from_prior_ratings():
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"user_id": rng.choice(["a", "b"], 40), "item_id": rng.choice(list("pqrst"), 40),
                          "rating": rng.integers(1, 6, 40).astype(float), "timestamp": rng.integers(0, 10, 40)})
    test = pd.DataFrame({"user_id": ["a", "c", "c", "c"], "item_id": ["p", "q", "r", "zz"],
                         "rating": [4.0, 2.0, 5.0, 3.0], "timestamp": [20, 20, 20, 21]})
    m = BiasBaseline(reg_user=2.0, reg_item=3.0).fit(train)
    ctx = pd.concat([train, test], ignore_index=True)
    got = m.predict_online(test, ctx)
    for row, (u, i, t) in enumerate(zip(test.user_id, test.item_id, test.timestamp)):
        prior = ctx[(ctx.user_id == u) & (ctx.timestamp < t)]  # strictly before: same-second events unseen
        res = sum(rr - m.mu - m.item_bias.get(ii, 0.0) for ii, rr in zip(prior.item_id, prior.rating))
        assert got[row] == pytest.approx(m.mu + res / (2.0 + len(prior)) + m.item_bias.get(i, 0.0))
    # c's first two events know nothing of c; the third sees both (same second as each other).
    assert got[1] == pytest.approx(m.mu + m.item_bias["q"])


def test_rating_stage_trains_with_history_ratings_and_reports_each_information_set(world):
    from tfrec.cli.ranking_stage import evaluate_rating_stage, train_ranker
    from tfrec.config import RunConfig, TrainConfig
    from tfrec.evaluation.rating import BiasBaseline, tune_bias

    data, split, cat, text, qf, retrieval, _ = world
    cfg = RunConfig(model=ModelConfig(embedding_dim=8), train=TrainConfig(verbose=0),
                    ranking=RankingConfig(embedding_dim=8, deep_units=(16,), epochs=1, batch_size=128,
                                          num_hard_negatives=2, candidates=20, history_ratings=True))
    logs = []
    ranker, info = train_ranker(cfg, data, split, cat, text, retrieval, qf, log=logs.append)
    assert ranker.history_ratings and "val_rating_rmse_online" in info["validation"][0]
    known = pd.concat([split.train, split.val], ignore_index=True)
    out = evaluate_rating_stage(ranker, qf, split, known, n_boot=50, log=logs.append)
    assert set(out) == {"global_mean", "user_item_bias", "tfrec ranker"}
    params, _ = tune_bias(split.train, split.val)
    test = split.test.reset_index(drop=True)
    want = rmse(test.rating, BiasBaseline(**params).fit(split.train).predict(test))
    assert out["user_item_bias"]["train_only"]["rmse"] == pytest.approx(want)
    assert {"online", "sees"} <= set(out["tfrec ranker"]) and "online" in out["user_item_bias"]
    assert out["tfrec ranker"]["online"]["rmse"] != out["tfrec ranker"]["rmse"]  # it reads the earlier test ratings
    # Without a validation split the baseline is tuned on the slice it is given (the one the
    # ranker's own rating base was tuned on), not left at its defaults.
    no_val = dataclasses.replace(split, train=known, val=split.val.iloc[:0])
    fit, val = known.iloc[: len(known) * 9 // 10], known.iloc[len(known) * 9 // 10:]
    tuned = evaluate_rating_stage(ranker, qf, no_val, known, n_boot=20, log=logs.append, tuning_parts=(fit, val))
    assert tuned["user_item_bias"]["params"] == tune_bias(fit, val)[0] != {"reg_user": 10.0, "reg_item": 25.0}
    untuned = evaluate_rating_stage(ranker, qf, no_val, known, n_boot=20, log=logs.append)
    assert untuned["user_item_bias"]["params"] == {"reg_user": 10.0, "reg_item": 25.0}
    want = rmse(test.rating, BiasBaseline(**tune_bias(fit, val)[0]).fit(known).predict(test))
    assert tuned["user_item_bias"]["rmse"] == pytest.approx(want)


def test_hard_negatives_come_from_the_retrievers_top_pool_and_skip_known_items(world):
    data, split, cat, text, qf, retrieval, _ = world
    ev = split.train.iloc[:200]
    scorer = HybridScorer(retrieval, qf, split.train, cat.item_ids)
    neg = hard_negatives(scorer, ev, cat, split.train, n=6, pool=10, seed=0)
    assert neg.shape == (200, 6)
    scores = scorer.score_queries(ev)
    known = split.train.groupby(split.train.user_id.astype(str))["item_id"].apply(lambda s: set(s.astype(str)))
    ids = np.asarray(cat.item_ids).astype(str)
    for r in range(200):
        user, own = str(ev.user_id.iloc[r]), str(ev.item_id.iloc[r])
        allowed = [i for i in np.argsort(-scores[r], kind="stable") if ids[i] not in known[user] and ids[i] != own]
        top = set(ids[allowed[:10]])  # naive: the 10 best allowed items
        assert set(neg[r]) <= top, r


def test_two_stage_scores_put_ranked_candidates_first_and_keep_retrieval_order_below(world):
    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world)
    queries = split.test.groupby("user_id").head(1).head(5).reset_index(drop=True)
    two = TwoStageScorer(retrieval, ranker, qf, split.train, cat, exclude=split.train, n_candidates=7)
    got = two.score_queries(queries)
    ret = HybridScorer(retrieval, qf, split.train, cat.item_ids)
    base = ret.score_queries(queries)
    seen = cat.matrix(split.train).toarray()[cat.user_index(queries.user_id.astype(str))] > 0
    ids = np.asarray(cat.item_ids, dtype=object)
    for r in range(len(queries)):
        allowed = np.where(~seen[r])[0]
        cand = allowed[np.argsort(-base[r, allowed], kind="stable")[:7]]  # naive top-7 unseen
        feats = ret.features(queries.iloc[r:r + 1])
        rel, _ = rank_candidates(ranker, feats, ids[cand][None, :])
        np.testing.assert_allclose(got[r, cand], rel[0], rtol=1e-5, atol=1e-5)
        others = np.setdiff1d(np.arange(len(ids)), cand)
        assert got[r, others].max() < got[r, cand].min()
        assert np.isfinite(got[r]).all() and got[r, others].max() <= rel[0].min() - 1.0 + 1e-5
        # Below the candidates, the retrieval order is kept: never reversed, and float32
        # rounding of the shifted scores ties no more neighbours than it tied in the scores.
        in_retrieval_order = got[r, others][np.argsort(-base[r, others], kind="stable")]
        assert np.all(np.diff(in_retrieval_order) <= 0)
        assert len(np.unique(got[r, others])) >= len(np.unique(base[r, others])) - 1


def test_recommend_two_stage_with_business_rules(world):
    data, split, cat, text, qf, retrieval, encoder = world
    ranker = _ranker(world)
    known = pd.concat([split.train, split.val])
    rec = Recommender(retrieval, qf, data.items, text, known, text_encoder=encoder, ranker=ranker, n_candidates=30)
    user = str(known.user_id.iloc[0])
    out = rec.recommend(user, k=8)
    assert len(out) == 8 and np.all(np.diff(out.score.to_numpy()) <= 1e-6)
    assert not set(out.item_id) & set(known.loc[known.user_id == user, "item_id"].astype(str))
    # The final order is the ranker's order over the retrieved top-30.
    retrieved = rec.recommend(user, k=30, rank=False)
    feats = rec.query_features_of(user)
    rel, _ = rank_candidates(ranker, feats, retrieved.item_id.to_numpy(dtype=object)[None, :])
    want = retrieved.item_id.to_numpy()[np.argsort(-rel[0], kind="stable")[:8]]
    assert out.item_id.tolist() == want.tolist()
    genre = data.items.genres.str.split("|").explode().value_counts().index[0]
    f = rec.recommend(user, k=5, where={"genres": genre}, exclude=[want[0]])
    g = data.items.set_index(data.items.item_id.astype(str)).loc[f.item_id, "genres"]
    assert all(genre in x.split("|") for x in g) and want[0] not in set(f.item_id)
    capped = rec.recommend(user, k=10, max_per_category=("genres", 1))
    gs = data.items.set_index(data.items.item_id.astype(str)).loc[capped.item_id, "genres"].str.split("|")
    flat = [x for v in gs for x in v]
    assert len(flat) == len(set(flat))  # each genre at most once
    with pytest.raises(DataError, match="no_such_column"):
        rec.recommend(user, where={"no_such_column": 1})
    with pytest.raises(DataError, match="needs a ranker"):
        Recommender(retrieval, qf, data.items, text, known).recommend(user, rank=True)
    # `observe(..., popularity=True)` with a ranker: its popularity features count days the data
    # spans only; later interactions are refused up front (nothing changes), and taken without it.
    ranker.set_popularity(known)
    t = int(data.interactions["timestamp"].max())
    item = str(known.item_id.iloc[0])
    later = pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [t + 400 * 86400]})
    n = len(rec.known)
    with pytest.raises(DataError, match="popularity features count days.*popularity=False"):
        rec.observe(later, popularity=True)
    assert len(rec.known) == n
    assert rec.observe(later) == 1 and len(rec.known) == n + 1
    inside = pd.DataFrame({"user_id": [user], "item_id": [item], "timestamp": [t]})
    before = ranker.popularity.cumulative.numpy().copy()
    rec.observe(inside, popularity=True)  # within the table's days: counted
    assert ranker.popularity.cumulative.numpy().sum() > before.sum()


def test_separate_mode_freezes_retrieval_and_joint_mode_trains_it(world):
    data, split, cat, text, qf, retrieval, _ = world
    feats = {k: v for k, v in _batch(world, n=64).items() if k != "negatives"}
    ds = tf.data.Dataset.from_tensors(feats).repeat(2)
    before = [w.numpy().copy() for w in retrieval.trainable_weights]
    assert before
    sep = _ranker(world)
    sep.compile(tf.keras.optimizers.Adam(0.01))
    sep.fit(ds, epochs=1, verbose=0)
    assert not any(w.ref() in {v.ref() for v in retrieval.trainable_weights} for w in sep.trainable_weights)
    assert sep.trainable_weights and retrieval.trainable  # the retrieval model itself is left trainable
    for a, w in zip(before, retrieval.trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())
    joint_ret = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf, seed=3)
    joint = build_ranker(RankingConfig(mode="joint", embedding_dim=8, deep_units=(16,)), ModelConfig(embedding_dim=8),
                         cat, data.items, text, qf, retrieval=joint_ret, rating_mean=3.0,
                         timestamps=data.interactions["timestamp"])
    joint.compile(tf.keras.optimizers.Adam(0.01))
    joint(feats | {"candidate_item_ids": tf.constant([["i1"]] * 64)})
    start = [w.numpy().copy() for w in joint_ret.trainable_weights]
    joint.fit(ds, epochs=1, verbose=0)
    assert any(not np.allclose(a, w.numpy()) for a, w in zip(start, joint_ret.trainable_weights))


def test_bias_baseline_is_the_regularised_least_squares_solution():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"user_id": rng.integers(0, 7, 80).astype(str), "item_id": rng.integers(0, 9, 80).astype(str),
                       "rating": rng.integers(1, 6, 80).astype(float)})
    m = BiasBaseline(reg_user=2.0, reg_item=3.0, iterations=200).fit(df)
    # Independent: solve min ||r - mu - A b||^2 + b' L b as one ridge system.
    users, items = sorted(df.user_id.unique()), sorted(df.item_id.unique())
    a = np.zeros((len(df), len(users) + len(items)))
    a[np.arange(len(df)), [users.index(u) for u in df.user_id]] = 1
    a[np.arange(len(df)), [len(users) + items.index(i) for i in df.item_id]] = 1
    lam = np.diag([2.0] * len(users) + [3.0] * len(items))
    b = np.linalg.solve(a.T @ a + lam, a.T @ (df.rating.to_numpy() - df.rating.mean()))
    np.testing.assert_allclose([m.user_bias[u] for u in users], b[:len(users)], atol=1e-6)
    np.testing.assert_allclose([m.item_bias[i] for i in items], b[len(users):], atol=1e-6)
    new = pd.DataFrame({"user_id": ["nobody"], "item_id": [items[0]]})
    assert m.predict(new)[0] == pytest.approx(df.rating.mean() + b[len(users)])
    assert GlobalMean().fit(df).predict(new)[0] == pytest.approx(df.rating.mean())


def test_rating_metrics_match_sklearn():
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(0)
    y = rng.integers(1, 6, 50).astype(float)
    p = y + rng.normal(size=50)
    assert rmse(y, p) == pytest.approx(np.sqrt(mean_squared_error(y, p)))
    assert mae(y, p) == pytest.approx(mean_absolute_error(y, p))
    out = evaluate_ratings({"a": p, "b": np.full(50, y.mean())}, pd.DataFrame({"rating": y}), n_boot=200,
                           reference="b")
    lo, hi = out["a"]["rmse_ci95"]
    assert lo <= out["a"]["rmse"] <= hi
    assert "squared_error_vs_b" in out["a"]
    with pytest.raises(DataError, match="shape"):
        evaluate_ratings({"a": p[:3]}, pd.DataFrame({"rating": y}))


def test_two_stage_export_serves_the_rankers_top_k_of_the_retrieved_candidates(world, tmp_path):
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.serving import HybridRankerModel, hybrid_serving_parts

    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world, history_ratings=True)  # served without `history_ratings`: relevance never reads it
    ranker.blend.assign(0.5)  # with the retriever's score: 0.5 x, and 2 x for a query with an empty history
    ranker.blend_new.assign(2.0)
    known = pd.concat([split.train, split.val])
    ret = HybridScorer(retrieval, qf, known, cat.item_ids)
    query_model, qspec, _, _ = hybrid_serving_parts(retrieval, qf)
    path = export_retrieval(query_model, qspec, cat.item_ids, ret.item_embeddings, k=5, retrieve_k=12,
                            ranker=HybridRankerModel(ranker, qf.history_length), two_stage=True,
                            root=str(tmp_path), name="two_stage")
    events = split.test.groupby("user_id").head(1).head(4).reset_index(drop=True)
    feats = ret.features(events)
    feats["history"][0] = ""  # the first query as a new user's: its blend is `blend_new`
    assert (feats["history"][1:] != "").any(axis=1).all()
    loaded = tf.saved_model.load(path)
    got = loaded.signatures["serving_default"](**{k: tf.constant(v) for k, v in feats.items()})
    ids = np.asarray(cat.item_ids, dtype=object).astype(str)
    base = ret._query_fn({k: tf.constant(v) for k, v in feats.items()}).numpy() @ ret.item_embeddings.T
    for r in range(len(events)):
        cand = ids[np.argsort(-base[r], kind="stable")[:12]]  # retrieval top-12 (no exclusions)
        rated = dict(feats, history_ratings=history_values(events, qf.history_length, context=known))
        rel, _ = rank_candidates(ranker, {k: v[r:r + 1] for k, v in rated.items()}, cand[None, :])
        order = np.argsort(-rel[0], kind="stable")[:5]
        assert got["item_ids"].numpy()[r].astype(str).tolist() == cand[order].tolist()
        np.testing.assert_allclose(got["scores"].numpy()[r], rel[0][order], rtol=1e-4, atol=1e-4)
        if r == 0:  # not vacuous: with the other blend the new user's scores differ
            ranker.blend_new.assign(0.5)
            other, _ = rank_candidates(ranker, {k: v[:1] for k, v in rated.items()}, cand[None, :])
            ranker.blend_new.assign(2.0)
            assert np.abs(other[0] - rel[0]).max() > 1e-3
    assert set(loaded.signatures) >= {"serving_default", "recommend", "retrieve", "rank"}


def test_cold_user_simulation_blanks_whole_rows_at_the_given_rate(world):
    ranker = _ranker(world, history_ratings=True, cold_user_fraction=0.4)
    n = 2000
    feats = {"user_id": tf.constant(["u1"] * n), "history": tf.constant([["a", "b"]] * n),
             "history_ratings": tf.constant([[4.0, 2.0]] * n)}
    out = ranker._as_cold_users(feats)
    cold = out["user_id"].numpy() == b""
    assert abs(cold.mean() - 0.4) < 0.05  # binomial sd ~0.011
    assert (out["history"].numpy()[cold] == b"").all() and (out["history"].numpy()[~cold] != b"").all()
    assert (out["history_ratings"].numpy()[cold] == 0).all() and (out["history_ratings"].numpy()[~cold] > 0).all()
    with pytest.raises(ConfigError, match="cold_user_fraction"):
        _ranker(world, cold_user_fraction=1.0)


def test_rating_cis_resample_users_not_rows():
    # Property, independent of the bootstrap code: with user clusters, repeating every row of
    # every user 5 times changes no user's mean error, so the CI stays the same; a row-level
    # bootstrap would see 5x the rows and shrink it (checked too, so the first check can fail).
    rng = np.random.default_rng(0)
    test = pd.DataFrame({"user_id": np.repeat([f"u{i}" for i in range(30)], 4),
                         "rating": rng.integers(1, 6, 120).astype(float)})
    pred = {"m": rng.normal(3, 1, 120), "ref": np.full(120, 3.5)}
    once = evaluate_ratings(pred, test, n_boot=400, seed=1, reference="ref")
    rep = test.loc[test.index.repeat(5)].reset_index(drop=True)
    five = evaluate_ratings({k: np.repeat(v, 5) for k, v in pred.items()}, rep, n_boot=400, seed=1, reference="ref")
    np.testing.assert_allclose(five["m"]["rmse_ci95"], once["m"]["rmse_ci95"], rtol=1e-9)
    np.testing.assert_allclose([five["m"]["squared_error_vs_ref"][k] for k in ("low", "high")],
                               [once["m"]["squared_error_vs_ref"][k] for k in ("low", "high")], rtol=1e-9)
    assert once["m"]["ci"] == "users resampled with all their ratings"
    rows_once = evaluate_ratings(pred, test.drop(columns="user_id"), n_boot=400, seed=1)
    rows_five = evaluate_ratings({k: np.repeat(v, 5) for k, v in pred.items()}, rep.drop(columns="user_id"),
                                 n_boot=400, seed=1)
    width = lambda r: r["m"]["rmse_ci95"][1] - r["m"]["rmse_ci95"][0]  # noqa: E731
    assert width(rows_five) < 0.6 * width(rows_once)


def test_bias_rating_base_predicts_the_bias_model_then_learns_only_a_residual(world):
    data, split, cat, text, qf, retrieval, _ = world
    with pytest.raises(ConfigError, match="rating_base"):
        _ranker(world, rating_base="median")
    with pytest.raises(ConfigError, match="rating_base=bias"):
        _ranker(world, rating_base="learned").set_rating_base(BiasBaseline().fit(split.train))
    ranker = _ranker(world, rating_base="bias", history_ratings=False)
    base = BiasBaseline(reg_user=2.0, reg_item=5.0).fit(split.train)  # its mu is not the ranker's 3.0
    assert abs(base.mu - 3.0) > 1e-3
    ranker.set_rating_base(base)
    ev = split.test.head(40).reset_index(drop=True)  # some unknown users and items: zero biases
    feats = {k: tf.constant(v) for k, v in qf.build(ev, context=split.train).items()}
    items = tf.constant(ev["item_id"].astype(str).to_numpy(dtype=object)[:, None])
    np.testing.assert_allclose(ranker.score(feats, items)["rating"].numpy()[:, 0], base.predict(ev), rtol=1e-5)
    # Training moves the residual head, never the base's biases.
    frozen = {w.ref() for w in ranker.user_bias.weights + ranker.item_bias.weights}
    tables = [w.numpy().copy() for w in ranker.user_bias.weights + ranker.item_bias.weights]
    batch = {k: v for k, v in _batch(world, n=64).items() if k != "negatives"}
    ranker.compile(tf.keras.optimizers.Adam(0.01))
    ranker.fit(tf.data.Dataset.from_tensors(batch).repeat(3), epochs=1, verbose=0)
    assert not frozen & {w.ref() for w in ranker.trainable_weights}
    for a, w in zip(tables, ranker.user_bias.weights + ranker.item_bias.weights):
        np.testing.assert_array_equal(a, w.numpy())
    assert not np.allclose(ranker.score(feats, items)["rating"].numpy()[:, 0], base.predict(ev), atol=1e-4)


def test_train_ranker_refits_the_frozen_rating_base_on_train_and_validation(world):
    from tfrec.cli.ranking_stage import train_ranker
    from tfrec.config import RunConfig, TrainConfig
    from tfrec.evaluation.rating import tune_bias

    data, split, cat, text, qf, retrieval, _ = world
    cfg = RunConfig(model=ModelConfig(embedding_dim=8), train=TrainConfig(verbose=0),
                    ranking=RankingConfig(embedding_dim=8, deep_units=(16,), epochs=1, batch_size=128,
                                          num_hard_negatives=2, candidates=20, rating_base="bias"))
    ranker, info = train_ranker(cfg, data, split, cat, text, retrieval, qf, log=lambda *a: None)
    params, _ = tune_bias(split.train, split.val)
    assert info["rating_base"]["reg_user"] == params["reg_user"]
    want = BiasBaseline(**params).fit(pd.concat([split.train, split.val]))
    ids = [str(i) for i in cat.item_vocab.values[:10]]
    got_items = ranker.item_bias(tf.constant(ids)).numpy()[:, 0]
    np.testing.assert_allclose(got_items, [want.item_bias.get(i, 0.0) + want.mu - ranker.rating_mean for i in ids],
                               rtol=1e-5, atol=1e-6)
    # Train users, and users first seen in validation: the refitted base knows them too.
    val_only = sorted(set(split.val.user_id.astype(str)) - set(split.train.user_id.astype(str)))
    assert val_only and any(abs(want.user_bias[u]) > 1e-3 for u in val_only)
    users = [str(u) for u in cat.user_vocab.values[:10]] + val_only
    np.testing.assert_allclose(ranker.user_bias(tf.constant(users)).numpy()[:, 0],
                               [want.user_bias.get(u, 0.0) for u in users], rtol=1e-5, atol=1e-6)
    # The frozen tables are saved with the ranker's weights in run folders.
    from tfrec.cli.artifacts import _ranker_variables

    saved = {w.ref() for w in _ranker_variables(ranker)}
    assert {w.ref() for w in ranker.item_bias.weights + ranker.user_bias.weights + ranker.popularity.weights} <= saved
    # The popularity table, like the base, counts train + validation after training; the
    # history-ratings term skips exactly the ratings the refitted base holds.
    known = pd.concat([split.train, split.val])
    pairs = set(ranker.rating_base_pairs.export()[0].numpy().astype(str))
    assert pairs == {f"{u}\x1f{i}" for u, i in zip(known.user_id.astype(str), known.item_id.astype(str))}
    assert info["popularity"]["counted_on"] == "train + validation"
    # The blend with the retriever's score was chosen on validation from the grid.
    assert info["retrieval_blend"]["blend"] == pytest.approx(float(ranker.blend.numpy()))
    assert info["retrieval_blend"]["blend"] in [t["blend"] for t in info["retrieval_blend"]["trials"]]
    np.testing.assert_array_equal(ranker.popularity.cumulative.numpy()[-1, 1:],
                                  known["item_id"].astype(str).value_counts().reindex(cat.item_ids.astype(str),
                                                                                      fill_value=0).to_numpy())


def test_refit_ranker_trains_a_fresh_ranker_on_train_and_validation_with_the_choices(world):
    """`train.refit` with the ranking stage: the ranker chosen on validation is retrained on train +
    validation for its best epoch count, with its blend and its base's regularisation."""
    from tfrec.cli.ranking_stage import refit_ranker, train_ranker
    from tfrec.config import RunConfig, TrainConfig
    from tfrec.evaluation.rating import tune_bias

    data, split, cat, text, qf, retrieval, _ = world
    cfg = RunConfig(model=ModelConfig(embedding_dim=8), train=TrainConfig(verbose=0),
                    ranking=RankingConfig(embedding_dim=8, deep_units=(16,), epochs=3, early_stopping_patience=1,
                                          batch_size=128, num_hard_negatives=2, candidates=20, rating_base="bias"))
    chosen, info = train_ranker(cfg, data, split, cat, text, retrieval, qf, log=lambda *a: None)
    chosen.blend.assign(2.5)  # (a value the grid never gives: carried over, not re-chosen)
    known = pd.concat([split.train, split.val], ignore_index=True)
    known_qf = QueryFeatures.fit(known, data.users, 5)
    ranker, refit = refit_ranker(cfg, data, split, cat, text, retrieval, known_qf, chosen, info, log=lambda *a: None)
    best = max(info["validation"], key=lambda h: h["val_two_stage_ndcg@10"])["epoch"]
    assert refit["epochs"] == best == len(refit["relevance_loss"])
    assert refit["interactions"] == len(known) and float(ranker.blend.numpy()) == 2.5 == refit["retrieval_blend"]
    assert ranker is not chosen and ranker.retrieval is retrieval
    # Users and items first seen in validation get trained ranker ids (the chosen ranker's are OOV).
    users = set(split.val.user_id.astype(str)) - set(split.train.user_id.astype(str))
    items = set(split.val.item_id.astype(str)) - set(split.train.item_id.astype(str))
    assert users and not users & set(chosen.query_tower.user_vocabulary)
    assert users <= set(ranker.query_tower.user_vocabulary) and items <= set(ranker.item_tower.item_vocabulary)
    # The frozen base: the regularisation tuned for the chosen ranker, fitted on train + validation.
    params, _ = tune_bias(split.train, split.val)
    want = BiasBaseline(**params).fit(known)
    ids = [str(i) for i in cat.item_vocab.values[:10]]
    np.testing.assert_allclose(ranker.item_bias(tf.constant(ids)).numpy()[:, 0],
                               [want.item_bias.get(i, 0.0) + want.mu - ranker.rating_mean for i in ids],
                               rtol=1e-5, atol=1e-6)
    assert ranker.rating_mean == pytest.approx(known["rating"].mean())
    pairs = set(ranker.rating_base_pairs.export()[0].numpy().astype(str))
    assert pairs == {f"{u}\x1f{i}" for u, i in zip(known.user_id.astype(str), known.item_id.astype(str))}
    np.testing.assert_array_equal(ranker.popularity.cumulative.numpy()[-1, 1:],
                                  known["item_id"].astype(str).value_counts().reindex(cat.item_ids.astype(str),
                                                                                      fill_value=0).to_numpy())
    joint = dataclasses.replace(cfg, ranking=dataclasses.replace(cfg.ranking, mode="joint"))
    with pytest.raises(DataError, match="joint mode trains its own retriever"):
        refit_ranker(joint, data, split, cat, text, retrieval, known_qf, chosen, info, log=lambda *a: None)


def test_build_ranker_needs_timestamps_for_popularity_and_set_popularity_needs_it_on(world):
    data, split, cat, text, qf, retrieval, _ = world
    with pytest.raises(ConfigError, match="needs the interactions' `timestamps`"):
        build_ranker(RankingConfig(embedding_dim=8), ModelConfig(embedding_dim=8), cat, data.items, text, qf)
    with pytest.raises(ConfigError, match="popularity_days"):
        _ranker(world, popularity_days=0).set_popularity(split.train)


def test_ranker_with_popularity_and_rating_base_trains_under_mirrored_strategy_on_two_logical_devices():
    out = run_on_two_cpus("""
        import numpy as np, pandas as pd, tensorflow as tf
        from tfrec.cli.ranking_stage import ranking_features
        from tfrec.config import ModelConfig, RankingConfig
        from tfrec.data.pipeline import make_dataset
        from tfrec.data.splits import make_split
        from tfrec.data.synthetic import generate
        from tfrec.evaluation.rating import BiasBaseline
        from tfrec.features.catalogue import Catalogue
        from tfrec.features.query_features import QueryFeatures
        from tfrec.models.factory import build_hybrid
        from tfrec.models.ranking import build_ranker
        data = generate(n_users=60, n_items=40, n_interactions=1500, seed=1)
        ia = data.interactions.assign(rating=np.random.default_rng(0).integers(1, 6, len(data.interactions)) * 1.0)
        split = make_split(ia, "temporal")
        cat = Catalogue.fit(data.items, split.train, ia, data.users)
        text = np.random.default_rng(0).normal(size=(cat.n_items, 8)).astype(np.float32)
        qf = QueryFeatures.fit(split.train, data.users, 5)
        feats = ranking_features(qf, split.train, split.train)
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            retrieval = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf)
            ranker = build_ranker(RankingConfig(embedding_dim=8, deep_units=(16,), rating_base="bias"),
                                  ModelConfig(embedding_dim=8), cat, data.items, text, qf, retrieval=retrieval,
                                  rating_mean=3.0, timestamps=ia["timestamp"])
            ranker.score({k: tf.constant(v[:2]) for k, v in feats.items()},  # builds the layers in scope
                         tf.constant(np.array([[str(cat.item_ids[0])]] * 2, dtype=object)))
            ranker.set_rating_base(BiasBaseline().fit(split.train), fitted_on=split.train)
            ranker.set_popularity(split.train)
            ranker.compile(tf.keras.optimizers.Adam(0.01))
        w = ranker.deep.trainable_weights[0]
        before = w.numpy().copy()
        h = ranker.fit(make_dataset(feats, 128, seed=0), epochs=2, verbose=0).history["loss"]
        table = ranker.popularity.cumulative
        print("REPLICAS", strategy.num_replicas_in_sync, "MIRRORED", type(w).__name__, type(table).__name__,
              "CHANGED", not np.allclose(before, w.numpy()), "FINITE", bool(np.isfinite(h).all()),
              "COUNTS", int(table.numpy()[-1].sum()) == len(split.train),
              "PAIRS", int(ranker.rating_base_pairs.size()) == len(split.train[["user_id", "item_id"]].drop_duplicates()))
    """)
    assert ("REPLICAS 2 MIRRORED MirroredVariable MirroredVariable CHANGED True FINITE True COUNTS True PAIRS True"
            in out), out[-2000:]


def test_blend_adds_the_retrievers_full_score_with_its_popularity_prior(world):
    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world)
    feats = dict(_batch(world))
    cands = tf.constant(np.asarray(cat.item_ids[:9], dtype=object).reshape(3, 3)[np.arange(6) % 3])  # (6, 3)
    try:
        retrieval.set_popularity_prior(split.train, 2.0, 5)
        assert retrieval.prior_scores(cands).numpy().any()  # some candidates inside the window
        head = ranker.score(feats, cands)["relevance"].numpy()  # blend 0
        ranker.blend.assign(0.7)
        got = ranker.score(feats, cands)["relevance"].numpy()
        # Independently: the retriever's retrieval-space dot products (prior dimension included) / T.
        q = retrieval.query_embedding(feats).numpy()  # (6, d + 1)
        v = retrieval.item_embeddings(cands).numpy()  # (6, 3, d + 1)
        full = np.einsum("bd,bcd->bc", q, v) / retrieval.temperature
        np.testing.assert_allclose(got, head + 0.7 * full, rtol=1e-4, atol=1e-4)
        # `blend_new` applies to the queries with an empty history (rows 0 and 1 here), `blend` to the rest.
        feats["history"] = tf.concat([tf.fill([2, feats["history"].shape[1]], ""), feats["history"][2:]], axis=0)
        ranker.blend.assign(0.0)
        head = ranker.score(feats, cands)["relevance"].numpy()
        ranker.blend.assign(0.7)
        ranker.blend_new.assign(3.0)
        got = ranker.score(feats, cands)["relevance"].numpy()
        q = retrieval.query_embedding(feats).numpy()
        full = np.einsum("bd,bcd->bc", q, v) / retrieval.temperature
        per_row = np.array([3.0, 3.0, 0.7, 0.7, 0.7, 0.7])[:, None]
        np.testing.assert_allclose(got, head + per_row * full, rtol=1e-4, atol=1e-4)
    finally:
        retrieval.set_popularity_prior(split.train, 0.0, 14)


def test_blend_subtracts_the_retrievers_repeat_penalty_at_history_candidates(world):
    data, split, cat, text, qf, _, _ = world
    tf.keras.utils.set_random_seed(1)
    retrieval = build_hybrid(ModelConfig(embedding_dim=8, repeat_penalty=True), cat, data.items, text, qf)
    retrieval._repeat_raw.assign(1.0)  # p = softplus(1) = 1.3133
    feats = dict(_batch(world))
    retrieval.query_embedding(feats)  # builds the weights
    ranker = build_ranker(RankingConfig(embedding_dim=8, deep_units=(16,)), ModelConfig(embedding_dim=8), cat,
                          data.items, text, qf, retrieval=retrieval, rating_mean=3.0, seed=0,
                          timestamps=data.interactions["timestamp"])
    hist = np.array([[x.decode() for x in row] for row in feats["history"].numpy()], dtype=object)  # (6, 5)
    # Candidates: each row's newest history item, one of another row's, and one in no history at all.
    outside = next(i for i in cat.item_ids if i not in set(hist.ravel()))
    cands = np.array([[h[-1], hist[(r + 1) % len(hist)][-1], outside] for r, h in enumerate(hist)], dtype=object)
    head = ranker.score(feats, tf.constant(cands))["relevance"].numpy()
    ranker.blend.assign(0.7)
    got = ranker.score(feats, tf.constant(cands))["relevance"].numpy()
    q = retrieval.query_embedding(feats).numpy()
    v = retrieval.item_embeddings(tf.constant(cands)).numpy()
    p = float(np.log1p(np.exp(1.0)))
    hit = np.array([[c in set(h) - {""} for c in row] for row, h in zip(cands, hist)])  # plain Python membership
    assert hit[:, 0].all() and not hit[:, 2].any()
    want = head + 0.7 * (np.einsum("bd,bcd->bc", q, v) - p * hit) / retrieval.temperature
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_tune_blend_picks_the_best_validation_blend_as_the_epoch_metric_measures_it(world):
    from tfrec.cli.ranking_stage import TwoStageValidation

    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world)
    validation = TwoStageValidation(retrieval, qf, split.train, split.val, cat, n_candidates=20, log=lambda *a: None)
    validation.set_model(ranker)
    out = validation.tune_blend(ranker, blends=(0.0, 0.5, 100.0))
    assert [t["blend"] for t in out["trials"]] == [0.0, 0.5, 100.0]
    best = max(out["trials"], key=lambda t: t["val_two_stage_ndcg@10"])
    assert out["blend"] == best["blend"] == pytest.approx(float(ranker.blend.numpy()))
    # Each trial equals the per-epoch validation metric with that blend set on the ranker
    # (candidates and relevance scored again through the ranker, not recombined).
    assert out["blend_new"] == out["blend"] == pytest.approx(float(ranker.blend_new.numpy()))  # one blend for all
    for trial in out["trials"]:
        ranker.blend.assign(trial["blend"])
        ranker.blend_new.assign(trial["blend"])
        logs = {}
        validation.on_epoch_end(0, logs)
        assert logs["val_two_stage_ndcg@10"] == pytest.approx(trial["val_two_stage_ndcg@10"], abs=1e-6)


def test_tune_blend_by_history_picks_the_best_pair_of_blends_as_the_epoch_metric_measures_it(world):
    """`by_history=True`: `blend_new` (queries with an empty history) and `blend` (the rest) chosen apart are
    the best of every pair of grid values, each pair measured through the ranker by the per-epoch metric."""
    import itertools

    from tfrec.cli.ranking_stage import TwoStageValidation

    data, split, cat, text, qf, retrieval, _ = world
    ranker = _ranker(world)
    validation = TwoStageValidation(retrieval, qf, split.train, split.val, cat, n_candidates=20, log=lambda *a: None)
    validation.set_model(ranker)
    blends = (0.0, 0.5, 100.0)
    out = validation.tune_blend(ranker, blends=blends, by_history=True)
    n_new = out["trials"][0]["users_new"]
    assert 0 < n_new < len(validation.users)  # both groups are there: new users have no train event
    assert (float(ranker.blend.numpy()), float(ranker.blend_new.numpy())) == (out["blend"], out["blend_new"])
    measured = {}
    for known, new in itertools.product(blends, blends):
        ranker.blend.assign(known)
        ranker.blend_new.assign(new)
        logs = {}
        validation.on_epoch_end(0, logs)
        measured[(known, new)] = logs["val_two_stage_ndcg@10"]
    best = max(measured.values())
    assert measured[(out["blend"], out["blend_new"])] == pytest.approx(best, abs=1e-6)
    # Not vacuous: the chosen pair differs from the one blend, or the pairs' metrics differ.
    assert len({round(v, 6) for v in measured.values()}) > 1


def test_assemble_hand_worked_and_keeps_close_retrieval_scores_apart():
    scores = np.array([[3.0, 1.0, 2.0, 0.5]], np.float32)
    out = TwoStageScorer.assemble(scores, np.array([[1]]), np.array([[0.2]], np.float32))
    # Candidate 1 gets its relevance; the rest keep their gaps, the best of them 1 below 0.2.
    np.testing.assert_allclose(out, [[-0.8, 0.2, -1.8, -3.3]], atol=1e-6)
    out = TwoStageScorer.assemble(scores, np.array([[2, 0]]), np.array([[-np.inf, 5.0]]))
    np.testing.assert_allclose(out, [[5.0, -BELOW / 2 - 1 - 2.0, -BELOW / 2, -BELOW / 2 - 1 - 2.5]], atol=1e-3)
    # 1,000 distinct float32 scores one ulp apart near 20 (2e-6): all still distinct.
    row = [np.float32(20)]
    for _ in range(999):
        row.append(np.nextafter(row[-1], np.float32(30)))
    row = np.array(row, np.float32)[None, :]
    out = TwoStageScorer.assemble(row, np.array([[999]]), np.array([[1.0]], np.float32))
    assert len(np.unique(out[0, :999])) == 999
