"""Probe (issue #6): does averaging several rankers (bagging over training seeds) make
re-ranking's gain over retrieval reliable? On one `tfrec run` folder's retrieval model
(loaded, not retrained), trains one ranker per seed exactly as `tfrec run` does
(`train_ranker`: early stopping and its own blend chosen on validation), then the
ensemble: the members' relevance and rating averaged, with one blend with the retriever's
score (`TwoStageValidation.tune_blend`). Reports validation two-stage NDCG@10 of each
member as `train_ranker` chose it; then, since `train_ranker` ends by refitting the
rankers' rating base and popularity features and the retriever's prior on train +
validation (what the test period may know), validation two-stage NDCG@10 and rating RMSE
of each member and of the ensemble measured after that refit (optimistic, so comparable
only with each other; the ensemble's blend is chosen there); and on test (not used for
any choice) two-stage minus retrieval NDCG@10 (paired, 95% CI) and rating RMSE
against the bias model. Rows are merged by the run folder's name into
bench/results/ranker_bagging_ml100k.json (atomic write). Not a library feature: the
ensemble lives here (session 24 found it did not help on test, see docs/two_stage_results.md).

    .venv/bin/python bench/ranker_bagging.py RUN_DIR SEED [SEED ...]     # ~4 min for 4 seeds
"""
import dataclasses
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401  (before TensorFlow: selects tf.keras 2)
import tensorflow as tf  # noqa: E402

from bench._common import machine_info, two_stage_test_reports, write_json  # noqa: E402

OUT = ROOT / "bench" / "results" / "ranker_bagging_ml100k.json"


class SharedBlend:
    """The members' `blend` variables set together (relevance = head + blend x the retriever's score)."""

    def __init__(self, members):
        self.members = members

    def assign(self, value):
        for m in self.members:
            m.blend.assign(value)

    def numpy(self):
        return self.members[0].blend.numpy()


class RankerEnsemble:
    """Duck-types a ranker where the evaluation code reads one (`score`, `blend`, `retrieval`):
    the members' outputs averaged (with one blend, the average relevance is the average head
    + blend x the retriever's score)."""

    def __init__(self, members):
        self.members, self.retrieval, self.blend = members, members[0].retrieval, SharedBlend(members)

    def score(self, features, candidate_ids, training=False):
        outs = [m.score(features, candidate_ids, training=training) for m in self.members]
        return {k: tf.add_n([o[k] for o in outs]) / len(outs) for k in ("relevance", "rating")}


def test_row(run, ranker):
    """Test two-stage minus retrieval NDCG@10 and the rating comparison, as `tfrec run` measures them."""
    report, ratings = two_stage_test_reports(run, ranker, run.config)
    c = report["comparisons"][0]
    r, b = ratings["tfrec ranker"], ratings["user_item_bias"]
    return {"two_stage_minus_retrieval_ndcg@10": {k: c.get(k) for k in ("mean_diff", "low", "high", "p_value")},
            "rating_rmse": r["rmse"], "bias_rmse": b["rmse"], "rating_rmse_online": r["online"]["rmse"],
            "bias_rmse_online": b["online"]["rmse"],
            "squared_error_minus_bias": {k: r["squared_error_vs_user_item_bias"].get(k)
                                         for k in ("mean_diff", "low", "high", "p_value")}}


