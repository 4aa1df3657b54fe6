"""Benchmark: are tfrec's explanations faithful to the model? (deletion test + model randomisation)

Trains the hybrid model on real MovieLens-100K (configs/ml100k.yaml; MiniLM text
embeddings from the on-disk cache `.tfrec_cache`; the ranking stage is off so the
recommended lists are the retrieval model's), then for test users with >= 3
history items, at their first test event, takes the top-10 recommendations and for
each (user, item) pair:

* Deletion test: the score drop of the item when the top-attributed history item is
  removed (replaced by padding), versus a random history item (seeded), for two
  attributions: leave-one-out (LOO) and gradient x input (GxI) over the history
  item vectors. Mean drops with 95 % bootstrap CIs, a paired test (top - random),
  and the fraction of pairs whose item leaves the top-10 (seen items excluded, as
  `recommend` does) after the deletion.
  Caveat: the LOO top item is BY CONSTRUCTION the single deletion with the largest
  drop, so the LOO half of the test is partly tautological; GxI is a first-order
  estimate that never looks at the deletion, so its result is the non-trivial check.
* Model randomisation (Adebayo et al., 2018): every trainable weight of the item and
  query towers is permuted in place (same values, random positions), and the same
  pairs are explained again. Spearman correlation of the attributions over the
  history positions and top-1 agreement with the trained model's should be low.

Pairs from one user share a history, so they are not independent; the bootstrap
resamples pairs, and per-user means are reported beside it.

Usage (from the repository root; ~10 min on 2 CPU cores, mostly training):
    .venv/bin/python bench/explain_faithfulness.py          # -> bench/results/explain_faithfulness.json
    .venv/bin/python bench/explain_faithfulness.py --max-users 20 --out /tmp/x.json   # smoke run
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tfrec  # noqa: E402,F401  (before tensorflow)
import tensorflow as tf  # noqa: E402

DEFAULT_OUT = os.path.join("bench", "results", "explain_faithfulness.json")
DEFAULT_DATA = os.path.join("..", "shared", "datasets", "ml-100k")
K = 10
MIN_HISTORY = 3


def _spearman(a, b):
    from scipy.stats import spearmanr

    if np.allclose(a, a[0]) or np.allclose(b, b[0]):
        return np.nan
    return float(spearmanr(a, b).statistic)


def _train(data_path, run_root, epochs, sequence):
    from tfrec.cli.run import run
    from tfrec.config import load_config

    overrides = [f"--data.source={data_path}", "--eval.baselines=most_popular", "--export.enabled=false",
                 "--eval.n_bootstrap=200", "--ranking.enabled=false", "--train.verbose=0",
                 f"--run_root={run_root}", f"--model.sequence={sequence}"]
    if epochs:
        overrides.append(f"--train.epochs={epochs}")
    cfg = load_config(str(REPO / "configs" / "ml100k.yaml"), overrides)
    return run(cfg), cfg


def _queries(result, max_users):
    """(user_id, timestamp) at each test user's first test event, users with >= MIN_HISTORY history items."""
    rec = result.recommender
    test = result.split.test.sort_values("timestamp", kind="mergesort").groupby("user_id", sort=True).head(1)
    out = []
    for u, ts in zip(test["user_id"].astype(str), test["timestamp"].astype(int)):
        n = int(((rec.known["user_id"].astype(str) == u) & (rec.known["timestamp"] < ts)).sum())
        if n >= MIN_HISTORY:
            out.append((u, ts))
    return out[:max_users] if max_users else out


def _pairs(explainer, queries, seed=0):
    """Per (user, top-10 item) pair: attributions and the deletion outcomes."""
    from tfrec.explain.attribution import history_variants

    rec = explainer.recommender
    rng = np.random.default_rng(seed)
    rows = []
    for u, ts in queries:
        top = rec.recommend(u, k=K, timestamp=ts)
        items = top["item_id"].astype(str).tolist()
        feats = explainer.features(u, ts)
        att = explainer.attribute(feats, items)
        real = np.flatnonzero(feats["history"][0] != "")
        # Rankings after each deletion: [N + 1, I] scores, the user's seen items excluded.
        q = rec.scorer._query_fn({k: tf.constant(v) for k, v in history_variants(feats).items()}).numpy()
        scores = q @ rec.item_embeddings.T
        seen = rec._index.isin(rec.known.loc[rec.known["user_id"].astype(str) == u, "item_id"].astype(str))
        scores[:, seen] = -np.inf
        kth = -np.sort(-scores, axis=1)[:, K - 1]  # (N + 1,) the 10th best score after each deletion
        col = rec._index.get_indexer(items)
        for m, item in enumerate(items):
            loo, gxi = att["leave_one_out"][m, real], att["gradient_x_input"][m, real]
            j_loo, j_gxi, j_rand = real[np.argmax(loo)], real[np.argmax(gxi)], real[rng.integers(len(real))]

            def leaves(j):
                return bool(scores[1 + j, col[m]] < kth[1 + j])

            rows.append({"user_id": u, "item_id": item, "n_history": int(len(real)),
                         "loo": loo, "gxi": gxi,
                         "drop_top_loo": float(att["leave_one_out"][m, j_loo]),
                         "drop_top_gxi": float(att["leave_one_out"][m, j_gxi]),
                         "drop_random": float(att["leave_one_out"][m, j_rand]),
                         "leaves_top_loo": leaves(j_loo), "leaves_top_gxi": leaves(j_gxi),
                         "leaves_random": leaves(j_rand),
                         # The newest history item is the last real position.
                         "top_loo_is_newest": bool(j_loo == real[-1]), "top_gxi_is_newest": bool(j_gxi == real[-1])})
    return rows


