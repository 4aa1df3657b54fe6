"""Diagnostic: how far is the hybrid from the recbole_sequential target because seen items stay in its lists?

Under `recbole_sequential` nothing is masked (as RecBole does for sequential models), and on
MovieLens nobody rates a movie twice, so every already-rated item in a top 10 is a wasted slot.
This evaluates one `tfrec run --eval.protocol=recbole_sequential` folder's retrieval model
(loaded, not retrained) on the test queries twice: under the protocol as defined, and with the
user's known items (train + validation) excluded. The second number is NOT a protocol result
(RecBole's GRU4Rec anchor is not masked); it bounds what learning to avoid repeats could give.

    .venv/bin/python bench/recbole_sequential_masking.py RUN_DIR [--out FILE]
    (default FILE: bench/results/recbole_sequential_masking_ml100k.json)
"""
import dataclasses
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401
from bench._common import load_run_folder, run_result, write_json  # noqa: E402


def main(argv=None):
    args, run, start = load_run_folder(__doc__, "recbole_sequential_masking_ml100k.json", argv)
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.evaluation.protocols import get_protocol
    from tfrec.models.scoring import HybridScorer

    if run.config.eval.protocol != "recbole_sequential":
        raise SystemExit(f"{args.run_dir}: not a `--eval.protocol=recbole_sequential` run.")
    cfg = dataclasses.replace(run.config.eval, baselines=[])
    scorer = HybridScorer(run.model, run.query_features, run.known, run.catalogue.item_ids)
    protocol = get_protocol("recbole_sequential")
    out = {}
    masked = dataclasses.replace(protocol, exclude=("train", "val"))
    for name, prot in (("protocol (nothing masked)", protocol), ("known items masked (not the protocol)", masked)):
        rep = evaluate_models({"tfrec hybrid": scorer}, run.data, run.split, run.catalogue, cfg, protocol=prot,
                              log=lambda *a: None, history_length=run.config.data.history_length)
        m = rep["models"]["tfrec hybrid"]
        out[name] = {k: m["mean"][k] for k in ("ndcg@10", "hit_rate@10", "mrr@10")}
        out[name]["ci95"] = {k: m["ci95"][k] for k in ("ndcg@10", "hit_rate@10") if k in m.get("ci95", {})}
        print(f"{name}: NDCG@10 {out[name]['ndcg@10']:.4f}  Hit@10 {out[name]['hit_rate@10']:.4f}  "
              f"MRR@10 {out[name]['mrr@10']:.4f}")
    info = run.model.popularity_prior if run.model.has_popularity_prior else None
    doc = run_result("recbole_sequential_masking.py", args, start,
                     benchmark="recbole_sequential: the hybrid with and without its already-seen items in the ranking",
                     popularity_prior=info, targets={"ndcg@10": 0.08, "hit_rate@10": 0.16},
                     anchor="RecBole GRU4Rec (not masked): NDCG@10 0.0513, Hit@10 0.1103", results=out)
    write_json(args.out, doc)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
