"""The content prior (`tfrec.models.content_prior`): the popularity prior of items
without interactions, predicted from their content, against scikit-learn's ridge on
features built here with pandas; in the hybrid's retrieval space and for items
added later by `Recommender.index_items`."""
import tfrec  # noqa: F401  (before TensorFlow: sets TF_USE_LEGACY_KERAS)

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from sklearn.linear_model import Ridge

from tests.models.worlds import seeded_hybrid, synthetic_world, tiny_bert_world
from tfrec.config import ModelConfig, load_config
from tfrec.models.catalogue_lookup import column_values
from tfrec.models.content_prior import ContentPrior

DAY = 86400
HELD = ["i0", "i3", "i7", "i12", "i20", "i25"]  # items given no interactions


@pytest.fixture(scope="module")
def world():
    return synthetic_world(50, 30, 1200, data_seed=3, split="temporal", text_dim=6, history_length=4)


def naive_features(lookup, rows, bins=8, like=None):
    """Content features of lookup `rows`: embeddings as they are, "|"-categories one-hot by
    pandas, numbers one-hot in the catalogue's quantile bins (edges from `like`'s rows,
    default the same lookup), in the lookup's column order."""
    cols = {n: column_values(v)[:-1] for n, v in lookup.columns.items()}
    ref = cols if like is None else {n: column_values(v)[:-1] for n, v in like.columns.items()}
    parts = []
    for name in sorted(cols):
        v, r = cols[name], ref[name]
        if v.dtype == object:
            vocab = sorted(pd.Series(r).str.get_dummies("|").columns)
            parts.append(pd.Series(v).str.get_dummies("|").reindex(columns=vocab, fill_value=0).to_numpy(float))
        elif v.ndim == 2:
            parts.append(v.astype(float))
        else:
            edges = np.unique(np.quantile(r, np.linspace(0, 1, bins + 1)[1:-1]))
            parts.append(np.eye(len(edges) + 1)[np.digitize(v, edges)])
    return np.hstack(parts)[rows]


def _window(interactions, days, ids):
    """Each id's interactions in the `days` days before the latest one (0: all of them), by pandas."""
    now = interactions["timestamp"].max()
    recent = interactions[interactions["timestamp"] > now - days * DAY] if days else interactions
    return recent["item_id"].astype(str).value_counts().reindex(ids, fill_value=0).to_numpy(float)


def _expected(lookup, interactions, days):
    """log(1 + n) per lookup item: counted where the item has interactions, else sklearn's ridge."""
    ids = np.asarray(lookup.item_ids)
    seen = ids[np.isin(ids, interactions["item_id"].astype(str))]
    mask = np.isin(ids, seen)
    x = naive_features(lookup, np.arange(len(ids)))
    y = np.log1p(_window(interactions, days, ids))
    pred = Ridge(alpha=1.0).fit(x[mask], y[mask]).predict(x)
    return np.where(mask, y, np.maximum(pred, 0.0)), mask


def test_log_counts_are_counted_for_known_items_and_ridge_predicted_for_the_others(world):
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    interactions = split.train[~split.train["item_id"].isin(HELD)]
    for days in (7, 0):
        ids, log_n = ContentPrior().log_counts(model.lookup, interactions, days)
        got = pd.Series(log_n, index=ids.astype(str)).reindex(model.lookup.item_ids, fill_value=0.0).to_numpy()
        want, mask = _expected(model.lookup, interactions, days)
        assert sorted(np.asarray(model.lookup.item_ids)[~mask]) == sorted(HELD)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        assert (got[~mask] > 0).any() and len(set(np.round(got[~mask], 6))) > 1  # not all clipped, not constant
    # With every item known (or fewer than two), nothing is predicted: the plain counts.
    ids, log_n = ContentPrior().log_counts(model.lookup, split.train, 7)
    every = np.asarray(model.lookup.item_ids)
    np.testing.assert_allclose(pd.Series(log_n, index=ids).reindex(every, fill_value=0.0),
                               np.log1p(_window(split.train, 7, every)), rtol=1e-6)
    with pytest.raises(ValueError, match="needs a fit first"):
        ContentPrior().predict(model.lookup, ["i0"])


