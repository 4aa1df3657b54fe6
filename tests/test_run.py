"""The main job end to end on the real MovieLens-100K files with the real MiniLM."""
import json
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tfrec.cli.main import main
from tfrec.cli.run import run
from tfrec.models.text_profile import PROFILE_FEATURE
from tests.conftest import demo_overrides
from tfrec.config import load_config


def _cfg(root, ml100k_path, *extra):
    return load_config(None, demo_overrides(root, ml100k_path, *extra))


@pytest.fixture
def demo(ml100k_demo):
    return ml100k_demo  # one main job per session (tests/conftest.py)


@pytest.mark.slow
def test_run_writes_a_complete_run_folder(demo):
    result, root = demo
    run_dir = root / "runs" / result.run_dir.rsplit("/", 1)[-1]
    for name in ("config.json", "metrics.json", "metrics.md", "run.log", "metric_bars.png", "recall_vs_k.png",
                 "popularity.png", "coverage.png", "model/model.json", "model/weights.index", "model/ranker.index"):
        assert (run_dir / name).exists(), name
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["config"]["train"]["epochs"] == 2 and saved["config"]["model"]["kind"] == "hybrid"
    assert saved["data"]["interactions"] == 100_000
    models = saved["models"]
    assert set(models) == {"random", "most_popular", "recent_popular", "ease", "tfrec hybrid", "tfrec two-stage"}
    for m in models.values():
        lo, hi = m["ci95"]["ndcg@10"]
        assert lo <= m["mean"]["ndcg@10"] <= hi
    assert len(saved["train"]["validation"]) >= 1  # full-catalogue validation ran every epoch
    table = (run_dir / "metrics.md").read_text()
    assert all(name in table for name in models)
    assert not list((root / "runs").glob(".tmp-*"))


def _request(result, users):
    """Raw serving inputs for `users`, built the way a client would: from the tables."""
    qf = result.recommender.query_features
    known = result.recommender.known
    events = known[known.user_id.isin(users)].sort_values("timestamp").groupby("user_id").tail(1).copy()
    events["timestamp"] += 1  # a request just after each user's last known event
    events = events.set_index("user_id").loc[users].reset_index()
    feats = qf.build(events, context=known)
    return {k: v.tolist() if v.dtype == object else v.tolist() for k, v in feats.items()}, events


@pytest.mark.slow
def test_export_reloads_in_a_fresh_process_with_the_in_memory_top_k(demo, tmp_path):
    result, _ = demo
    users = ["1", "42", "943"]
    request, events = _request(result, users)
    # Reference: numpy top-k of the in-memory query and item embeddings (the `retrieve` stage),
    # and the in-memory two-stage Recommender (retrieve 200 -> rank) for `serving_default`.
    rec = result.recommender
    q = rec.scorer.query_embeddings(events)
    want = rec.item_ids[np.argsort(-(q @ rec.item_embeddings.T), axis=1, kind="stable")[:, :20]]
    two_stage = [rec.recommend(u, k=20, timestamp=int(t), exclude_seen=False)["item_id"].astype(str).tolist()
                 for u, t in zip(events["user_id"], events["timestamp"])]
    (tmp_path / "req.json").write_text(json.dumps(request))
    code = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf, tensorflow_text
        req = json.load(open({str(tmp_path / 'req.json')!r}))
        m = tf.saved_model.load({result.export_path!r})
        sig = m.signatures["serving_default"]
        feats = {{k: tf.constant(v, dtype=sig.structured_input_signature[1][k].dtype) for k, v in req.items()}}
        out = sig(**feats)
        ret = m.signatures["retrieve"](**feats)
        ex = m.signatures["recommend"](exclude_item_ids=out["item_ids"][:, :2], **feats)
        print(json.dumps({{"ids": out["item_ids"].numpy().astype(str).tolist(),
                           "scores": out["scores"].numpy().tolist(),
                           "retrieved": ret["item_ids"].numpy().astype(str).tolist(),
                           "ex": ex["item_ids"].numpy().astype(str).tolist(),
                           "sigs": sorted(m.signatures)}}))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert {"serving_default", "recommend", "retrieve", "encode_items", "rank", "explain"} <= set(got["sigs"])
    np.testing.assert_array_equal(np.array(got["retrieved"])[:, :20], want)
    assert [row[:20] for row in got["ids"]] == two_stage
    assert all(np.all(np.diff(s) <= 0) for s in got["scores"])
    for row, ex_row in zip(got["ids"], got["ex"]):
        # Excluding the top two removes exactly them; the other items keep their order (the
        # candidate that takes the freed retrieval slot may enter anywhere).
        assert not set(row[:2]) & set(ex_row)
        assert [i for i in ex_row if i in row] == [i for i in row[2:] if i in ex_row]


