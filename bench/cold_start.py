"""Cold-start items on ML-100K: the hybrid against TF-IDF content, MostPopular and
Random, ranking held-out items among themselves (issue #5 target: NDCG@10 at
least 1.2x TF-IDF).

    .venv/bin/python bench/cold_start.py [--stage validate|test|all] [--epochs 10]
        [--variants default,dropout_0.5,...] [--seeds 42,1,2] [--final content_2.0]

validate: every variant is trained on the `cold_items` split's train part minus a
    further seeded 10% of the train items ("validation-cold",
    `tfrec.data.splits.validation_cold_split`) and scored on those; the test cold
    items are never looked at. Each variant is also trained on the temporal split
    (warm check: best validation NDCG@10 / Recall@20 of early stopping).
Both stages score two information settings (`tfrec.evaluation.cold_start.cold_queries`):
    known (every model sees the user's train + validation interactions; the
    hybrid is asked after the user's last known event) and before_first_cold (every
    model sees only what precedes the user's first cold-item event). `tfrec run`
    asks the hybrid at the first cold event but folds the baselines in on all known
    interactions: a third of the cold users then have an empty history for the
    hybrid only.
test: the default and the chosen variant (`--final`) trained on the full
    `cold_items` train split and scored on the 168 test cold items, once.
Results merge into bench/results/cold_start_ml100k.json (atomic write).
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

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401

VARIANTS = {  # the first six fixed before any number; dropout_0.8, dropout_1.0 and text_only
    # were added after validation favoured more dropout
    # the defaults before this benchmark (pinned; cold neighbours, session 9, pinned off)
    "default": ["--model.content_loss_weight=0.0", "--model.cold_neighbours=0", "--model.content_prior=false"],
    "dropout_0.5": ["--model.id_dropout=0.5"],
    "content_0.5": ["--model.content_loss_weight=0.5"],
    "content_1.0": ["--model.content_loss_weight=1.0"],
    "content_1.0+dropout_0.5": ["--model.content_loss_weight=1.0", "--model.id_dropout=0.5"],
    "content_2.0": ["--model.content_loss_weight=2.0"],
    "dropout_0.8": ["--model.id_dropout=0.8"],
    "dropout_1.0": ["--model.id_dropout=1.0"],  # item ids never used: a content-only item tower
    "text_only": ["--model.use_id=false"],  # no ids on either side (the ablation's text_only)
    # added after the test run showed a large seed spread: a longer query history, closer to
    # the whole known profile TF-IDF folds in (median 50 known items per cold user)
    "history_50": ["--model.content_loss_weight=0.0", "--data.history_length=50"],
    "content_2.0+history_50": ["--model.content_loss_weight=2.0", "--data.history_length=50"],
    # session 9: cold items mixed with their 50 nearest trained items (`tfrec.models.cold_neighbours`); its
    # settings were chosen on validation-cold items by a grid over the trained default's vectors (README)
    "neighbours": ["--model.content_loss_weight=0.0", "--model.cold_neighbours=50",
                   "--model.cold_neighbour_settings=0.1,0.5,0.0"],
    # session 13: the popularity prior of items without interactions predicted from their content
    # (`tfrec.models.content_prior`); found in a scratch check on validation-cold items only
    "content_prior": ["--model.content_loss_weight=0.0", "--model.content_prior=true"],
    # session 16: items without a trained id also score 0.5 x the cosine of their centred text with the user's
    # whole known history (`tfrec.models.text_profile`); the weight chosen on validation-cold items over 7 models
    # in a scratch run (docs/retrieval_results.md, which also says what of the test items that run printed);
    # first without shrinkage, then a profile of n items counting n / (n + 40), k chosen on validation-cold
    # items at w 0.5
    "text_profile_unshrunk": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                              "--model.text_profile_shrinkage=0"],
    "text_profile": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                     "--model.text_profile_shrinkage=40"],
    # Session 18: the text profile with the history encoder trained through the item tower's own pass (0, as
    # every row above) and through the table refreshed every 10 steps (`model.history_refresh`, the default since)
    **{f"text_profile_refresh{k}": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                                    "--model.text_profile_shrinkage=40", f"--model.history_refresh={k}"]
       for k in (0, 10)},
    # Session 25: + the lexical term (`model.text_profile_lexical`, the TF-IDF cosine), its weight 0.5 chosen on
    # validation-cold items over 7 models (`bench/cold_start_blend.py --base profile`, fixed-weight rows)
    "text_profile_lexical": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                             "--model.text_profile_shrinkage=40", "--model.text_profile_lexical=0.5"],
    # Session 28: the profile's text part in the catalogue texts' top 64 principal directions (the default
    # since; chosen on validation-cold items, `bench/profile_pca.py`); every text_profile row above used all
    # 384 dimensions (`--model.text_profile_dim=0`, added to their flags by `_config`)
    "text_profile_dim64": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                           "--model.text_profile_shrinkage=40", "--model.text_profile_dim=64"],
    "text_profile_lexical_dim64": ["--model.content_loss_weight=0.0", "--model.text_profile=0.5",
                                   "--model.text_profile_shrinkage=40", "--model.text_profile_lexical=0.5",
                                   "--model.text_profile_dim=64"],
    # Session 29: the profile and its lexical term on by default (the text part in 64 directions, the words of the
    # 1,024 most texts: validation-cold 0.3667 as every word's 0.3666, bench/results/lexical_hashing_ml100k.json)
    "defaults_session29": ["--model.text_profile=0.5", "--model.text_profile_lexical=0.5",
                           "--model.text_profile_lexical_terms=1024", "--model.text_profile_dim=64"],
}
OUT = ROOT / "bench" / "results" / "cold_start_ml100k.json"


def _config(flags, epochs, kind):
    from tfrec.config import load_config

    if not any(f.startswith("--model.cold_neighbours=") for f in flags):
        flags = [*flags, "--model.cold_neighbours=0"]  # variants measured before session 9 ran without it
    if not any(f.startswith("--model.content_prior=") for f in flags):
        flags = [*flags, "--model.content_prior=false"]  # likewise before session 13
    if not any(f.startswith("--model.text_profile_dim=") for f in flags):
        flags = [*flags, "--model.text_profile_dim=0"]  # every text dimension, as before session 28
    # Before session 29 the profile was off unless asked for, its lexical term too, and the term kept 4,096 words
    for name, before in (("text_profile", 0), ("text_profile_lexical", 0), ("text_profile_lexical_terms", 4096)):
        if not any(f.startswith(f"--model.{name}=") for f in flags):
            flags = [*flags, f"--model.{name}={before}"]

    return load_config(None, [f"--train.epochs={epochs}", "--train.verbose=0", f"--split.kind={kind}",
                              "--export.enabled=false", "--ranking.enabled=false", *flags])


def train_cold_model(flags, epochs, validation, validation_seed=7):
    """Trains the hybrid on the cold split (or its validation stand-in, validation-cold
    items drawn with `validation_seed`). Returns (config, data, split, catalogue, scorer
    over train + validation, training seconds, training history)."""
    import pandas as pd

    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.data.splits import validation_cold_split
    from tfrec.features.catalogue import Catalogue
    from tfrec.models.scoring import HybridScorer

    config = _config(flags, epochs, "cold_items")
    data, ia, split, catalogue = prepare(config, log=lambda *a: None)
    if validation:
        split = validation_cold_split(split, seed=validation_seed)
        catalogue = Catalogue.fit(data.items, split.train, ia, data.users)  # no id for the validation-cold items
    text_emb, _ = encode_item_texts(config, data.items, log=lambda *a: None)
    t0 = time.perf_counter()
    model, history, _, qf = train_hybrid(config, data, split, catalogue, text_emb, log=lambda *a: None)
    secs = time.perf_counter() - t0
    known = pd.concat([split.train, split.val], ignore_index=True)
    return config, data, split, catalogue, HybridScorer(model, qf, known, catalogue.item_ids), secs, history


def cold_scores(flags, epochs, validation, log, validation_seed=7):
    """Trains on the cold split (or its validation stand-in, see `train_cold_model`) and
    returns the cold-item report per information setting (see `cold_queries`)."""
    from tfrec.evaluation.cold_start import QUERY_INFORMATION, cold_queries, evaluate_cold_items

    config, data, split, catalogue, scorer, secs, history = train_cold_model(flags, epochs, validation,
                                                                             validation_seed)
    reports = {}
    for information in QUERY_INFORMATION:
        log(f"   information: {information}")
        events, seen = cold_queries(split, information)
        users = scorer.user_matrix(catalogue, events)
        reports[information] = evaluate_cold_items({"tfrec hybrid": (users, scorer.item_embeddings)}, data, split,
                                                   catalogue, config.eval, log=log, history=seen)
    return reports, {"train_seconds": secs, "epochs_trained": len(history.get("validation") or [])}


def warm_scores(flags, epochs):
    """Temporal split: best validation NDCG@10 / Recall@20 (full catalogue) of early stopping."""
    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare

    config = _config(flags, epochs, "temporal")
    data, _, split, catalogue = prepare(config, log=lambda *a: None)
    text_emb, _ = encode_item_texts(config, data.items, log=lambda *a: None)
    _, history, _, _ = train_hybrid(config, data, split, catalogue, text_emb, log=lambda *a: None)
    best = max(history["validation"], key=lambda h: h["val_recall@20"])
    return {"val_ndcg@10": best["val_ndcg@10"], "val_recall@20": best["val_recall@20"], "best_epoch": best["epoch"]}


def _summary(result):
    reports, info = result
    return {**{information: _one(r) for information, r in reports.items()}, **info}


def _one(report):
    m = report["models"]
    return {name: {"ndcg@10": e["mean"]["ndcg@10"], "recall@20": e["mean"]["recall@20"],
                   "ci95": e["ci95"], **({"ratio_ndcg@10_vs_tfidf": e["ratio_ndcg@10_vs_tfidf"],
                                          "vs_tfidf_content": e["vs_tfidf_content"]}
                                         if "ratio_ndcg@10_vs_tfidf" in e else {})}
            for name, e in m.items()}


def _mean_row(by_seed, information):
    """Mean and sd over seeds of the hybrid's NDCG@10 / Recall@20 / ratio vs TF-IDF."""
    h = [r[information]["tfrec hybrid"] for r in by_seed.values()]
    stat = lambda key: (float(np.mean([x[key] for x in h])), float(np.std([x[key] for x in h])))
    return {"n_seeds": len(h), "ndcg@10": stat("ndcg@10"), "recall@20": stat("recall@20"),
            "ratio_ndcg@10_vs_tfidf": stat("ratio_ndcg@10_vs_tfidf")}