def _randomised(rec, seed=1):
    """Permutes every trainable weight of both towers in place; returns a restore function."""
    towers = [rec.model.item_tower, rec.model.query_tower]
    weights = [w for t in towers for w in t.trainable_weights]
    saved = [w.numpy() for w in weights]
    rng = np.random.default_rng(seed)
    for w, v in zip(weights, saved):
        w.assign(rng.permutation(v.ravel()).reshape(v.shape))

    def restore():
        for w, v in zip(weights, saved):
            w.assign(v)
    return restore


def _ci(values, n_boot=2000):
    from tfrec.evaluation.stats import bootstrap_ci

    return bootstrap_ci(np.asarray(values, float), n_boot=n_boot).to_dict()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--max-users", type=int, default=0, help="0: every eligible test user")
    p.add_argument("--epochs", type=int, default=0, help="0: the config's (early stopping)")
    p.add_argument("--sequences", default="mean,sasrec", help="history encoders to train and explain")
    args = p.parse_args(argv)

    results = {}
    for sequence in [s.strip() for s in args.sequences.split(",") if s.strip()]:
        results[sequence] = _benchmark(args, sequence)
    out = {
        "benchmark": "explain_faithfulness",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "cpus": os.cpu_count()},
        "data": "MovieLens-100K (real), configs/ml100k.yaml, temporal split, ranking stage off",
        "note": ("The leave-one-out top item is by construction the single history deletion with the largest "
                 "score drop, so the LOO deletion result is partly tautological (it checks the batching, not "
                 "the attribution idea). Gradient x input never looks at deletions: its deletion result is the "
                 "non-trivial faithfulness check. CIs are percentile bootstraps over pairs (pairs of one user "
                 "share a history; per-user means are given too)."),
        "results": results,
    }
    path = pathlib.Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    os.replace(tmp, path)
    for sequence, r in results.items():
        _print(sequence, r)
    print(f"wrote {path}")


def _print(sequence, out):
    d = out["deletion"]
    q = out["queries"]
    print(f"\n[{sequence}] {q['pairs']} pairs from {q['users']} users (mean history {q['mean_history_length']:.1f})")
    print(f"{'deleted history item':<28}{'mean score drop [95% CI]':<34}{'leaves top-10 [95% CI]'}")
    for name, label in (("top_loo", "top by leave-one-out"), ("top_gxi", "top by gradient x input"),
                        ("random", "random")):
        s, lv = d["score_drop"][name], d["leaves_top_k"][name]
        print(f"{label:<28}{s['mean']:.4f} [{s['low']:.4f}, {s['high']:.4f}]{'':<10}"
              f"{lv['mean']:.3f} [{lv['low']:.3f}, {lv['high']:.3f}]")
    for name in ("loo", "gxi"):
        t = d["paired_top_minus_random"][name]
        print(f"paired {name} top - random: {t['mean_diff']:.4f} [{t['low']:.4f}, {t['high']:.4f}] "
              f"p={t['p_value']:.2g}")
    print(f"top-1 by GxI == top-1 by LOO: {d['top_gxi_equals_top_loo']['mean']:.3f}; "
          f"Spearman(LOO, GxI): {out['spearman_loo_vs_gxi_trained']['mean']:.3f}; top-1 is the newest item: "
          f"LOO {d['top_is_newest_item']['loo']['mean']:.3f}, GxI {d['top_is_newest_item']['gxi']['mean']:.3f}")
    for name in ("leave_one_out", "gradient_x_input"):
        r = out["randomisation"][name]
        print(f"randomisation {name}: Spearman {r['spearman_trained_vs_randomised']['mean']:.3f}, "
              f"top-1 agreement {r['top1_agreement']['mean']:.3f} (chance {r['top1_agreement_by_chance']:.3f}), "
              f"randomised top-1 is the newest item {r['randomised_top1_is_newest_item']['mean']:.3f}")