@pytest.mark.slow
def test_two_tower_main_job(tmp_path, ml100k_path):
    result = run(_cfg(tmp_path, ml100k_path, "--model.kind=two_tower", "--train.epochs=1",
                      "--eval.baselines=most_popular", "--train.optimizer=adagrad", "--train.learning_rate=0.1"))
    assert set(result.metrics["models"]) == {"most_popular", "tfrec two-tower (ids)"}
    import tensorflow as tf

    loaded = tf.saved_model.load(result.export_path)
    users = ["1", "42", "unknown"]
    q = result.model.query_tower(tf.constant(users)).numpy()
    items = result.catalogue.item_ids.astype(str)
    scores = q @ result.model.candidate_tower(tf.constant(items)).numpy().T
    want = items[np.argsort(-scores, axis=1, kind="stable")[:, :20]]
    got = loaded.signatures["serving_default"](user_id=tf.constant(users))["item_ids"].numpy()[:, :20].astype(str)
    np.testing.assert_array_equal(got, want)


def test_cli_bad_input_exits_cleanly_and_leaves_no_run_folder(tmp_path, capsys):
    rc = main(["run", "--data", str(tmp_path / "nope"), f"--run_root={tmp_path / 'runs'}"])
    err = capsys.readouterr().err
    assert rc == 2 and "tfrec: error:" in err and "nope" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    rc = main(["run", "--train.epoch=3"])
    assert rc == 2 and "Did you mean `train.epochs`" in capsys.readouterr().err


@pytest.mark.slow
def test_two_stage_main_job_reports_both_stages_and_exports_rank(demo):
    import tensorflow as tf

    result, _ = demo
    m = result.metrics
    comp = [c for c in m["comparisons"] if c["a"] == "tfrec two-stage" and c["b"] == "tfrec hybrid"]
    assert {c["metric"] for c in comp} >= {"ndcg@10", "recall@20"}
    for c in comp:
        assert c["low"] <= c["mean_diff"] <= c["high"]
    ratings = m["ranking"]["ratings"]
    assert set(ratings) == {"global_mean", "user_item_bias", "tfrec ranker"}
    assert ratings["user_item_bias"]["rmse"] < ratings["global_mean"]["rmse"]  # the bias baseline is not broken
    loaded = tf.saved_model.load(result.export_path)
    assert {"rank", "retrieve", "serving_default", "explain"} <= set(loaded.signatures)
    meta = json.loads((pathlib.Path(result.export_path) / "assets.extra" / "tfrec_export.json").read_text())
    assert meta["two_stage"] and meta["retrieve_k"] == 200
    # The served two-stage list equals the in-memory ranker's order of the served retrieval candidates.
    rec = result.recommender
    feats = rec.query_features_of("42", timestamp=int(rec.known.timestamp.max()) + 1)
    assert rec.model.text_profile is not None  # on by default: the request sends the whole history as `history`
    inputs = {k: tf.constant(v) for k, v in feats.items() if k != PROFILE_FEATURE}
    inputs["history"] = tf.constant(feats[PROFILE_FEATURE])
    served = loaded.signatures["serving_default"](**inputs)["item_ids"].numpy()[0].astype(str)
    cands = loaded.signatures["retrieve"](**inputs)["item_ids"].numpy()[0].astype(str)
    from tfrec.models.two_stage import rank_candidates

    rel, _ = rank_candidates(rec.ranker, feats, cands[None, :].astype(object))
    want = cands[np.argsort(-rel[0], kind="stable")[:10]]
    assert served[:10].tolist() == want.tolist()