def _tables(out):
    """Markdown tables (mean +- sd over training seeds) of the validation variants and
    the test models, per information setting."""
    fmt = lambda ms: f"{ms[0]:.4f} +- {ms[1]:.4f}"
    for information in ("known", "before_first_cold"):
        lines = [f"| variant (validation, {information}) | seeds | cold NDCG@10 | cold Recall@20 | "
                 "NDCG@10 ratio vs TF-IDF | warm val NDCG@10 | warm val Recall@20 |", "|---|---|---|---|---|---|---|"]
        for name, row in out.get("validation", {}).items():
            if not row.get("cold_validation_seeds"):
                continue
            m = row.setdefault("mean_over_seeds", {})[information] = _mean_row(row["cold_validation_seeds"],
                                                                                 information)
            w = list(row.get("warm_temporal_validation_seeds", {}).values())
            warm = [(float(np.mean([x[k] for x in w])), float(np.std([x[k] for x in w]))) if w else (np.nan, np.nan)
                    for k in ("val_ndcg@10", "val_recall@20")]
            lines.append(f"| {name} | {m['n_seeds']} | {fmt(m['ndcg@10'])} | {fmt(m['recall@20'])} | "
                         f"{m['ratio_ndcg@10_vs_tfidf'][0]:.2f} | {fmt(warm[0])} ({len(w)}) | {fmt(warm[1])} |")
        out[f"validation_table_{information}"] = "\n".join(lines)
        lines = [f"| model (test cold items, {information}) | NDCG@10 (95% CI; seeds: mean +- sd) | "
                 "Recall@20 (95% CI) | NDCG@10 ratio vs TF-IDF |", "|---|---|---|---|"]
        for variant, row in out.get("test", {}).items():
            seeds = row.get("cold_test_seeds", {})
            if not seeds:
                continue
            first = next(iter(seeds.values()))[information]
            if variant == list(out["test"])[0]:
                for name in ("tfidf_content", "most_popular", "random"):  # seed-independent
                    b, ci = first[name], first[name]["ci95"]
                    lines.append(f"| {name} | {b['ndcg@10']:.4f} [{ci['ndcg@10'][0]:.3f}, {ci['ndcg@10'][1]:.3f}] | "
                                 f"{b['recall@20']:.4f} [{ci['recall@20'][0]:.3f}, {ci['recall@20'][1]:.3f}] | - |")
            m = row.setdefault("mean_over_seeds", {})[information] = _mean_row(seeds, information)
            for seed, r in seeds.items():
                h, ci = r[information]["tfrec hybrid"], r[information]["tfrec hybrid"]["ci95"]
                lines.append(f"| tfrec hybrid ({variant}, seed {seed}) | {h['ndcg@10']:.4f} [{ci['ndcg@10'][0]:.3f}, "
                             f"{ci['ndcg@10'][1]:.3f}] | {h['recall@20']:.4f} [{ci['recall@20'][0]:.3f}, "
                             f"{ci['recall@20'][1]:.3f}] | {h['ratio_ndcg@10_vs_tfidf']:.2f} |")
            lines.append(f"| tfrec hybrid ({variant}, mean of {m['n_seeds']}) | {fmt(m['ndcg@10'])} | "
                         f"{fmt(m['recall@20'])} | {m['ratio_ndcg@10_vs_tfidf'][0]:.2f} |")
        out[f"test_table_{information}"] = "\n".join(lines)


