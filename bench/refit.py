"""Does `train.refit` help? Measured one level down, on validation only (issue #5).

A refit consumes the validation split, so it cannot be chosen on it. This bench makes the
choice one level down: from each protocol's TRAIN split it carves an inner validation part
the way the protocol carves validation from all the data (recbole_general: 1/8 of each
user's train interactions at random; recbole_sequential: each user's last train event;
temporal: the last 1/8 of train in time), and uses the protocol's real validation split as
the held-out part. The test split is never read.

  A: `train_hybrid` on the inner train with early stopping and every post-training choice
     (co-occurrence weight, popularity prior) on the inner validation: what `tfrec run` does;
  B: `refit_hybrid` after A (the library's `train.refit` path): a fresh model on inner train +
     inner validation (= the protocol's train) for A's best epoch count, with A's choices
     (under recbole_general its training profiles from the inner train part, which is what
     the held-out queries know, as the protocol's test queries know train only).

`temporal_two_stage` adds the ranking stage as `tfrec run --train.refit=true` trains it: A's
ranker is trained on A's retriever (early stopping and the blend on the inner validation), B's
is `refit_ranker`'s (inner train + inner validation, A's best ranker epoch count and blend, on
B's retriever). Both two-stage models and both rating heads are scored on the held-out part
(ratings with histories from what the queries know, as the test's static comparison), and
the bias model (regularisation tuned on the inner validation, fitted on inner train + inner
validation) beside them.

Both are scored on the protocol's validation split with the same queries, which know what
the protocol's test queries know of their parts: all of train (inner train + inner
validation), or under recbole_general (test queries know train only) the inner train part. Flags per protocol as its test runs use them
(recbole_general: bench/recbole_general.py's chosen variant; recbole_sequential:
bench/recbole_sequential_sweep.py's).

    .venv/bin/python bench/refit.py recbole_general --seeds 42 1 2 3
    .venv/bin/python bench/refit.py temporal --seeds 42 1 2
    .venv/bin/python bench/refit.py recbole_sequential --seeds 42 1 2
    .venv/bin/python bench/refit.py temporal_two_stage --seeds 42 1 2

Rows are merged into bench/results/refit_ml100k.json (atomic write).
"""
import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import machine_info, write_json  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = ROOT / "bench" / "results" / "refit_ml100k.json"
COMMON = ["--train.verbose=0", "--eval.baselines=", "--export.enabled=false", "--ranking.enabled=false",
          "--eval.n_bootstrap=200"]
FLAGS = {"recbole_general": ["--eval.protocol=recbole_general", "--data.history_length=200",
                             "--model.temperature=0.2", "--train.batch_size=4096"],
         # bench/recbole_sequential_sweep.py's chosen setting (GRU over 100 items + the learned repeat penalty)
         "recbole_sequential": ["--eval.protocol=recbole_sequential", "--model.sequence=gru",
                                "--data.history_length=100", "--model.repeat_penalty=true"],
         "temporal": [],  # the main job (`make demo`) as it trains its retriever
         # the main job with its ranking stage: the ranker chosen with A's retriever, refitted on B's
         "temporal_two_stage": ["--ranking.enabled=true"]}
METRICS = ("ndcg@10", "recall@10", "recall@20")


def inner_split(protocol, split, seed):
    """(inner train, inner validation, held-out = the protocol's validation) as a `Split`."""
    import pandas as pd

    from tfrec.data.splits import Split, leave_last_n_split, per_user_random_split, temporal_split

    if protocol == "recbole_general":
        inner = per_user_random_split(split.train, val_fraction=0.0, test_fraction=0.125, seed=seed)
    elif protocol == "recbole_sequential":  # each user's last train event, as validation is the one before test
        inner = leave_last_n_split(split.train, n_last=1, n_val=0)
    else:
        inner = temporal_split(split.train, val_fraction=0.0, test_fraction=0.125)
    return Split(inner.train, pd.concat([inner.val, inner.test], ignore_index=True), split.val, split.kind,
                 split.params)


def score(model, qf, split, catalogue, data, cfg, protocol):
    import pandas as pd

    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.models.scoring import HybridScorer

    known = pd.concat([split.train, split.val], ignore_index=True)
    scorer = HybridScorer(model, qf, known, catalogue.item_ids)
    evaluated = scorer if protocol else (scorer.user_matrix(catalogue, split.test), scorer.item_embeddings)
    rep = evaluate_models({"m": evaluated}, data, split, catalogue, cfg.eval, protocol=protocol,
                          log=lambda *a: None, history_length=cfg.data.history_length)
    return {k: float(rep["models"]["m"]["mean"][k]) for k in METRICS}