@pytest.mark.slow
def test_cold_item_split_reports_the_hybrid_against_content_with_the_same_information(tmp_path, ml100k_path):
    # The hybrid is asked just after each user's last train/validation event, as much as the
    # baselines fold in; its query history must then hold the user's latest known items.
    import pandas as pd

    cfg = _cfg(tmp_path, ml100k_path, "--split.kind=cold_items", "--model.use_text=false", "--train.epochs=1",
               "--eval.baselines=most_popular", "--eval.n_bootstrap=50", "--export.enabled=false",
               "--ranking.enabled=false")
    result = run(cfg)
    cold = result.metrics["cold_start"]
    assert {"tfidf_content", "most_popular", "random", "tfrec hybrid"} <= set(cold["models"])
    assert cold["n_cold_items"] == len(result.split.cold_items) and cold["n_users"] > 500
    h = cold["models"]["tfrec hybrid"]
    assert h["ci95"]["ndcg@10"][0] <= h["mean"]["ndcg@10"] <= h["ci95"]["ndcg@10"][1]
    from tfrec.evaluation.cold_start import cold_queries

    events, seen = cold_queries(result.split, "known")
    known = pd.concat([result.split.train, result.split.val])
    assert len(seen) == len(known)
    # Independent check of one user's query time: one second after their last known event.
    user = events["user_id"].iloc[0]
    last = known.loc[known["user_id"] == user, "timestamp"].max()
    cold_events = result.split.test[result.split.test["item_id"].isin(result.split.cold_items)]
    assert events["timestamp"].iloc[0] == (last + 1 if pd.notna(last) else
                                           cold_events.query("user_id == @user")["timestamp"].min())


@pytest.mark.slow
def test_a_run_with_the_content_prior_predicts_cold_items_prior_and_reloads_it(tmp_path, ml100k_path):
    """`--model.content_prior=true` on the cold-item split: the held-out items get a
    predicted prior (they have no interactions), a reloaded run folder recomputes the same
    values, and an old folder (config without the key) loads with the content prior off."""
    import tensorflow as tf

    from tfrec.cli.artifacts import load_run

    cfg = _cfg(tmp_path, ml100k_path, "--split.kind=cold_items", "--model.content_prior=true",
               "--model.use_text=false", "--train.epochs=1", "--eval.baselines=", "--eval.n_bootstrap=50",
               "--export.enabled=false", "--ranking.enabled=false")
    result = run(cfg)
    model = result.model
    assert model.content_prior is not None and model.popularity_prior[0] > 0
    cold = tf.constant([str(i) for i in result.split.cold_items])
    ids = tf.constant(list(model.lookup.item_ids))
    got = model.prior_column(cold).numpy()
    assert (got > 0).mean() > 0.9 and np.unique(np.round(got, 5)).size > 10  # predicted, item by item
    loaded = load_run(result.run_dir)
    np.testing.assert_allclose(loaded.model.prior_column(ids).numpy(), model.prior_column(ids).numpy(),
                               rtol=1e-5, atol=1e-6)
    assert "tfrec hybrid" in result.metrics["cold_start"]["models"]
    path = pathlib.Path(result.run_dir) / "config.json"
    saved = json.loads(path.read_text())
    del saved["model"]["content_prior"]  # as written before the option existed
    path.write_text(json.dumps(saved))
    assert load_run(result.run_dir).model.content_prior is None


