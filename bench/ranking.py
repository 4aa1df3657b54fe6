"""Benchmark: the ranking stage's speed on ML-100K (real files, MiniLM text from the cache).

Trains a hybrid retrieval model and a ranker briefly (speed does not depend on how
well they are trained), then measures:

* candidates scored per second by the ranker (`rank_candidates`, the traced
  function `Recommender` uses): batch 1 user x 200 candidates, and 64 users x 200;
* `Recommender.recommend(user, k=10)` end to end for one user (query features,
  full-catalogue retrieval, top-200, ranking, business rules): p50 / p99 over
  cycling users, with and without a per-genre cap;
* the same call with `rank=False` (retrieval alone), for the ranking stage's share;
* if validation left the co-occurrence block off, both calls again with it switched on
  (weight 1, rank 256: the query also reads the user's newest 1,000 known items).

Usage (from the repository root):
    .venv/bin/python bench/ranking.py                 # -> bench/results/ranking.json
    .venv/bin/python bench/ranking.py --calls 50      # quicker
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import tfrec  # noqa: E402,F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)


def percentiles(times):
    t = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)), "mean_ms": float(t.mean()),
            "n": int(t.size)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=os.path.join(REPO, "bench", "results", "ranking.json"))
    p.add_argument("--calls", type=int, default=200)
    args = p.parse_args(argv)

    import pandas as pd
    import tensorflow as tf

    from tfrec.cli.ranking_stage import train_ranker
    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config
    from tfrec.models.recommender import Recommender
    from tfrec.models.two_stage import rank_candidates

    cfg = load_config(os.path.join(REPO, "configs", "ml100k.yaml"),
                      ["--train.epochs=1", "--train.verbose=0", "--train.early_stopping_patience=0",
                       "--ranking.epochs=1", "--ranking.early_stopping_patience=0"])
    data, ia, split, cat = prepare(cfg, log=lambda *a: None)
    text, encoder = encode_item_texts(cfg, data.items, log=lambda *a: None)
    model, _, _, qf = train_hybrid(cfg, data, split, cat, text, log=lambda *a: None)
    ranker, _ = train_ranker(cfg, data, split, cat, text, model, qf, log=lambda *a: None)
    known = pd.concat([split.train, split.val], ignore_index=True)
    rec = Recommender(model, qf, data.items, text, known, text_encoder=encoder, ranker=ranker, n_candidates=200)
    users = split.test["user_id"].astype(str).unique()
    rng = np.random.default_rng(0)
    items = np.asarray(cat.item_ids, dtype=object)
    out = {"machine": {"python": platform.python_version(), "tensorflow": tf.__version__,
                       "cpus": os.cpu_count(), "platform": platform.platform()},
           "date": datetime.datetime.now().isoformat(timespec="seconds"), "n_candidates": 200,
           "catalogue": int(len(items))}

    for batch in (1, 64):
        feats = qf.build(split.test.groupby("user_id").head(1).head(batch), context=known)
        cands = items[rng.integers(0, len(items), (batch, 200))]
        rank_candidates(ranker, feats, cands, batch_size=batch)  # trace
        times = []
        n_calls = max(10, args.calls // (1 if batch == 1 else 8))
        for _ in range(n_calls):
            t = time.perf_counter()
            rank_candidates(ranker, feats, cands, batch_size=batch)
            times.append(time.perf_counter() - t)
        stats = percentiles(times)
        stats["candidates_per_second"] = float(batch * 200 / np.median(times))
        out[f"rank_batch{batch}x200"] = stats

    def time_recommend(**kw):
        rec.recommend(users[0], k=10, **kw)  # trace
        times = []
        for i in range(args.calls):
            t = time.perf_counter()
            rec.recommend(users[i % len(users)], k=10, **kw)
            times.append(time.perf_counter() - t)
        return percentiles(times)

    out["recommend_two_stage"] = time_recommend()
    out["recommend_two_stage_genre_cap"] = time_recommend(max_per_category=("genres", 3))
    out["recommend_retrieval_only"] = time_recommend(rank=False)
    c = model.cooccurrence
    out["cooccurrence_weight_chosen"] = float(c.weight) if c is not None else 0.0
    out["retrieval_dim"] = int(rec.scorer.item_embeddings.shape[1])
    if c is None or c.weight == 0:  # the block's serving cost (session 19): rank 256, the newest 1,000 known items
        model.set_cooccurrence(known, 1.0, cfg.model.cooccurrence_l2, cfg.model.cooccurrence_rank)
        out["with_cooccurrence_block"] = {"retrieval_dim": int(rec.scorer.item_embeddings.shape[1]),
                                          "recommend_two_stage": time_recommend(),
                                          "recommend_retrieval_only": time_recommend(rank=False)}
    tmp = args.out + ".tmp"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(tmp, "w") as f:
        json.dump(out, f, indent=2)
    os.replace(tmp, args.out)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
