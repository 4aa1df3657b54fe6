"""Benchmark: retrieval quality when a model is asked long after its data ends (ML-100K, temporal split).

The query tower reads the request time; its recency feature, (t - end of train) / 365 days,
is <= 0 in training. MovieLens-100K ends in April 1998, so a request stamped "now" has
recency about 28, and a model served for a year past its data about 1. From a `tfrec run`
folder (loaded, not retrained), each test user's first test query (history and attributes
as of that event) is scored with its timestamp replaced by:
  - real: the event's own time (what every reported table uses);
  - last_known+1: 1 s after the last known interaction (`Recommender.default_timestamp()`);
  - one_year_later: the event's time + 365 days;
  - 2026-11-25: a fixed "now";
under `max_recency` = inf (the time features before session 17) and the default 1.0 (recency
capped at one year). Reported: test NDCG@10 / Recall@20 (train + validation items excluded)
and the share of each user's top 10 that is also in their top 10 at the real time.

    .venv/bin/python bench/request_time.py RUN_DIR [--out bench/results/request_time_ml100k.json]
"""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from bench._common import load_run_folder, run_result, write_json  # noqa: E402

import numpy as np  # noqa: E402

NOW = 1795564800  # 2026-11-25 00:00 UTC, fixed so the result does not depend on the day it is run
DAY = 86400


def time_layer(model):
    """The query tower's `TimeFeatures` layer (the model must use context features)."""
    layer = getattr(model.query_tower, "time", None)
    if layer is None:
        raise SystemExit("the run's model has no time features (`model.use_context=false`): nothing to measure.")
    return layer


def main(argv=None):
    args, run, start = load_run_folder(__doc__, "request_time_ml100k.json", argv)
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.models import scoring
    from tfrec.models.scoring import HybridScorer, first_events

    cat, split, known, model = run.catalogue, run.split, run.known, run.model
    layer = time_layer(model)
    first = first_events(cat, split.test)
    users = first["user_idx"].to_numpy()
    rows = {u: r for r, u in enumerate(users)}
    relevant, exclude = cat.matrix(split.test), cat.matrix(known)
    seen = exclude[users].toarray() > 0
    times = {"real": None, "last_known+1": int(known["timestamp"].max()) + 1, "one_year_later": 365 * DAY,
             "2026-11-25": NOW}
    out, default = {}, layer.max_recency
    for cap in (float("inf"), default):
        layer.max_recency = cap
        scoring._FUNCTIONS.pop(model, None)  # re-trace: the cap is a constant of the traced graph
        scorer = HybridScorer(model, run.query_features, known, cat.item_ids)
        feats = scorer.features(first)
        tops, rows_out = {}, {}
        for name, t in times.items():
            ts = feats["timestamp"] if t is None else (
                feats["timestamp"] + t if name == "one_year_later" else np.full(len(users), t, np.int64))
            scores = scorer._embed(dict(feats, timestamp=np.asarray(ts, np.int64))) @ scorer.item_embeddings.T
            res = evaluate_ranking(lambda u: scores[[rows[x] for x in np.asarray(u)]], np.unique(relevant.nonzero()[0]),
                                   relevant, exclude=exclude, ks=(10, 20), return_topk=False).mean()
            tops[name] = np.argsort(-np.where(seen, -np.inf, scores), axis=1, kind="stable")[:, :10]
            rows_out[name] = {"ndcg@10": round(float(res["ndcg@10"]), 4), "recall@20": round(float(res["recall@20"]), 4)}
        for name in times:
            rows_out[name]["top10_overlap_with_real"] = round(float(np.mean(
                [len(set(a) & set(b)) / 10 for a, b in zip(tops[name], tops["real"])])), 3)
        out["max_recency=" + ("inf (before)" if cap == float("inf") else f"{cap:g} (default)")] = rows_out
        print(cap, rows_out, flush=True)
    layer.max_recency = default
    write_json(args.out, run_result("request_time.py", args, start, n_users=int(len(users)), results=out))


if __name__ == "__main__":
    main()
