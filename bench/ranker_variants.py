"""Ranking-stage variants on one trained retrieval model (issue #6): trains a ranker
with `ranking.*` overrides on top of a `tfrec run` folder's retrieval model and
reports validation (per epoch) and test numbers: two-stage vs retrieval NDCG@10
(paired), rating RMSE vs the bias baseline (static and online).

    .venv/bin/python bench/ranker_variants.py RUN_DIR NAME [key=value ...] [seed=N]

e.g. `bench/ranker_variants.py runs/<make demo run> bias_base rating_base=bias`;
`model.KEY=VALUE` changes the ranker's own towers (e.g. `model.use_id=false`: no id
embeddings; the loaded retriever is not rebuilt); `seed=N` sets `train.seed` (the
ranker's initialisation, shuffling and hard-negative draws) to measure how much a
result moves between training runs.
The retrieval model is the run's (loaded, not retrained); the ranker is trained
exactly as `tfrec run` trains it (`tfrec.cli.ranking_stage.train_ranker`, early
stopping on validation two-stage NDCG@10). Choose variants by their validation
rows; the test rows are reported, not tuned on. Rows are merged by NAME into
bench/results/ranker_variants_ml100k.json (atomic write).
"""
import dataclasses
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from bench._common import machine_info, two_stage_test_reports, write_json  # noqa: E402

OUT = ROOT / "bench" / "results" / "ranker_variants_ml100k.json"


def _value(current, value):
    if isinstance(current, bool):
        return value == "true"
    if isinstance(current, tuple):
        return tuple(int(v) for v in value.split(","))
    return type(current)(value)


def _parse(cfg, items, section="ranking"):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not hasattr(cfg, key):
            raise SystemExit(f"unknown {section} option {key!r}")
        out[key] = _value(getattr(cfg, key), value)
    return out


def main(argv):
    from tfrec.cli.artifacts import load_run
    from tfrec.cli.ranking_stage import train_ranker

    run_dir, name = argv[0], argv[1]
    seeds = [a for a in argv[2:] if a.startswith("seed=")]
    overrides = [a for a in argv[2:] if not a.startswith("seed=") and not a.startswith("model.")]
    start = time.time()
    run = load_run(run_dir, log=print)
    ov = _parse(run.config.ranking, overrides)
    # `model.KEY=VALUE`: the ranker's own towers (`build_ranker` reads `config.model`); the loaded
    # retrieval model is not rebuilt, so it is unaffected (separate mode).
    model_ov = _parse(run.config.model, [a[len("model."):] for a in argv[2:] if a.startswith("model.")], "model")
    train = run.config.train
    if seeds:
        train = dataclasses.replace(train, seed=int(seeds[-1].partition("=")[2]))
    cfg = dataclasses.replace(run.config, ranking=dataclasses.replace(run.config.ranking, **ov), train=train,
                              model=dataclasses.replace(run.config.model, **model_ov),
                              eval=dataclasses.replace(run.config.eval, baselines=[]))
    split, cat = run.split, run.catalogue
    ranker, info = train_ranker(cfg, run.data, split, cat, run.text_embeddings, run.model, run.query_features)
    report, ratings = two_stage_test_reports(run, ranker, cfg)
    ranker_r, bias_r = ratings["tfrec ranker"], ratings["user_item_bias"]
    row = {"overrides": {**ov, **{f"model.{k}": v for k, v in model_ov.items()}}, "seed": train.seed,
           "seconds": round(time.time() - start, 1),
           "retrieval_run": pathlib.Path(run_dir).name, "validation": info["validation"],
           "rating_base": info.get("rating_base"), "retrieval_blend": info.get("retrieval_blend"),
           "test": {"two_stage_vs_retrieval": report["comparisons"],
                    "rating_rmse": {"ranker": ranker_r["rmse"], "bias": bias_r["rmse"],
                                    "ranker_online": ranker_r["online"]["rmse"],
                                    "bias_online": bias_r["online"]["rmse"]},
                    "ranker_minus_bias_squared_error": ranker_r["squared_error_vs_user_item_bias"],
                    "online_ranker_minus_bias_squared_error":
                        ranker_r["online"]["squared_error_vs_user_item_bias"]}}
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "ranker_variants", "rows": {}}
    doc["rows"][name] = row
    doc["machine"] = machine_info()
    write_json(OUT, doc)
    ndcg = report["comparisons"][0]
    blend = info.get("retrieval_blend") or {}
    chosen = [t for t in blend.get("trials", []) if t["blend"] == blend.get("blend")]
    if chosen:
        val = chosen[0]["val_two_stage_ndcg@10"]
        print(f"{name}: blend {blend['blend']:g}, validation two-stage NDCG@10 {val:.4f}")
    print(f"{name}: two-stage - retrieval NDCG@10 {ndcg['mean_diff']:+.4f} [{ndcg['low']:+.4f}, {ndcg['high']:+.4f}]; "
          f"rating RMSE ranker {ranker_r['rmse']:.4f} vs bias {bias_r['rmse']:.4f} (online "
          f"{ranker_r['online']['rmse']:.4f} vs {bias_r['online']['rmse']:.4f}) -> {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