@pytest.mark.slow
def test_a_run_with_the_repeat_penalty_reloads_and_exports_the_learned_penalty(tmp_path, ml100k_path):
    # The penalty is a model-level variable beside the towers: the run folder must carry it,
    # or `tfrec export --run` / `tfrec explain --run` would serve its initial value.
    from tfrec.cli.artifacts import load_run
    from tfrec.cli.export import export_run
    from tfrec.export.retrieval import METADATA_FILE

    cfg = _cfg(tmp_path, ml100k_path, "--model.repeat_penalty=true", "--model.use_text=false", "--train.epochs=1",
               "--eval.baselines=", "--eval.n_bootstrap=50", "--export.enabled=false", "--ranking.enabled=false")
    result = run(cfg)
    learned = float(result.model.repeat_penalty)
    initial = float(np.log1p(np.exp(-3.0)))  # softplus of the initial raw value
    assert abs(learned - initial) > 1e-3  # trained, so a reload of the initial value would show
    loaded = load_run(result.run_dir)
    assert float(loaded.model.repeat_penalty) == pytest.approx(learned, rel=1e-6)
    path = export_run(loaded, root=str(tmp_path / "exported"))
    meta = json.loads((pathlib.Path(path) / "assets.extra" / METADATA_FILE).read_text())
    assert meta["repeat_penalty"][0] == pytest.approx(learned, rel=1e-6)
    # A folder saved without it (tfrec before this fix) is refused by name, not served with p's initial value.
    from tfrec.cli.artifacts import INFO_FILE, MODEL_DIR
    from tfrec.errors import DataError

    info_path = pathlib.Path(result.run_dir) / MODEL_DIR / INFO_FILE
    info = json.loads(info_path.read_text())
    assert info["parts"] == ["lookup", "item_tower", "query_tower", "repeat_penalty"]
    info_path.write_text(json.dumps({**info, "parts": info["parts"][:3]}))
    with pytest.raises(DataError, match="holds no repeat_penalty weights"):
        load_run(result.run_dir)