def test_prediction_follows_what_makes_items_popular(world):
    """Items of one genre are popular, the rest are not: a new item of that genre is
    predicted far above a new item without it."""
    data, split, cat, text, qf = world
    model = seeded_hybrid(world)
    genres = data.items.set_index("item_id")["genres"]
    hot = genres.str.split("|").str[0].value_counts().index[0]  # the most common first genre
    rows = []
    for item in genres.index.drop(HELD):
        rows += [(item, 1000)] * (30 if hot in genres[item].split("|") else 1)
    interactions = pd.DataFrame(rows, columns=["item_id", "timestamp"])
    ids, log_n = ContentPrior().log_counts(model.lookup, interactions, 0)
    pred = pd.Series(log_n, index=ids).reindex(HELD)
    is_hot = np.array([hot in genres[i].split("|") for i in HELD])
    assert is_hot.any() and (~is_hot).any()
    assert pred[is_hot].min() > pred[~is_hot].max() + 1.0  # log(31) = 3.4 vs log(2) = 0.7


def test_hybrid_prior_column_uses_the_prediction_only_for_items_without_interactions(world):
    data, split, cat, text, qf = world
    on = seeded_hybrid(world, popularity_prior=(0.0, 2.0), content_prior=True)
    off = seeded_hybrid(world, popularity_prior=(0.0, 2.0))
    assert on.content_prior is not None and off.content_prior is None
    assert seeded_hybrid(world, content_prior=True).content_prior is None  # no prior, nothing to predict
    interactions = split.train[~split.train["item_id"].isin(HELD)]
    ids = np.asarray(on.lookup.item_ids)
    want, mask = _expected(on.lookup, interactions, 3)
    for model, expect in ((on, want), (off, np.where(mask, want, 0.0))):
        model.set_popularity_prior(interactions, 2.0, 3)
        got = model.item_embeddings(tf.constant(ids)).numpy()[:, -1]
        np.testing.assert_allclose(got, model.temperature * 2.0 * expect, rtol=1e-5, atol=1e-6)


def _recs(flags=(True, False)):
    """Recommenders over one tiny-BERT world, with and without the content prior (untrained
    towers: the prior does not depend on them), the prior set on train with w 2 / 30 days;
    built per test, as `index_items` changes them."""
    from tfrec.models.factory import build_hybrid
    from tfrec.models.recommender import Recommender

    data, split, cat, encoder, text, qf = tiny_bert_world(40, 30, 1500, data_seed=5, history_length=5)
    out = {}
    for flag in flags:
        tf.keras.utils.set_random_seed(0)
        model = build_hybrid(ModelConfig(embedding_dim=8, popularity_prior=(0.0, 2.0), content_prior=flag),
                             cat, data.items, text, qf)
        model.set_popularity_prior(split.train, 2.0, 30)
        out[flag] = Recommender(model, qf, data.items, text, split.train, text_encoder=encoder)
    return out, data, split, qf, encoder


NEW = pd.DataFrame({"item_id": ["new-1", "new-2"], "title": ["A space opera", "A kitchen drama"],
                    "genres": ["Animation|Western", "Drama"], "year": [1997, 1960]})


def _raw(spec, items):
    return {name: tf.constant(items[name].astype(str).tolist() if s.dtype == tf.string
                              else items[name].astype(np.float32).to_numpy()) for name, s in spec.items()}


