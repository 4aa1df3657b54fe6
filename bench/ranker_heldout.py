"""Ranker variants compared one level down, on validation only (issue #6).

`tfrec run` chooses the ranker's epochs and its blend with the retriever on the validation
split, which leaves nothing held out to compare two ranker designs on but test. This bench
carves an inner validation from train as `bench/refit.py temporal` does (the last 1/8 of train
in time) and keeps the protocol's validation split as the held-out part; test is never read.
Per training seed: the retriever is trained on the inner train (early stopping and its
post-training choices on the inner validation, as `tfrec run` trains it), then one ranker per
variant exactly as `train_ranker` trains it (early stopping and blend on the inner validation),
and on the held-out part (each user's query at their first held-out event, histories from inner
train + inner validation, those items excluded): retrieval alone and each two-stage list, with
paired 95% CIs of each variant against retrieval and against the first variant.

    .venv/bin/python bench/ranker_heldout.py --seeds 42 1 2 --variants default no_id   # ~5 min a seed

Rows are merged by (variant set, seed) into bench/results/ranker_heldout_ml100k.json (atomic write).
"""
import argparse
import dataclasses
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench._common import machine_info, write_json  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = ROOT / "bench" / "results" / "ranker_heldout_ml100k.json"
COMMON = ["--train.verbose=0", "--eval.baselines=", "--export.enabled=false"]
# name -> {"model": {...}, "ranking": {...}} overrides of the ranker's config (`build_ranker` reads
# `config.model` for the ranker's own towers; the retriever is trained once, before, and not rebuilt).
VARIANTS = {"default": {},
            "no_id": {"model": {"use_id": False}},  # the ranker's towers without id embeddings
            # 30% of training examples shown as a new user's (no id, no history): most held-out users are new
            "cold_users_0.3": {"ranking": {"cold_user_fraction": 0.3}},
            "no_hard": {"ranking": {"num_hard_negatives": 0}},  # random negatives only
            # session 26: one blend for queries with an empty history, one for the rest (the same ranker)
            "blend_by_history": {"ranking": {"blend_by_history": True}}}
METRICS = ("ndcg@10", "recall@10", "recall@20")


def _variant_config(cfg, name):
    v = VARIANTS[name]
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **v.get("model", {})),
                               ranking=dataclasses.replace(cfg.ranking, **v.get("ranking", {})))


def one_seed(seed, variants):
    import pandas as pd

    from bench.refit import inner_split
    from tfrec.cli.ranking_stage import train_ranker, two_stage_for_test
    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.features.catalogue import Catalogue
    from tfrec.models.scoring import HybridScorer

    cfg = load_config(None, [*COMMON, f"--train.seed={seed}"])
    quiet = lambda *a: None  # noqa: E731
    data, ia, split, _ = prepare(cfg, quiet)
    text, _ = encode_item_texts(cfg, data.items, quiet)
    inner = inner_split("temporal", split, seed)
    catalogue = Catalogue.fit(data.items, inner.train, ia, data.users)
    t0 = time.perf_counter()
    model, history, _, qf = train_hybrid(cfg, data, inner, catalogue, text, log=quiet)
    row = {"seed": seed, "inner_train": len(inner.train), "inner_validation": len(inner.val),
           "held_out": len(inner.test), "retriever_seconds": round(time.perf_counter() - t0, 1),
           "prior": [history["popularity_prior"]["weight"], history["popularity_prior"]["days"]], "rankers": {}}
    rankers = {}
    for name in variants:
        t0 = time.perf_counter()
        rankers[name], info = train_ranker(_variant_config(cfg, name), data, inner, catalogue, text, model, qf,
                                           log=quiet)
        best = max(info["validation"], key=lambda h: h["val_two_stage_ndcg@10"])
        blend = info["retrieval_blend"]
        row["rankers"][name] = {
            "seconds": round(time.perf_counter() - t0, 1), "best_epoch": best["epoch"],
            "inner_val_ranker_alone_ndcg@10": best["val_two_stage_ndcg@10"], "blend": blend["blend"],
            "blend_new": blend.get("blend_new", blend["blend"]),
            "inner_val_two_stage_ndcg@10": max(t["val_two_stage_ndcg@10"] for t in blend["trials"])}
        print(f"seed {seed} {name}: inner validation ranker alone {best['val_two_stage_ndcg@10']:.4f}, "
              f"blend {blend['blend']:g} (empty history {row['rankers'][name]['blend_new']:g}) -> "
              f"{row['rankers'][name]['inner_val_two_stage_ndcg@10']:.4f}", flush=True)
    # Every ranker's training ends with the retriever's prior counting inner train + inner validation
    # (what the held-out queries know); the scorers are built after the last one.
    known = pd.concat([inner.train, inner.val], ignore_index=True)
    scorer = HybridScorer(model, qf, known, catalogue.item_ids)
    models = {"retrieval": (scorer.user_matrix(catalogue, inner.test), scorer.item_embeddings)}
    for name, ranker in rankers.items():
        models[name] = two_stage_for_test(model, ranker, qf, known, inner, catalogue, cfg.eval, cfg.ranking.candidates)
    compare = [(v, "retrieval") for v in variants] + [(v, variants[0]) for v in variants[1:]]
    rep = evaluate_models(models, data, inner, catalogue, cfg.eval, log=quiet, compare=compare,
                          history_length=cfg.data.history_length)
    row["held_out_metrics"] = {m: {k: float(rep["models"][m]["mean"][k]) for k in METRICS} for m in models}
    row["comparisons"] = [{k: c.get(k) for k in ("a", "b", "metric", "mean_diff", "low", "high", "p_value")}
                          for c in rep["comparisons"]]
    for c in row["comparisons"]:
        print(f"seed {seed} held out: {c['a']} - {c['b']} {c.get('metric')} {c['mean_diff']:+.4f} "
              f"[{c['low']:+.4f}, {c['high']:+.4f}]", flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    start = time.time()
    key = "_vs_".join(args.variants)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "ranker variants one level down",
                                                            "comparisons": {}}
    section = doc["comparisons"].setdefault(key, {"variants": {v: VARIANTS[v] for v in args.variants},
                                                  "seeds": {}})
    for seed in args.seeds:
        section["seeds"][str(seed)] = one_seed(seed, args.variants)
        doc["machine"] = machine_info()
        write_json(OUT, doc)  # after every seed: a long run keeps what it measured
    rows = list(section["seeds"].values())
    first = args.variants[0]
    section["summary"] = {
        f"{v} - {first} held-out two-stage ndcg@10": [round(r["held_out_metrics"][v]["ndcg@10"]
                                                           - r["held_out_metrics"][first]["ndcg@10"], 4) for r in rows]
        for v in args.variants[1:]}
    section["summary"].update({
        f"{v} - retrieval held-out ndcg@10": [round(r["held_out_metrics"][v]["ndcg@10"]
                                                    - r["held_out_metrics"]["retrieval"]["ndcg@10"], 4) for r in rows]
        for v in args.variants})
    doc["seconds_last_call"] = round(time.time() - start, 1)
    write_json(OUT, doc)
    print(json.dumps(section["summary"], indent=1))


if __name__ == "__main__":
    main()