def main(argv):
    from tfrec.cli.artifacts import load_run
    from tfrec.cli.ranking_stage import TwoStageValidation, ranker_ratings, train_ranker
    from tfrec.cli.retrieval_stage import early_stopping_parts, validation_excludes_seen
    from tfrec.evaluation.rating import rmse

    if len(argv) < 2:
        raise SystemExit(__doc__)
    run_dir, seeds = argv[0], [int(s) for s in argv[1:]]
    start = time.time()
    run = load_run(run_dir, log=lambda *a: None)
    cfg, split, cat = run.config, run.split, run.catalogue
    members, rows = [], []
    for s in seeds:
        c = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=s),
                                eval=dataclasses.replace(cfg.eval, baselines=[]))
        t = time.time()
        ranker, info = train_ranker(c, run.data, split, cat, run.text_embeddings, run.model, run.query_features,
                                    log=lambda *a: None)
        blend = info["retrieval_blend"]
        val = next(x for x in blend["trials"] if x["blend"] == blend["blend"])["val_two_stage_ndcg@10"]
        members.append(ranker)
        rows.append({"seed": s, "seconds": round(time.time() - t, 1), "epochs": info["epochs"],
                     "blend": blend["blend"], "val_two_stage_ndcg@10": val})
        print(f"member seed {s}: {info['epochs']} epochs, blend {blend['blend']:g}, validation two-stage "
              f"NDCG@10 {val:.4f}", flush=True)
    r = cfg.ranking
    fit_part, val_part = early_stopping_parts(split, r.early_stopping_patience, cfg.train.seed, lambda *a: None,
                                              "rank")
    validation = TwoStageValidation(run.model, run.query_features, fit_part, val_part, cat, n_candidates=r.candidates,
                                    log=lambda *a: None, exclude_seen=validation_excludes_seen(cfg.eval))
    # `train_ranker` ends by refitting each ranker's rating base and popularity features, and
    # the retriever's prior, on train + validation: validation measured after it is optimistic.
    # The members and their average are compared with each other on it, like for like (each
    # with its best blend there), and with nothing else.
    ensemble = RankerEnsemble(members)
    inputs = validation.rating_inputs.get("val_rating_rmse")
    y = val_part["rating"].to_numpy() if inputs is not None else None
    for row, m in zip(rows, members):
        trials = validation.tune_blend(RankerEnsemble([m]))["trials"]
        row["val_two_stage_ndcg@10_after_refit"] = max(t["val_two_stage_ndcg@10"] for t in trials)
        if inputs is not None:
            row["val_rating_rmse_after_refit"] = rmse(y, ranker_ratings(m, inputs=inputs))
    tuned = validation.tune_blend(ensemble)
    ens = {"blend": tuned["blend"], "blend_trials": tuned["trials"],
           "val_two_stage_ndcg@10_after_refit": max(t["val_two_stage_ndcg@10"] for t in tuned["trials"])}
    if inputs is not None:
        ens["val_rating_rmse_after_refit"] = rmse(y, ranker_ratings(ensemble, inputs=inputs))
    print(f"after the refit on train + validation: members' validation two-stage NDCG@10 "
          f"{[round(x['val_two_stage_ndcg@10_after_refit'], 4) for x in rows]}, the average of {len(members)} "
          f"{ens['val_two_stage_ndcg@10_after_refit']:.4f} (blend {tuned['blend']:g})", flush=True)
    for row, m in zip(rows, members):
        m.blend.assign(row["blend"])  # each member on test with its own blend, as `tfrec run` would use it
        row["test"] = test_row(run, m)
    ensemble.blend.assign(tuned["blend"])
    ens["test"] = test_row(run, ensemble)
    for name, row in [(f"seed {x['seed']}", x) for x in rows] + [("ensemble", ens)]:
        d = row["test"]["two_stage_minus_retrieval_ndcg@10"]
        print(f"test {name}: two-stage - retrieval NDCG@10 {d['mean_diff']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"
              f"; rating RMSE {row['test']['rating_rmse']:.4f} (bias {row['test']['bias_rmse']:.4f})")
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "ranker_bagging", "runs": {}}
    doc["runs"][pathlib.Path(run_dir).name] = {
        "retrieval_seed": cfg.train.seed, "members": rows, "ensemble": ens, "seconds": round(time.time() - start, 1)}
    doc["machine"] = machine_info()
    write_json(OUT, doc)


if __name__ == "__main__":
    main(sys.argv[1:])