@pytest.mark.slow
def test_a_run_with_the_text_profile_scores_reloads_and_exports_it(tmp_path, ml100k_path):
    """`--model.text_profile` on the cold-item split with the real MiniLM: the held-out items
    (no trained id) carry the profile's block, a reloaded run folder has the same setting and
    vectors, and its export's query model reads the profile from the whole history it is sent."""
    import tensorflow as tf

    from tfrec.cli.artifacts import load_run
    from tfrec.cli.export import export_run
    from tfrec.models.scoring import HybridScorer

    # The co-occurrence block fixed on too (a single weight is not chosen): both long-history blocks
    # through the run folder and the export.
    # With the profile's lexical term (the TF-IDF cosine of the items' template texts) too, its columns cut to
    # the 1,000 words of the most texts.
    cfg = _cfg(tmp_path, ml100k_path, "--split.kind=cold_items", "--model.text_profile=0.5", "--train.epochs=1",
               "--model.text_profile_lexical=0.5", "--model.text_profile_lexical_terms=1000",
               "--model.cooccurrence=0.5", "--model.cooccurrence_rank=32",
               "--eval.baselines=", "--eval.n_bootstrap=50", "--export.enabled=false", "--ranking.enabled=false")
    result = run(cfg)
    model = result.model
    d = model.item_tower.output_dim + 1  # the tower's vector and the popularity prior's coordinate
    assert model.text_profile.weight == 0.5 and model.text_profile.shrinkage == 40.0
    from tfrec.evaluation.baselines.tfidf_content import tfidf_matrix
    from tfrec.text.template import item_texts

    vocabulary = tfidf_matrix(list(item_texts(result.data.items)))[0].shape[1]  # the catalogue's words
    assert model.text_profile.lexical_weight == 0.5 and model.text_profile.lexical.n_words == vocabulary > 2000
    assert model.text_profile.lexical.dim == 1000 and model.text_profile.dim == 64 + 1000  # texts, then words
    assert model.text_profile.projection.shape == (384, 64)  # MiniLM's 384 dimensions in the default 64 directions
    assert result.metrics["train"]["cooccurrence"]["weight"] == model.cooccurrence.weight == 0.5
    assert model.block_columns("cooccurrence") == (d, d + 32)
    a, z = model.block_columns("text_profile")
    assert z == d + 32 + model.text_profile.dim
    cold = tf.constant([str(i) for i in result.split.cold_items])
    warm = tf.constant(list(model.item_tower.item_vocabulary)[:50])
    assert np.abs(model.item_embeddings(cold).numpy()[:, a:z]).max() > 0.01  # held out: the text block
    assert np.abs(model.item_embeddings(warm).numpy()[:, a:z]).max() == 0.0  # trained ids: none
    assert np.abs(model.item_embeddings(cold).numpy()[:, d:a]).max() < 1e-6  # no interactions: no co-occurrence
    assert np.abs(model.item_embeddings(warm).numpy()[:, d:a]).max() > 0.01
    assert "tfrec hybrid" in result.metrics["cold_start"]["models"]
    loaded = load_run(result.run_dir)
    assert loaded.model.text_profile.weight == 0.5 and loaded.model.cooccurrence.weight == 0.5
    assert loaded.model.text_profile.lexical_weight == 0.5 and loaded.model.text_profile.lexical.dim == 1000
    ids = tf.constant(list(model.lookup.item_ids))
    np.testing.assert_allclose(loaded.model.item_embeddings(ids).numpy(), model.item_embeddings(ids).numpy(),
                               atol=1e-5)
    path = export_run(loaded, root=str(tmp_path / "exported"))
    known = loaded.known
    user = str(known["user_id"].value_counts().index[0])  # hundreds of known items: more than the tower's 20
    ts = int(known["timestamp"].max()) + 1
    history = known[known["user_id"].astype(str) == user].sort_values("timestamp", kind="mergesort")
    request = {"user_id": tf.constant([user]), "timestamp": tf.constant([ts], tf.int64),
               "history": tf.constant([history["item_id"].astype(str).tolist()])}
    request.update({k: tf.constant(v) for k, v in loaded.query_features.attributes([user]).items()})
    got = tf.saved_model.load(path).signatures["encode_query"](**request)["embedding"].numpy()
    import pandas as pd

    want = HybridScorer(loaded.model, loaded.query_features, known, list(model.lookup.item_ids)).query_embeddings(
        pd.DataFrame({"user_id": [user], "timestamp": [ts]}))
    assert got.shape[1] == d + 32 + model.text_profile.dim
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.abs(got[0, d:a]).max() > 0.01  # the co-occurrence block read the whole history sent


