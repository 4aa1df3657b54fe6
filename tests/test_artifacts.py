"""A run folder's trained model: saved by `tfrec run`, rebuilt by `load_run`."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from tfrec.cli.artifacts import INFO_FILE, MODEL_DIR, load_run
from tfrec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def reloaded(ml100k_demo):
    result, _ = ml100k_demo
    return result, load_run(result.run_dir)


def _test_events(result, n=40):
    test = result.split.test
    return test.drop_duplicates("user_id").head(n)[["user_id", "timestamp"]].reset_index(drop=True)


@pytest.mark.slow
def test_reloaded_run_recommends_exactly_like_the_trained_one(reloaded):
    result, run = reloaded
    assert run.config.to_dict() == result.metrics["config"]
    assert run.model is not result.model and run.recommender is not result.recommender
    a, b = result.recommender, run.recommender
    np.testing.assert_array_equal(b.item_ids, a.item_ids)
    np.testing.assert_allclose(b.item_embeddings, a.item_embeddings, rtol=0, atol=1e-6)
    events = _test_events(result)
    qa, qb = a.scorer.query_embeddings(events), b.scorer.query_embeddings(events)
    np.testing.assert_allclose(qb, qa, rtol=0, atol=1e-6)
    # Top-k by an independent numpy argsort over the original model's embeddings.
    want = a.item_ids[np.argsort(-(qa @ a.item_embeddings.T), axis=1, kind="stable")[:, :20]]
    got = b.item_ids[np.argsort(-(qb @ b.item_embeddings.T), axis=1, kind="stable")[:, :20]]
    np.testing.assert_array_equal(got, want)
    for user in ("1", "42", "943"):  # two stages: retrieve 200, then the reloaded ranker
        assert b.recommend(user, k=10, timestamp=1e9)["item_id"].tolist() == \
            a.recommend(user, k=10, timestamp=1e9)["item_id"].tolist()
    # The ranking stage came back too: equal scores for the same candidates.
    from tfrec.cli.ranking_stage import with_history_ratings
    from tfrec.models.two_stage import rank_candidates

    assert run.ranker is not None and run.ranker is not result.recommender.ranker
    # The choices made on validation come back: the popularity prior (its counts recomputed from the
    # data: the item embeddings above include its dimension) and the ranker's blend weight.
    assert run.model.popularity_prior == result.model.popularity_prior
    assert float(run.ranker.blend.numpy()) == float(a.ranker.blend.numpy())
    assert float(run.ranker.blend_new.numpy()) == float(a.ranker.blend_new.numpy())  # an empty history's
    # The text profile (the default: 64 principal directions, then the words of the 1,024 most texts) too.
    assert run.model.text_profile.dim == result.model.text_profile.dim == 64 + 1024
    assert b.item_embeddings.shape[1] == run.config.model.embedding_dim + 1 + 64 + 1024
    # Histories with their ratings: the rating head's term reads only those its frozen base was not
    # fitted on, so the base's (user, item) pairs must come back too (as must the popularity counts).
    live = pd.concat([a.known, result.split.test], ignore_index=True)  # some history ratings after the base's
    events = result.split.test.iloc[::250].reset_index(drop=True)
    feats = with_history_ratings(a.query_features.build(events, context=live), a.query_features, events, live)
    pairs = set(run.ranker.rating_base_pairs.export()[0].numpy())
    assert len(pairs) > 80_000 and pairs == set(a.ranker.rating_base_pairs.export()[0].numpy())
    np.testing.assert_array_equal(run.ranker.popularity.cumulative.numpy(), a.ranker.popularity.cumulative.numpy())
    cands = np.tile(a.item_ids[:50].astype(str).astype(object), (len(events), 1))
    for got, want in zip(rank_candidates(run.ranker, feats, cands), rank_candidates(a.ranker, feats, cands)):
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_the_weights_come_from_the_run_folder_not_from_the_seed(reloaded):
    # The same build without the restore (same seed, same features) is a different model:
    # the equality above is the checkpoint's doing.
    from tfrec.models.factory import build_hybrid
    from tfrec.models.scoring import HybridScorer

    result, run = reloaded
    fresh = build_hybrid(run.config.model, run.catalogue, run.data.items, run.text_embeddings, run.query_features,
                         seed=run.config.train.seed, text_cfg=run.config.text)
    d = fresh.item_tower.output_dim  # the towers' columns (the prior and the text profile follow, set after training)
    emb = HybridScorer(fresh, run.query_features, run.known, run.catalogue.item_ids[:50]).item_embeddings[:, :d]
    trained = result.recommender.item_embeddings[:50, :d]
    assert np.abs(emb - trained).max() > 1e-2
    info = json.loads((__import__("pathlib").Path(result.run_dir) / MODEL_DIR / INFO_FILE).read_text())
    assert info["kind"] == "hybrid" and info["parts"] == ["lookup", "item_tower", "query_tower"]


@pytest.mark.slow
def test_load_run_says_what_is_wrong(ml100k_demo, tmp_path):
    result, _ = ml100k_demo
    with pytest.raises(ConfigError, match="is not a run folder: it has no config.json"):
        load_run(tmp_path)
    bare = tmp_path / "old-run"
    bare.mkdir()
    shutil.copy(f"{result.run_dir}/config.json", bare / "config.json")
    with pytest.raises(ConfigError, match=r"has no trained model \(model/model.json is missing\)"):
        load_run(bare)
    # A run whose data changed since: the catalogue fingerprint no longer matches.
    shutil.copytree(f"{result.run_dir}/{MODEL_DIR}", bare / MODEL_DIR)
    info = json.loads((bare / MODEL_DIR / INFO_FILE).read_text())
    (bare / MODEL_DIR / INFO_FILE).write_text(json.dumps({**info, "catalogue_fingerprint": "0" * 64}))
    with pytest.raises(DataError, match="is not the data run old-run was trained on"):
        load_run(bare)
    # Ranker weights that no longer fit the ranker the config builds (e.g. tfrec changed its layers).
    ranker = dict(info["ranker"], variables=[[n, [s[0] + 1, *s[1:]] if s else [2], d]
                                             for n, s, d in info["ranker"]["variables"]])
    (bare / MODEL_DIR / INFO_FILE).write_text(json.dumps({**info, "ranker": ranker}))
    with pytest.raises(DataError, match="ranker weights in .* do not fit the ranker rebuilt from config.json"):
        load_run(bare)


def test_run_folders_from_before_the_popularity_features_reload_without_them(tmp_path):
    from tfrec.cli.artifacts import read_run_config
    from tfrec.config import RunConfig

    saved = RunConfig().to_dict()
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert read_run_config(tmp_path).ranking.popularity_days == 30  # written with the key: as written
    del saved["ranking"]["popularity_days"]  # a run of a tfrec without the key trained its ranker without them
    (tmp_path / "config.json").write_text(json.dumps(saved))
    config = read_run_config(tmp_path)
    assert config.ranking.popularity_days == 0 and config.ranking.epochs == RunConfig().ranking.epochs
    del saved["model"]["popularity_prior"]  # before the retrieval model's popularity prior: served without it
    (tmp_path / "config.json").write_text(json.dumps(saved))
    assert read_run_config(tmp_path).model.popularity_prior == (0.0,)


def test_save_model_refuses_a_model_with_a_variable_no_saved_part_holds(tmp_path, monkeypatch):
    # The class of bug behind session 12's fix: a model-level variable (the repeat penalty) beside the
    # saved towers was silently left out of run folders. save_model now checks every variable.
    import tensorflow as tf

    from tfrec.cli import artifacts
    from tfrec.errors import TfrecError
    from tests.models.worlds import seeded_hybrid, synthetic_world

    world = synthetic_world(60, 40, 1500, data_seed=5, split="temporal", text_dim=8, history_length=5,
                            val_fraction=0.1, test_fraction=0.1)
    data, split, cat, text, qf = world
    model = seeded_hybrid(world, repeat_penalty=True)
    feats = qf.build(split.train.head(2), context=split.train)
    model.query_embedding({k: tf.constant(v) for k, v in feats.items()})
    model.item_embeddings(tf.constant(list(cat.item_ids[:2])))
    assert artifacts._unsaved_variables(model, "hybrid") == []
    artifacts.save_model(tmp_path / "ok", model)  # saved, penalty included
    monkeypatch.setattr(artifacts, "_weight_parts", lambda m, kind: artifacts.WEIGHT_PARTS[kind])  # the old parts
    assert artifacts._unsaved_variables(model, "hybrid") == [model._repeat_raw.name]
    with pytest.raises(TfrecError, match="would not hold the model's variables"):
        artifacts.save_model(tmp_path / "bad", model)
    assert not (tmp_path / "bad").exists()
