"""Benchmark: do items that are new at the test cut reach the hybrid's lists? (ML-100K, temporal split)

The popularity prior (README, "The hybrid model") adds w x log(1 + n) to an item's score, n its
interactions in the last N days; an item nobody has interacted with yet gets 0. This measures
what that costs the items that really are new: catalogue items with no train or validation
interaction whose first interactions fall in the test period (new releases).

From a `tfrec run` folder (the retriever with its prior as chosen on validation; loaded, not
retrained), the test users' queries as `tfrec run` asks them (first test event, histories from
train + validation), known items excluded; for each setting of the prior:
  - the protocol's NDCG@10 / Recall@20 over all test items (as in `tfrec run`'s table);
  - the new items' test events that rank in the user's top 20 / top 50 of the whole catalogue;
  - the new items' share of the top-10 slots.
Settings: the chosen prior; the prior off (w = 0); the chosen prior with every new item given a
"newcomer" value instead of 0: the mean (or median) log(1 + n) over the items whose first known
interaction is at most 30 days before the cut (what items that just arrived actually had), and
the mean over all items. The settings are applied to the retrieval-space vectors (the prior's
coordinate), so the model is not modified.

    .venv/bin/python bench/new_items.py RUN_DIR [--out bench/results/new_items_ml100k.json]
"""
import dataclasses
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from bench._common import load_run_folder, run_result, write_json  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

ARRIVAL_DAYS = 30


def new_item_hits(scores, users, items, ks=(20, 50)):
    """Per k: how many (user row, item) events rank within the top k of `scores[user]`
    (rank = the number of items scored strictly higher)."""
    own = scores[users, items]
    rank = (scores[users] > own[:, None]).sum(axis=1)
    return {k: int((rank < k).sum()) for k in ks}


def main(argv=None):
    args, run, start = load_run_folder(__doc__, "new_items_ml100k.json", argv)
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.models.hybrid import recent_counts
    from tfrec.models.scoring import HybridScorer

    model, split, cat, known = run.model, run.split, run.catalogue, run.known
    if not model.has_popularity_prior:
        raise SystemExit(f"{args.run_dir}: the model has no popularity prior (`model.popularity_prior=0`).")
    w, days = model.popularity_prior
    T = model.temperature
    cfg = dataclasses.replace(run.config.eval, baselines=[])
    scorer = HybridScorer(model, run.query_features, known, cat.item_ids)
    queries = scorer.user_matrix(cat, split.test)  # (U, d + 1): the last coordinate is 1
    base = scorer.item_embeddings  # (I, d + 1): the last coordinate is T * w * log(1 + n)

    item_ids = np.asarray(cat.item_ids).astype(str)
    known_items = set(known["item_id"].astype(str))
    is_new = np.array([i not in known_items for i in item_ids])
    test = split.test.assign(item_id=split.test["item_id"].astype(str), user_id=split.test["user_id"].astype(str))
    new_events = test[test["item_id"].isin(set(item_ids[is_new]))]
    ids, counts = recent_counts(known, days)
    log_n = pd.Series(np.log1p(counts), index=np.asarray(ids).astype(str)).reindex(item_ids).fillna(0.0)
    first = known.assign(item_id=known["item_id"].astype(str)).groupby("item_id")["timestamp"].min()
    arrived = first[first > known["timestamp"].max() - ARRIVAL_DAYS * 86400].index
    newcomer = {"mean log(1+n) of items that arrived in the last 30 days": float(log_n.reindex(arrived).mean()),
                "median log(1+n) of items that arrived in the last 30 days": float(log_n.reindex(arrived).median()),
                "mean log(1+n) over all items": float(log_n.mean())}

    settings = {f"prior as chosen (w {w:g}, {days} days), new items 0": (w, None),
                "prior off (w 0)": (0.0, None)}
    settings.update({f"prior as chosen, new items at the {k} ({v:.3f})": (w, v) for k, v in newcomer.items()})
    # Session 13: each new item at what its content predicts (`tfrec.models.content_prior`, as
    # `--model.content_prior=true` sets it: fitted on the known items' counts in the same window).
    from tfrec.models.content_prior import ContentPrior

    cp_ids, cp_log_n = ContentPrior().log_counts(model.lookup, known, days)
    predicted = pd.Series(cp_log_n, index=np.asarray(cp_ids).astype(str)).reindex(item_ids).fillna(0.0).to_numpy()
    settings["prior as chosen, new items at their content prior's prediction (`model.content_prior`; mean "
             f"{predicted[is_new].mean():.3f}, max {predicted[is_new].max():.3f})"] = (w, predicted[is_new])
    # The model's own prior coordinate is the same count (a check that this script measures the model).
    np.testing.assert_allclose(base[:, -1], T * w * log_n.to_numpy(), rtol=1e-5, atol=1e-5)
    seen = cat.matrix(known).toarray() > 0
    rows_u = cat.user_index(new_events["user_id"])
    rows_i = cat.item_index(new_events["item_id"])
    test_users = np.unique(cat.user_index(test["user_id"]))
    out = {}
    for name, (weight, value) in settings.items():
        items = base.copy()
        items[:, -1] = T * weight * log_n.to_numpy()
        if value is not None:
            items[is_new, -1] = T * weight * value
        rep = evaluate_models({"h": (queries, items)}, run.data, split, cat, cfg, log=lambda *a: None)
        scores = queries @ items.T
        scores[seen] = -np.inf
        top10 = np.argsort(-scores[test_users], axis=1)[:, :10]
        m = rep["models"]["h"]["mean"]
        out[name] = {"ndcg@10": m["ndcg@10"], "recall@20": m["recall@20"],
                     "new_item_events_in_top": new_item_hits(scores, rows_u, rows_i),
                     "new_item_share_of_top10": float(is_new[top10].mean())}
        r = out[name]
        print(f"{name}: NDCG@10 {r['ndcg@10']:.4f} Recall@20 {r['recall@20']:.4f}; new-item events in top 20 / 50: "
              f"{r['new_item_events_in_top'][20]} / {r['new_item_events_in_top'][50]} of {len(new_events)}; "
              f"share of top-10 slots {r['new_item_share_of_top10']:.3f}")
    doc = run_result("new_items.py", args, start,
                     benchmark="new items (first interaction in the test period) in the hybrid's full-catalogue "
                               "lists, ML-100K temporal split",
                     prior={"weight": w, "days": days}, new_items=int(is_new.sum()),
                     new_item_test_events=int(len(new_events)),
                     new_item_test_users=int(new_events["user_id"].nunique()), test_users=int(test_users.size),
                     items_arrived_in_last_30_days=int(len(arrived)), settings=out)
    write_json(args.out, doc)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