def _write(out):
    _tables(out)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(out, fh, indent=2)
    os.replace(tmp, OUT)


def _test_seeds(out, row, name, seeds, epochs, label):
    """Trains variant `name` on the cold_items split once per seed and scores its test
    cold items into `row["cold_test_seeds"]`, writing the JSON after each."""
    for seed in seeds:
        print(f"== {label} {name} seed {seed}", flush=True)
        row.setdefault("cold_test_seeds", {})[str(seed)] = _summary(
            cold_scores([*VARIANTS[name], f"--train.seed={seed}"], epochs, False, print))
        _write(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stage", choices=("validate", "test", "all"), default="all")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--no-warm", action="store_true", help="skip the temporal (warm) check")
    ap.add_argument("--warm-only", action="store_true", help="validate: only the temporal (warm) check")
    ap.add_argument("--seeds", default="42", help="training seeds (`train.seed`), comma-separated")
    ap.add_argument("--final", default="content_2.0", help="the variant chosen on validation, for the test stage")
    ap.add_argument("--validation-draws", default="",
                    help="validate: other seeds of the validation-cold item draw (seed 7 is the usual one); "
                         "results under `validation_cold_draws`, training seed 42")
    ap.add_argument("--rerun-test-as", default="",
                    help="test: score `--variants` again on the test cold items under `test_reruns[KEY]`, never "
                         "replacing `test` (session 14: the same models retrained after the shuffle fix, which "
                         "changed every model but the first of a process; no choice is made on them)")
    args = ap.parse_args()
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    out.update({"benchmark": "cold-start items, ML-100K cold_items split (168 held-out items ranked among themselves)",
                "timestamp": datetime.datetime.utcnow().isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()},
                "command": "python " + " ".join(["bench/cold_start.py", *sys.argv[1:]]),
                "common_flags": [f"--train.epochs={args.epochs}", "--ranking.enabled=false"],
                "variants": VARIANTS})
    val = out.setdefault("validation", {})
    seeds = [int(x) for x in args.seeds.split(",")]
    draws = [int(x) for x in args.validation_draws.split(",") if x]
    if args.stage == "test" and args.rerun_test_as:
        rerun = out.setdefault("test_reruns", {}).setdefault(args.rerun_test_as, {})
        for name in args.variants.split(","):
            _test_seeds(out, rerun.setdefault(name, {"flags": VARIANTS[name]}), name, seeds, args.epochs,
                        f"test rerun {args.rerun_test_as}:")
        return
    if args.stage == "validate" and draws:  # session 13: how much a validation-cold result is its item draw
        for name in args.variants.split(","):
            row = out.setdefault("validation_cold_draws", {}).setdefault(name, {"flags": VARIANTS[name]})
            for draw in draws:
                print(f"== validate {name}, validation-cold draw {draw}", flush=True)
                row[str(draw)] = _summary(cold_scores([*VARIANTS[name], "--train.seed=42"], args.epochs, True, print,
                                                      validation_seed=draw))
                done = [r for k, r in row.items() if k.isdigit()]
                row["mean_over_draws"] = {inf: {m: float(np.mean([r[inf][m]["ndcg@10"] for r in done]))
                                                for m in ("tfrec hybrid", "tfidf_content")} for inf in done[0]
                                          if isinstance(done[0][inf], dict)}
                _write(out)
        return
    if args.stage in ("validate", "all"):
        for name in args.variants.split(","):
            row = val.setdefault(name, {"flags": VARIANTS[name]})
            for seed in seeds:
                print(f"== validate {name} seed {seed}", flush=True)
                flags = [*VARIANTS[name], f"--train.seed={seed}"]
                if not args.warm_only:
                    row.setdefault("cold_validation_seeds", {})[str(seed)] = _summary(
                        cold_scores(flags, args.epochs, True, print))
                if not args.no_warm:
                    w = row.setdefault("warm_temporal_validation_seeds", {})[str(seed)] = warm_scores(flags,
                                                                                                      args.epochs)
                    print(f"   warm: {w}", flush=True)
                _write(out)
    if args.stage in ("test", "all"):
        test = out.setdefault("test", {})
        for name in dict.fromkeys(["default", args.final]):
            row = test.setdefault(name, {"flags": VARIANTS[name]})
            # tested once: never re-run to pick a better draw
            _test_seeds(out, row, name, [s for s in seeds if str(s) not in row.get("cold_test_seeds", {})],
                        args.epochs, "test")
        tested = out.setdefault("tested_in_order", [])
        if args.final not in tested:
            tested.append(args.final)
        _write(out)

if __name__ == "__main__":
    main()