def _benchmark(args, sequence):
    from tfrec.evaluation.stats import paired_test
    from tfrec.explain.explainer import Explainer
    from tfrec.models.recommender import Recommender

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        result, cfg = _train(args.data, tmp, args.epochs, sequence)
    train_s = time.time() - t0
    rec = result.recommender
    explainer = Explainer(rec, result.split.train)
    queries = _queries(result, args.max_users)
    t1 = time.time()
    pairs = _pairs(explainer, queries)
    explain_s = time.time() - t1

    # Model randomisation: the same (user, item) pairs, explained by the permuted model.
    restore = _randomised(rec)
    try:
        rand_rec = Recommender(rec.model, rec.query_features, rec.items, rec.text_embeddings, rec.known)
        rand_exp = Explainer(rand_rec, result.split.train)
        by_user = {}
        for r in pairs:
            by_user.setdefault(r["user_id"], []).append(r)
        ts = dict(queries)
        rand = {}
        for u, rs in by_user.items():
            feats = rand_exp.features(u, ts[u])
            att = rand_exp.attribute(feats, [r["item_id"] for r in rs])
            real = np.flatnonzero(feats["history"][0] != "")
            for m, r in enumerate(rs):
                rand[(u, r["item_id"])] = (att["leave_one_out"][m, real], att["gradient_x_input"][m, real])
    finally:
        restore()

    def randomisation(kind, idx):
        rho, top1, newest = [], [], []
        for r in pairs:
            a, b = r[kind], rand[(r["user_id"], r["item_id"])][idx]
            rho.append(_spearman(a, b))
            top1.append(float(np.argmax(a) == np.argmax(b)))
            newest.append(float(np.argmax(b) == len(b) - 1))
        rho = np.asarray(rho)
        chance = float(np.mean([1.0 / r["n_history"] for r in pairs]))
        return {"spearman_trained_vs_randomised": _ci(rho[np.isfinite(rho)]),
                "pairs_with_constant_attribution": int((~np.isfinite(rho)).sum()),
                "top1_agreement": _ci(top1), "top1_agreement_by_chance": chance,
                "randomised_top1_is_newest_item": _ci(newest)}

    trained_methods = np.asarray([_spearman(r["loo"], r["gxi"]) for r in pairs])
    hybrid = result.metrics.get("models", {}).get("tfrec hybrid", {}) if isinstance(
        result.metrics.get("models"), dict) else {}
    return {
        "model": {"sequence": cfg.model.sequence, "embedding_dim": cfg.model.embedding_dim,
                  "test_mean": {k: v for k, v in hybrid.get("mean", {}).items() if k in ("recall@10", "ndcg@10")}},
        "queries": {"users": len(queries), "pairs": len(pairs), "k": K, "min_history": MIN_HISTORY,
                    "mean_history_length": float(np.mean([r["n_history"] for r in pairs]))},
        "deletion": {
            "score_drop": {name: _ci([r[f"drop_{name}"] for r in pairs])
                           for name in ("top_loo", "top_gxi", "random")},
            "paired_top_minus_random": {
                name: paired_test([r[f"drop_top_{name}"] for r in pairs], [r["drop_random"] for r in pairs],
                                  n_boot=2000).to_dict() for name in ("loo", "gxi")},
            "leaves_top_k": {name: _ci([float(r[f"leaves_{name}"]) for r in pairs])
                             for name in ("top_loo", "top_gxi", "random")},
            "top_gxi_equals_top_loo": _ci([float(np.argmax(r["loo"]) == np.argmax(r["gxi"])) for r in pairs]),
            "top_is_newest_item": {name: _ci([float(r[f"top_{name}_is_newest"]) for r in pairs])
                                   for name in ("loo", "gxi")},
            "per_user_mean_drop": {name: _ci([np.mean([r[f"drop_{name}"] for r in pairs if r["user_id"] == u])
                                              for u, _ in queries])
                                   for name in ("top_loo", "top_gxi", "random")},
        },
        "spearman_loo_vs_gxi_trained": _ci(trained_methods[np.isfinite(trained_methods)]),
        "randomisation": {"method": "every trainable weight of the item and query towers permuted in place",
                          "leave_one_out": randomisation("loo", 0),
                          "gradient_x_input": randomisation("gxi", 1)},
        "seconds": {"train_and_evaluate": round(train_s, 1), "explain_pairs": round(explain_s, 1)},
    }


if __name__ == "__main__":
    main()