@pytest.mark.slow
def test_refit_trains_a_fresh_model_on_train_and_validation_with_the_choices_and_reloads_it(tmp_path, ml100k_path):
    """`--train.refit=true`: after early stopping and the choices made on validation, the run's
    model is a fresh one trained on train + validation for the best epoch count, with those
    choices; ids first seen in validation get trained rows, and the run folder reloads it. With
    the ranking stage, the ranker chosen on the first retriever is refitted on the refitted one."""
    import tensorflow as tf

    from tfrec.cli.artifacts import load_run
    from tfrec.models.scoring import HybridScorer

    cfg = _cfg(tmp_path, ml100k_path, "--train.refit=true", "--model.use_text=false", "--train.epochs=3",
               "--train.early_stopping_patience=1", "--model.cooccurrence=0.5", "--model.cooccurrence_rank=32",
               "--eval.baselines=", "--eval.n_bootstrap=50", "--export.enabled=false",
               "--ranking.early_stopping_patience=1", "--ranking.num_hard_negatives=2",
               "--ranking.blend_by_history=true")
    result = run(cfg)
    model, split, train = result.model, result.split, result.metrics["train"]
    best = max(train["validation"], key=lambda h: h["val_recall@20"])["epoch"]
    assert train["refit"]["epochs"] == best == len(train["refit"]["mean_batch_loss"])
    assert train["refit"]["interactions"] == len(split.train) + len(split.val)
    users, items = (set(split.val[c].astype(str)) - set(split.train[c].astype(str)) for c in ("user_id", "item_id"))
    assert users and items  # the temporal split's validation brings new users and items
    assert users <= set(model.query_tower.user_vocabulary) and items <= set(model.item_tower.item_vocabulary)
    prior = train["popularity_prior"]
    assert model.popularity_prior == (prior["weight"], prior["days"]) and prior["weight"] > 0
    assert model.cooccurrence.weight == 0.5 == train["cooccurrence"]["weight"]
    loaded = load_run(result.run_dir)
    assert set(loaded.model.query_tower.user_vocabulary) == set(model.query_tower.user_vocabulary)
    ids = tf.constant(list(model.lookup.item_ids))
    np.testing.assert_allclose(loaded.model.item_embeddings(ids).numpy(), model.item_embeddings(ids).numpy(),
                               atol=1e-5)
    queries = split.test.groupby("user_id").head(1).head(20)[["user_id", "timestamp"]]
    want = HybridScorer(model, result.recommender.query_features, loaded.known, list(model.lookup.item_ids))
    got = HybridScorer(loaded.model, loaded.query_features, loaded.known, list(model.lookup.item_ids))
    np.testing.assert_allclose(got.query_embeddings(queries), want.query_embeddings(queries), atol=1e-5)
    # The ranking stage: refitted for its best epoch on the refitted retriever, with the chosen blend.
    ranking = result.metrics["ranking"]["train"]
    ranker = result.recommender.ranker
    assert ranking["refit"]["interactions"] == len(split.train) + len(split.val) and ranking["refit"]["epochs"] == 1
    assert ranker.retrieval is model and float(ranker.blend.numpy()) == ranking["retrieval_blend"]["blend"]
    # `ranking.blend_by_history`: the empty-history blend, chosen apart, is refitted and reloaded with it.
    assert float(ranker.blend_new.numpy()) == ranking["retrieval_blend"]["blend_new"] == ranking["refit"][
        "retrieval_blend_new"] == float(loaded.ranker.blend_new.numpy())
    assert ranking["retrieval_blend"]["trials"][0]["users_new"] > 0
    assert users <= set(ranker.query_tower.user_vocabulary) and items <= set(ranker.item_tower.item_vocabulary)
    assert "tfrec two-stage" in result.metrics["models"] and result.metrics["ranking"]["ratings"]
    from tfrec.cli.ranking_stage import rating_inputs
    from tfrec.models.two_stage import rank_candidates

    feats, _ = rating_inputs(loaded.query_features, split.test.groupby("user_id").head(1).head(20), loaded.known)
    cands = np.asarray(list(model.lookup.item_ids)[:30], dtype=object)[None, :].repeat(20, axis=0)
    for got, want in zip(rank_candidates(loaded.ranker, feats, cands), rank_candidates(ranker, feats, cands)):
        np.testing.assert_allclose(got, want, atol=1e-4)
    # Called directly (bench/refit.py does, with the flag off), it still trains on train + validation.
    import dataclasses

    from tfrec.cli.retrieval_stage import refit_hybrid

    off = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, refit=False))
    text = np.zeros((result.catalogue.n_items, 1), np.float32)  # --model.use_text=false, as `tfrec run` passes
    _, _, info = refit_hybrid(off, result.data, split, result.catalogue, text, model, train, log=lambda *a: None)
    assert info["interactions"] == len(split.train) + len(split.val)


def test_refit_is_refused_before_any_data_is_read_where_it_does_not_apply(tmp_path):
    from tfrec.errors import ConfigError

    for extra, message in ((["--model.kind=two_tower"], "the two-tower is not refitted"),
                           (["--ranking.mode=joint"], "Fix: add `--ranking.mode=separate`")):
        cfg = load_config(None, ["--train.refit=true", f"--run_root={tmp_path / 'runs'}",
                                 f"--data.source={tmp_path / 'nope'}", *extra])
        with pytest.raises(ConfigError, match=message):
            run(cfg)
    assert not (tmp_path / "runs").exists()
