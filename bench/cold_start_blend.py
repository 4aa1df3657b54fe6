"""Cold items: the hybrid's score blended with TF-IDF content similarity (session 15, not built).

    .venv/bin/python bench/cold_start_blend.py [--stage validate|test|all|draws] [--base tower|profile]

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
`--base profile` (session 25): the hybrid's score is the model with the text profile
(`model.text_profile` 0.5, shrinkage 40, as `bench/cold_start_draws.py` scores it) instead
of the tower alone; its rows go under the JSON's `text_profile_base` (the tower's stay where
they were); it also records `rawB` rows, the model's score + B x the TF-IDF cosine (a fixed
weight, as a served term would add it), chosen on validation among themselves.
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


TEXT_PROFILE, TEXT_PROFILE_SHRINKAGE = 0.5, 40.0  # `--base profile`: as bench/cold_start_draws.py
RAW_BETAS = (0.1, 0.25, 0.5, 1.0, 2.0)  # `--base profile`: model score + beta x the TF-IDF cosine


def blend_scores(seed, draw, split_seed=None, base="tower"):
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
    if base == "profile":  # the same model with the text profile: its queries and item vectors are its own
        from tfrec.models.scoring import HybridScorer

        scorer.model.set_text_profile(TEXT_PROFILE, shrinkage=TEXT_PROFILE_SHRINKAGE, dim=0)
        scorer = HybridScorer(scorer.model, scorer.query_features, scorer.context, catalogue.item_ids)
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
        if base == "profile":  # a fixed weight in cosine units, as a served term would add it (no per-user z)
            row.update({f"raw{b}": ndcg((hybrid + b * tfidf).astype(np.float32)) for b in RAW_BETAS})
        row["tfidf"] = ndcg(tfidf.astype(np.float32))
        out[information] = row
        print(f"  seed {seed} draw {draw} {information}: " + " ".join(f"{k} {v:.4f}" for k, v in row.items()),
              flush=True)
    return out


def _raw_key(beta):
    """The row key of the fixed-weight blend with weight `beta` (0: the model alone)."""
    return f"raw{beta}" if beta else "0.0"


def mean_rows(rows):
    """Means over models of each {information: {beta: NDCG@10}} entry."""
    first = next(iter(rows.values()))
    return {inf: {k: float(np.mean([r[inf][k] for r in rows.values()])) for k in first[inf]} for inf in first}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("validate", "test", "all", "draws"), default="all")
    ap.add_argument("--base", choices=("tower", "profile"), default="tower")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    import json

    out_path = pathlib.Path(args.out)
    root = json.loads(out_path.read_text()) if out_path.exists() else {}
    root.update(benchmark="cold items: z(hybrid) + beta z(TF-IDF), ML-100K", betas=list(BETAS),
                machine=machine_info())
    doc = root if args.base == "tower" else root.setdefault("text_profile_base", {
        "base": f"the hybrid with the text profile (weight {TEXT_PROFILE}, shrinkage {TEXT_PROFILE_SHRINKAGE})"})
    base = args.base
    start = time.time()
    if args.stage in ("validate", "all"):
        rows = {f"seed{s}_draw{d}": blend_scores(s, d, base=base) for s, d in VALIDATION}
        mean = mean_rows(rows)
        chosen = max(BETAS, key=lambda b: mean["known"][str(b)])
        doc["validation"] = {"models": rows, "mean": mean, "chosen_beta": chosen,
                             "rule": "highest mean NDCG@10 (known information) over the 7 models"}
        if base == "profile":
            doc["validation"]["chosen_raw_beta"] = max((0.0,) + RAW_BETAS, key=lambda b: mean["known"][_raw_key(b)])
        write_json(out_path, root)
        print(f"validation: chosen beta {chosen}; mean known " +
              " ".join(f"{k} {v:.4f}" for k, v in mean["known"].items()), flush=True)
    if args.stage in ("test", "draws") and "validation" not in doc:
        raise SystemExit(f"{out_path} holds no validation stage: run `--stage validate` first (beta is chosen there)")
    if args.stage in ("test", "all"):
        chosen = doc["validation"]["chosen_beta"]
        rows = {f"seed{s}": blend_scores(s, None, base=base) for s in TEST_SEEDS}
        mean = mean_rows(rows)
        doc["test"] = {"models": rows, "mean": mean, "beta": chosen,
                       "reported": {inf: {"hybrid": m["0.0"], "blend": m[str(chosen)], "tfidf": m["tfidf"],
                                          "ratio_hybrid": m["0.0"] / m["tfidf"],
                                          "ratio_blend": m[str(chosen)] / m["tfidf"]} for inf, m in mean.items()}}
        if base == "profile":
            key = _raw_key(doc["validation"]["chosen_raw_beta"])
            for inf, m in mean.items():
                doc["test"]["reported"][inf].update(raw_blend=m[key], ratio_raw_blend=m[key] / m["tfidf"],
                                                    raw_beta=doc["validation"]["chosen_raw_beta"])
        print(f"test (beta {chosen}): {json.dumps(doc['test']['reported'], indent=1)}", flush=True)
    if args.stage == "draws":
        chosen = doc["validation"]["chosen_beta"]
        rows = {f"split_seed{d}": blend_scores(42, None, split_seed=d, base=base) for d in DRAW_SEEDS}
        keys = ["0.0", str(chosen)] + ([_raw_key(doc["validation"]["chosen_raw_beta"])] if base == "profile" else [])
        per = {inf: [tuple(r[inf][k] / r[inf]["tfidf"] for k in keys) for r in rows.values()]
               for inf in next(iter(rows.values()))}
        doc["other_draws"] = {"models": rows, "beta": chosen, "mean": mean_rows(rows), "ratio_columns": keys,
                              "ratios_tower_blend": {inf: {"per_draw": v, "mean": np.mean(v, axis=0).tolist()}
                                                     for inf, v in per.items()}}
        print(f"other draws (beta {chosen}): {json.dumps(doc['other_draws']['ratios_tower_blend'])}", flush=True)
    doc["seconds"] = round(time.time() - start, 1)
    write_json(out_path, root)


if __name__ == "__main__":
    main()
