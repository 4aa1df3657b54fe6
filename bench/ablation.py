"""Ablation of the hybrid retrieval model on ML-100K (temporal split, full catalogue,
seen items excluded): which part of the model buys what.

    .venv/bin/python bench/ablation.py [--epochs 20] [--out bench/results/ablation_ml100k.json]

Variants (fixed in advance; every other setting is the default config):
    id_only        item id + user id towers (no text, attributes, context or history)
    text_only      no ids: items are text (MiniLM, cached) + attributes, users their history of such items
    hybrid         ids + text
    +user_context  + user attributes and request-time features
    +sequence      + the behaviour-sequence encoder
    +popularity_prior  + the query-time popularity prior chosen on validation (the rows
                   above run without it)
    +cooccurrence  + the co-occurrence block (EASE's item-item scores), its weight chosen on
                   validation with the prior (session 19; the full model, `tfrec run`'s
                   default; the rows above run without it)
Each variant trains with early stopping on validation recall@20; test metrics with
95% bootstrap CIs come from the same evaluation code as `tfrec run`. Retrieval only
(`--ranking.enabled=false`).
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from tfrec.cli.run import run  # noqa: E402
from tfrec.config import load_config  # noqa: E402

NO_BLOCK = "--model.cooccurrence=0"
NO_PRIOR = ["--model.popularity_prior=0", NO_BLOCK]
OFF = ["--model.use_attributes=false", "--model.use_context=false", "--model.use_history=false", *NO_PRIOR]
VARIANTS = {
    "id_only": ["--model.use_text=false", *OFF],
    # No ids anywhere: items are their text + attributes, users are their history of such items.
    "text_only": ["--model.use_id=false", "--model.use_attributes=false", "--model.use_context=false", *NO_PRIOR],
    "hybrid": OFF,
    "+user_context": ["--model.use_history=false", *NO_PRIOR],
    "+sequence": NO_PRIOR,
    "+popularity_prior": [NO_BLOCK],
    "+cooccurrence": [],
}
METRICS = ("ndcg@10", "recall@20", "recall@10", "hit_rate@10")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "ablation_ml100k.json"))
    ap.add_argument("--extra", nargs="*", default=[], help="extra dotted overrides for every variant")
    args = ap.parse_args()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="tfrec-ablation-"))
    rows = {}
    for name, flags in VARIANTS.items():
        cfg = load_config(None, [f"--train.epochs={args.epochs}", "--train.verbose=0", "--eval.baselines=",
                                 "--export.enabled=false", "--ranking.enabled=false", f"--run_root={tmp}",
                                 f"--name={name.strip('+')}",
                                 *flags, *args.extra])
        t0 = time.perf_counter()
        res = run(cfg, log=lambda *a: None)
        model = next(v for k, v in res.metrics["models"].items() if k.startswith("tfrec"))
        rows[name] = {"flags": flags, "seconds": time.perf_counter() - t0,
                      "epochs_trained": len(res.metrics["train"]["validation"] or []),
                      "mean": {m: model["mean"][m] for m in METRICS},
                      "ci95": {m: model["ci95"].get(m) for m in METRICS},
                      "beyond": {k: model["beyond"][k] for k in ("coverage@10", "novelty@10")},
                      "cooccurrence_weight": (res.metrics["train"].get("cooccurrence") or {}).get("weight", 0.0)}
        print(f"{name:<14} ndcg@10 {rows[name]['mean']['ndcg@10']:.4f} {rows[name]['ci95']['ndcg@10']}  "
              f"recall@20 {rows[name]['mean']['recall@20']:.4f} {rows[name]['ci95']['recall@20']}  "
              f"({rows[name]['seconds']:.0f} s)", flush=True)
    path = pathlib.Path(args.out)
    out = json.loads(path.read_text()) if path.exists() else {}  # earlier sessions' keys (notes, old rows) stay
    out.update({"benchmark": "hybrid ablation, ML-100K temporal split",
                "timestamp": datetime.datetime.utcnow().isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version()}, "variants": rows})
    lines = ["| variant | NDCG@10 (95% CI) | Recall@20 (95% CI) | coverage@10 |", "|---|---|---|---|"]
    for name, r in rows.items():
        f = lambda m: f"{r['mean'][m]:.4f} [{r['ci95'][m][0]:.3f}, {r['ci95'][m][1]:.3f}]"
        lines.append(f"| {name} | {f('ndcg@10')} | {f('recall@20')} | {r['beyond']['coverage@10']:.3f} |")
    out["table"] = "\n".join(lines)
    print(out["table"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_out = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(out, fh, indent=2)
    os.replace(tmp_out, path)


if __name__ == "__main__":
    main()
