"""Benchmark: where the ranker's rating head loses to the user/item-bias baseline (ML-100K, temporal split).

From a `tfrec run` folder with a ranker (`ranking.rating_base=bias`, loaded, not retrained):
the rating RMSE of the ranker and of the bias model (mu + b_u + b_i, regularisation tuned on
validation), split by whether the user has known ratings, with the mean of (rating - bias
prediction) and of (ranker - bias prediction) in each group, on
  - validation: bias fitted on train; the ranker's frozen base set to that fit and its
    histories from train (as `TwoStageValidation` scores it while the ranker trains);
  - test: bias refitted on train + validation, the ranker as saved (its base refitted the same
    way), histories from train + validation (as `tfrec run`'s static rating table).
Also the RMSE of bias + a x (ranker - bias) for a few a: how much of the learned residual helps.

    .venv/bin/python bench/rating_breakdown.py RUN_DIR [--out bench/results/rating_breakdown_ml100k.json]
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from bench._common import load_run_folder, run_result, write_json  # noqa: E402

import numpy as np  # noqa: E402

SHRINK = (0.0, 0.25, 0.5, 0.75, 1.0)


def breakdown(y, bias, ranker, known_user):
    """RMSEs and mean errors overall and per user group (numpy arrays of one length)."""
    def rmse(a, b):
        return float(np.sqrt(np.mean((a - b) ** 2)))

    out = {}
    for name, m in (("all", np.ones_like(known_user)), ("users with known ratings", known_user),
                    ("users without known ratings", ~known_user)):
        out[name] = {"n": int(m.sum()), "rmse_bias": rmse(y[m], bias[m]), "rmse_ranker": rmse(y[m], ranker[m]),
                     "mean_rating_minus_bias": float(np.mean(y[m] - bias[m])),
                     "mean_ranker_minus_bias": float(np.mean(ranker[m] - bias[m]))}
    out["shrunk_residual_rmse"] = {f"{a:g}": rmse(y, bias + a * (ranker - bias)) for a in SHRINK}
    return out


def main(argv=None):
    args, run, start = load_run_folder(__doc__, "rating_breakdown_ml100k.json", argv)
    from tfrec.cli.ranking_stage import ranker_ratings
    from tfrec.evaluation.rating import BiasBaseline, tune_bias

    if run.ranker is None or run.config.ranking.rating_base != "bias":
        raise SystemExit(f"{args.run_dir}: needs a run with a ranker and `ranking.rating_base=bias`.")
    split, known, qf = run.split, run.known, run.query_features
    params, _ = tune_bias(split.train, split.val)
    parts = {}
    # test first: the loaded ranker's base is the one refitted on train + validation
    for name, events, context in (("test", split.test, known), ("validation", split.val, split.train)):
        events = events.reset_index(drop=True)
        bias = BiasBaseline(**params).fit(context)
        if name == "validation":
            run.ranker.set_rating_base(bias, fitted_on=context)
        known_user = events["user_id"].astype(str).isin(set(context["user_id"].astype(str))).to_numpy()
        parts[name] = breakdown(events["rating"].to_numpy(float), np.asarray(bias.predict(events), float),
                                ranker_ratings(run.ranker, qf, events, context).astype(float), known_user)
        for group in ("all", "users with known ratings", "users without known ratings"):
            g = parts[name][group]
            print(f"{name:10s} {group:28s} n {g['n']:5d}  RMSE bias {g['rmse_bias']:.4f} ranker {g['rmse_ranker']:.4f}"
                  f"  mean(rating - bias) {g['mean_rating_minus_bias']:+.3f}  mean(ranker - bias) "
                  f"{g['mean_ranker_minus_bias']:+.3f}")
        print(f"{name:10s} bias + a x (ranker - bias): " +
              ", ".join(f"a {a}: {v:.4f}" for a, v in parts[name]["shrunk_residual_rmse"].items()))
    doc = run_result("rating_breakdown.py", args, start,
                     benchmark="rating RMSE of the ranker vs the user/item-bias model, by user group, ML-100K "
                               "temporal split", bias_params=params, **parts)
    write_json(args.out, doc)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
