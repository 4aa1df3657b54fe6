"""The history encoder's input in training (`model.history_refresh`, session 18), on
VALIDATION only: the retriever as `tfrec run` trains it (temporal split, early stopping
on full-catalogue validation Recall@20, then the popularity prior chosen on validation
NDCG@10), with the history's vectors from the item tower's own pass over each batch's
history items with gradient (K = 0, the model until session 18) or from a table of
the whole catalogue refreshed every K steps without gradient (K = 1, 10, 78: every
step, the default, about once an epoch). Three training seeds each; the test split is
not read. Each run is one `train_hybrid` call in this process (the batch order does not
depend on what the process trained before, see docs/retrieval_results.md, session 14).

    .venv/bin/python bench/history_refresh.py                 # ~10 min on 2 cores
    .venv/bin/python bench/history_refresh.py --refresh 0,10 --seeds 42 --out /tmp/h.json

Output: bench/results/history_refresh_ml100k.json (atomic).
"""
import argparse
import datetime
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)
from tfrec.config import load_config  # noqa: E402

OUT = ROOT / "bench" / "results" / "history_refresh_ml100k.json"
COMMON = ["--ranking.enabled=false", "--export.enabled=false", "--eval.baselines=", "--train.verbose=0"]


def one_run(k, seed, prepared):
    from tfrec.cli.retrieval_stage import train_hybrid

    config = load_config(None, [*COMMON, f"--model.history_refresh={k}", f"--train.seed={seed}"])
    data, split, catalogue, text_emb = prepared
    t0 = time.perf_counter()
    _, history, secs, _ = train_hybrid(config, data, split, catalogue, text_emb, log=lambda *a: None)
    wall = time.perf_counter() - t0
    curve = history["validation"]
    best = max(curve, key=lambda h: h["val_recall@20"])
    prior = history["popularity_prior"]
    chosen = max(prior["trials"], key=lambda t: t[f"val_{prior['metric']}"])
    return {"history_refresh": k, "seed": seed, "epochs": len(curve), "best_epoch": best["epoch"],
            "fit_seconds": round(secs, 1), "wall_seconds": round(wall, 1),
            "fit_seconds_per_epoch": round(secs / len(curve), 3),
            "val_ndcg@10_no_prior": best["val_ndcg@10"], "val_recall@20_no_prior": best["val_recall@20"],
            "prior": {"weight": prior["weight"], "days": prior["days"]},
            "val_ndcg@10": chosen["val_ndcg@10"], "val_recall@20": chosen["val_recall@20"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--refresh", default="0,1,10,78", help="values of model.history_refresh, comma-separated")
    ap.add_argument("--seeds", default="42,1,2", help="training seeds, comma-separated")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    from tfrec.cli.run import encode_item_texts, prepare

    started = datetime.datetime.now(datetime.timezone.utc)
    base = load_config(None, COMMON)
    data, _, split, catalogue = prepare(base, log=lambda *a: None)
    text_emb, _ = encode_item_texts(base, data.items, log=lambda *a: None)
    prepared = (data, split, catalogue, text_emb)
    runs = []
    for k in [int(x) for x in args.refresh.split(",")]:
        for seed in [int(x) for x in args.seeds.split(",")]:
            runs.append(one_run(k, seed, prepared))
            r = runs[-1]
            print(f"history_refresh {k:>3} seed {seed:>2}: val NDCG@10 {r['val_ndcg@10']:.4f} Recall@20 "
                  f"{r['val_recall@20']:.4f} (no prior {r['val_ndcg@10_no_prior']:.4f} / "
                  f"{r['val_recall@20_no_prior']:.4f}), {r['epochs']} epochs, {r['fit_seconds_per_epoch']:.2f} s each",
                  flush=True)
    summary = {}
    for k in dict.fromkeys(r["history_refresh"] for r in runs):
        rows = [r for r in runs if r["history_refresh"] == k]
        summary[str(k)] = {m: {"mean": float(np.mean([r[m] for r in rows])), "min": float(np.min([r[m] for r in rows])),
                               "max": float(np.max([r[m] for r in rows]))}
                           for m in ("val_ndcg@10", "val_recall@20", "val_ndcg@10_no_prior", "val_recall@20_no_prior",
                                     "fit_seconds_per_epoch")}
    write_json(args.out, {
        "benchmark": "history_refresh", "dataset": "ml-100k temporal split, validation only",
        "command": "python " + " ".join(["bench/history_refresh.py", *sys.argv[1:]]),
        "timestamp": started.isoformat(), "machine": machine_info(),
        "selection": "val_ndcg@10 after the popularity prior's choice (the run's selection metric)",
        "summary": summary, "runs": runs,
        "notes": ["fit_seconds include the per-epoch full-catalogue validation and run while the machine may be "
                  "shared: bench/train_throughput.py times the training epoch alone."]})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
