"""Cold items: the hybrid's score blended with TF-IDF content similarity (session 15, not built).

    .venv/bin/python bench/cold_start_blend.py [--stage validate|test|all|draws]

Would a lexical signal add to the tower's content vectors on items nobody interacted
with? Each cold item's score for a user is z(hybrid) + beta x z(TF-IDF), both
standardised over the cold items per user (TF-IDF: `tfrec.evaluation.baselines.
TfidfContent`, folded in on what the user is known to have rated, as in
`bench/cold_start.py`). The hybrid is the default retriever (`bench/cold_start.py`'s
`default` variant, 10 epochs), retrained here.

validate: beta over a grid on validation-cold items (`validation_cold_split`) for 7
    trained models: the usual draw 7 with training seeds 42 / 1 / 2 and draws 1-4 with
    seed 42. beta is chosen by the mean NDCG@10 ("known" information) over the 7.
test: the 168 test cold items of the `cold_items` split, training seeds 42 / 1 / 2, the
    whole grid recorded; the chosen beta is the reported one.
draws: the other held-out item draws of `bench/cold_start_draws.py` (`split.seed` 1-4;
    training seed 42), the chosen beta and the grid recorded, nothing chosen.
Both information settings of `tfrec.evaluation.cold_start.cold_queries` are scored.
Ratios are against TF-IDF alone in the same computation (beta -> infinity); cold items
are ranked in catalogue-index order, so ties break as in `evaluate_cold_items`.
Writes bench/results/cold_start_blend_ml100k.json (atomic).
"""
import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = REPO / "bench" / "results" / "cold_start_blend_ml100k.json"
BETAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 4.0)
VALIDATION = ((42, 7), (1, 7), (2, 7), (42, 1), (42, 2), (42, 3), (42, 4))  # (training seed, validation-cold draw)
TEST_SEEDS = (42, 1, 2)
DRAW_SEEDS = (1, 2, 3, 4)  # `split.seed` of bench/cold_start_draws.py (42 is the test split above)


def standardise(s):
    """Per-row z-scores (a row with no spread stays 0)."""
    return (s - s.mean(1, keepdims=True)) / np.maximum(s.std(1, keepdims=True), 1e-9)


def blend_scores(seed, draw, split_seed=None):
    """Trains the default hybrid (on validation-cold draw `draw`, or the test split for
    None; `split_seed`: another draw of the held-out items) and returns
    {information: {beta or "tfidf": NDCG@10}}."""
    from cold_start import VARIANTS, train_cold_model
    from tfrec.evaluation.baselines import BASELINES
    from tfrec.evaluation.cold_start import QUERY_INFORMATION, cold_queries
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.text.template import item_texts

    flags = [*VARIANTS["default"], f"--train.seed={seed}"] + ([f"--split.seed={split_seed}"] if split_seed else [])
    _, data, split, catalogue, scorer, _, _ = train_cold_model(flags, 10, draw is not None, validation_seed=draw)
    cold = np.sort(catalogue.item_index(split.cold_items))
    relevant = catalogue.matrix(split.test[split.test["item_id"].isin(split.cold_items)])[:, cold]
    users = np.unique(relevant.nonzero()[0])
    text = item_texts(data.items)
    out = {}
    for information in QUERY_INFORMATION:
        events, seen = cold_queries(split, information)
        hybrid = scorer.user_matrix(catalogue, events)[users] @ scorer.item_embeddings[cold].T  # (n_users, n_cold)
        tfidf = BASELINES["tfidf_content"]().fit(catalogue.matrix(split.train), item_text=text, seed=0).fold_in(
            catalogue.matrix(seen)).score(users)[:, cold]
        ndcg = lambda s: evaluate_ranking(lambda idx: s[np.searchsorted(users, np.asarray(idx))], users, relevant,
                                          ks=(10,)).mean()["ndcg@10"]
        row = {str(b): ndcg((standardise(hybrid) + b * standardise(tfidf)).astype(np.float32)) for b in BETAS}
        row["tfidf"] = ndcg(tfidf.astype(np.float32))
        out[information] = row
        print(f"  seed {seed} draw {draw} {information}: " + " ".join(f"{k} {v:.4f}" for k, v in row.items()),
              flush=True)
    return out


def mean_rows(rows):
    """Means over models of each {information: {beta: NDCG@10}} entry."""
    first = next(iter(rows.values()))
    return {inf: {k: float(np.mean([r[inf][k] for r in rows.values()])) for k in first[inf]} for inf in first}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("validate", "test", "all", "draws"), default="all")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    import json

    out_path = pathlib.Path(args.out)
    doc = json.loads(out_path.read_text()) if out_path.exists() else {}
    doc.update(benchmark="cold items: z(hybrid) + beta z(TF-IDF), ML-100K", betas=list(BETAS),
               machine=machine_info())
    start = time.time()
    if args.stage in ("validate", "all"):
        rows = {f"seed{s}_draw{d}": blend_scores(s, d) for s, d in VALIDATION}
        mean = mean_rows(rows)
        chosen = max(BETAS, key=lambda b: mean["known"][str(b)])
        doc["validation"] = {"models": rows, "mean": mean, "chosen_beta": chosen,
                             "rule": "highest mean NDCG@10 (known information) over the 7 models"}
        write_json(out_path, doc)
        print(f"validation: chosen beta {chosen}; mean known " +
              " ".join(f"{k} {v:.4f}" for k, v in mean["known"].items()), flush=True)
    if args.stage in ("test", "draws") and "validation" not in doc:
        raise SystemExit(f"{out_path} holds no validation stage: run `--stage validate` first (beta is chosen there)")
    if args.stage in ("test", "all"):
        chosen = doc["validation"]["chosen_beta"]
        rows = {f"seed{s}": blend_scores(s, None) for s in TEST_SEEDS}
        mean = mean_rows(rows)
        doc["test"] = {"models": rows, "mean": mean, "beta": chosen,
                       "reported": {inf: {"hybrid": m["0.0"], "blend": m[str(chosen)], "tfidf": m["tfidf"],
                                          "ratio_hybrid": m["0.0"] / m["tfidf"],
                                          "ratio_blend": m[str(chosen)] / m["tfidf"]} for inf, m in mean.items()}}
        print(f"test (beta {chosen}): {json.dumps(doc['test']['reported'], indent=1)}", flush=True)
    if args.stage == "draws":
        chosen = doc["validation"]["chosen_beta"]
        rows = {f"split_seed{d}": blend_scores(42, None, split_seed=d) for d in DRAW_SEEDS}
        per = {inf: [(r[inf]["0.0"] / r[inf]["tfidf"], r[inf][str(chosen)] / r[inf]["tfidf"]) for r in rows.values()]
               for inf in next(iter(rows.values()))}
        doc["other_draws"] = {"models": rows, "beta": chosen, "mean": mean_rows(rows),
                              "ratios_tower_blend": {inf: {"per_draw": v, "mean": np.mean(v, axis=0).tolist()}
                                                     for inf, v in per.items()}}
        print(f"other draws (beta {chosen}): {json.dumps(doc['other_draws']['ratios_tower_blend'])}", flush=True)
    doc["seconds"] = round(time.time() - start, 1)
    write_json(out_path, doc)


if __name__ == "__main__":
    main()