def one_seed(protocol_name, seed):
    from tfrec.cli.retrieval_stage import refit_hybrid, train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config
    from tfrec.evaluation.protocols import get_protocol
    from tfrec.features.catalogue import Catalogue

    common = [c for c in COMMON if not (protocol_name == "temporal_two_stage" and c.startswith("--ranking."))]
    cfg = load_config(None, [*common, f"--train.seed={seed}", *FLAGS[protocol_name]])
    quiet = lambda *a: None  # noqa: E731
    data, ia, split, _ = prepare(cfg, quiet)
    text, _ = encode_item_texts(cfg, data.items, quiet)
    protocol = get_protocol(cfg.eval.protocol) if cfg.eval.protocol else None
    inner = inner_split(protocol_name, split, seed)
    catalogue = Catalogue.fit(data.items, inner.train, ia, data.users)
    t0 = time.perf_counter()
    model, history, _, qf = train_hybrid(cfg, data, inner, catalogue, text, log=quiet)
    a_secs = time.perf_counter() - t0
    best = max(history["validation"], key=lambda h: h["val_recall@20"])
    row = {"seed": seed, "inner_train": len(inner.train), "inner_validation": len(inner.val),
           "held_out": len(inner.test), "best_epoch": best["epoch"], "epochs_trained": len(history["validation"]),
           "cooccurrence_weight": history["cooccurrence"].get("weight", 0.0),
           "prior": [history["popularity_prior"]["weight"], history["popularity_prior"]["days"]],
           "A": {**score(model, qf, inner, catalogue, data, cfg, protocol), "seconds": round(a_secs, 1)}}
    t0 = time.perf_counter()
    refit, refit_qf, info = refit_hybrid(cfg, data, inner, catalogue, text, model, history, log=quiet)
    row["B"] = {**score(refit, refit_qf, inner, catalogue, data, cfg, protocol),
                "seconds": round(time.perf_counter() - t0, 1), "epochs": info["epochs"]}
    if protocol_name == "temporal_two_stage":
        two_stage(row, cfg, data, inner, catalogue, text, model, qf, refit, refit_qf, quiet)
    row["B_minus_A"] = {k: round(row["B"][k] - row["A"][k], 4) for k in METRICS}
    return row


def two_stage(row, cfg, data, inner, catalogue, text, model, qf, refit, refit_qf, log):
    """Adds the ranking stage's rows to `row` (see the module docstring): A_two_stage,
    B_two_stage (two-stage metrics and seconds), ratings (held-out RMSE of both heads and the
    bias model)."""
    import pandas as pd

    from tfrec.cli.ranking_stage import ranker_ratings, refit_ranker, train_ranker, two_stage_for_test
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.evaluation.rating import BiasBaseline, rmse, tune_bias

    known = pd.concat([inner.train, inner.val], ignore_index=True)
    y = inner.test["rating"].to_numpy()
    ratings = {"bias": rmse(y, BiasBaseline(**tune_bias(inner.train, inner.val)[0]).fit(known).predict(inner.test))}

    def scored(arm, retriever, ranker, arm_qf, secs):
        scorer = two_stage_for_test(retriever, ranker, arm_qf, known, inner, catalogue, cfg.eval,
                                    cfg.ranking.candidates)
        rep = evaluate_models({"m": scorer}, data, inner, catalogue, cfg.eval, log=log,
                              history_length=cfg.data.history_length)
        row[f"{arm}_two_stage"] = {**{k: float(rep["models"]["m"]["mean"][k]) for k in METRICS},
                                   "ranker_seconds": round(secs, 1)}
        ratings[arm] = rmse(y, ranker_ratings(ranker, arm_qf, inner.test.reset_index(drop=True), known))

    t0 = time.perf_counter()
    chosen, info = train_ranker(cfg, data, inner, catalogue, text, model, qf, log=log)
    row["ranker_best_epoch"] = max(info["validation"], key=lambda h: h["val_two_stage_ndcg@10"])["epoch"]
    row["blend"] = info["retrieval_blend"]["blend"]
    scored("A", model, chosen, qf, time.perf_counter() - t0)
    t0 = time.perf_counter()
    refitted, _ = refit_ranker(cfg, data, inner, catalogue, text, refit, refit_qf, chosen, info, log=log)
    scored("B", refit, refitted, refit_qf, time.perf_counter() - t0)
    row["ratings_rmse"] = ratings
    row["B_minus_A_two_stage"] = {k: round(row["B_two_stage"][k] - row["A_two_stage"][k], 4) for k in METRICS}


def summarise(section):
    """Means and counts over a protocol's rows (in place)."""
    rows = list(section["rows"].values())

    def mean(key):
        return {k: round(sum(r[key][k] for r in rows) / len(rows), 4) for k in METRICS}

    def ahead(key):
        return f"{sum(r[key]['ndcg@10'] > 0 for r in rows)} of {len(rows)}"

    section["mean_B_minus_A"], section["B_ahead_on_ndcg@10"] = mean("B_minus_A"), ahead("B_minus_A")
    if all("ratings_rmse" in r for r in rows):  # temporal_two_stage
        section["mean_B_minus_A_two_stage"] = mean("B_minus_A_two_stage")
        section["B_two_stage_ahead_on_ndcg@10"] = ahead("B_minus_A_two_stage")
        rmse = [r["ratings_rmse"] for r in rows]
        section["ratings_rmse_mean"] = {k: round(sum(x[k] for x in rmse) / len(rmse), 4) for k in ("bias", "A", "B")}
        section["ratings_B_below_A"] = f"{sum(x['B'] < x['A'] for x in rmse)} of {len(rmse)}"
        section["ratings_below_bias"] = {arm: f"{sum(x[arm] < x['bias'] for x in rmse)} of {len(rmse)}"
                                         for arm in ("A", "B")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("protocol", choices=sorted(FLAGS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = json.loads(pathlib.Path(args.out).read_text()) if pathlib.Path(args.out).exists() else {}
    section = out.setdefault(args.protocol, {"flags": FLAGS[args.protocol], "rows": {}})
    for seed in args.seeds:
        row = one_seed(args.protocol, seed)
        section["rows"][str(seed)] = row
        summarise(section)
        section["machine"] = machine_info()  # per protocol: sections are measured in different sessions
        out.update({"benchmark": "bench/refit.py", "method": __doc__.split("\n\n")[1].replace("\n", " "),
                    "machine": machine_info()})
        write_json(args.out, out)
        print(json.dumps({args.protocol: {"seed": seed, "A": row["A"], "B": row["B"]}}), flush=True)


if __name__ == "__main__":
    main()