def test_serving_encode_items_gives_a_new_item_the_same_prior_as_index_items(tmp_path):
    """The exported `encode_items` signature computes the prediction in-graph: a new item
    sent as raw fields gets what `index_items` gives it in Python, after a SavedModel
    round trip; catalogue items keep the index's value."""
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.serving import hybrid_serving_parts

    out, data, split, qf, encoder = _recs((True,))
    model = out[True].model
    query_model, spec, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, encoder)
    ids = data.items["item_id"].astype(str).tolist()
    path = export_retrieval(query_model, spec, ids, model.item_embeddings(tf.constant(ids)).numpy(),
                            item_encoder=item_encoder, item_encoder_spec=item_spec, root=tmp_path, name="cp", k=5)
    new = NEW.assign(price=[3.5, np.nan])
    served = tf.saved_model.load(path).signatures["encode_items"](**_raw(item_spec, new))["embedding"].numpy()
    catalogue = item_encoder(_raw(item_spec, data.items.head(4))).numpy()
    np.testing.assert_allclose(catalogue[:, -1], model.prior_column(tf.constant(ids[:4])).numpy(), atol=1e-6)
    rec = out[True]  # the same new items indexed in Python
    rec.index_items(new)
    want = rec.item_embeddings[[list(rec.item_ids).index(i) for i in NEW["item_id"]], -1]
    np.testing.assert_allclose(served[:, -1], want, rtol=1e-4, atol=1e-5)
    assert want.min() > 0


def test_index_items_gives_new_items_their_predicted_prior():
    out, data, split, qf, encoder = _recs()
    old_lookup = out[True].model.lookup
    x_old = naive_features(old_lookup, np.arange(len(old_lookup.item_ids)))
    y_old = np.log1p(_window(split.train, 30, np.asarray(old_lookup.item_ids)))
    for flag, r in out.items():
        assert r.index_items(NEW) == 2
    lookup = out[True].model.lookup
    rows = [lookup.item_ids.index("new-1"), lookup.item_ids.index("new-2")]
    want = np.maximum(Ridge(alpha=1.0).fit(x_old, y_old).predict(naive_features(lookup, rows, like=old_lookup)), 0)
    for flag, r in out.items():
        got = r.item_embeddings[[list(r.item_ids).index(i) for i in ("new-1", "new-2")], -1]
        np.testing.assert_allclose(got, r.model.temperature * 2.0 * want if flag else 0.0, rtol=1e-5, atol=1e-6)
    assert want.max() > 0


def test_config_flag_reaches_the_model():
    assert load_config(None, ["--model.content_prior=true"]).model.content_prior is True
    assert ModelConfig().content_prior is False


def test_prior_tuning_scores_each_candidate_with_the_content_prior_as_the_model_does(world):
    """`tune_popularity_prior` builds each candidate's item bias itself; with the content
    prior its validation numbers must equal those of the prior really set on the model."""
    from tfrec.cli.retrieval_stage import tune_popularity_prior
    from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking
    from tfrec.models.scoring import FullCatalogueValidation

    data, split, cat, text, qf = world
    cfg = ModelConfig(embedding_dim=8, popularity_prior=(0.0, 1.0, 8.0), popularity_prior_days=(2, 30),
                      content_prior=True)
    model = seeded_hybrid(world, popularity_prior=cfg.popularity_prior, popularity_prior_days=cfg.popularity_prior_days,
                          content_prior=True)
    fit_part = split.train[~split.train["item_id"].isin(HELD)]
    validation = FullCatalogueValidation(qf, fit_part, split.val, cat, k=20, log=lambda *a: None)
    out = tune_popularity_prior(model, cfg, fit_part, validation, log=lambda *a: None)
    assert len(out["trials"]) == 5
    for trial in out["trials"]:
        model.set_popularity_prior(fit_part, trial["weight"], trial["days"])
        if trial["weight"]:
            assert model.prior_column(tf.constant(HELD)).numpy().max() > 0  # the held items are predicted
        users, items, _ = validation.vectors(model)
        res = evaluate_ranking(embedding_scorer(users, items), validation.users, validation.val_matrix,
                               exclude=validation.train_matrix, ks=(10, 20), return_topk=False).mean()
        for name in ("ndcg@10", "recall@20"):
            assert res[name] == pytest.approx(trial[f"val_{name}"], abs=1e-6), (name, trial)
