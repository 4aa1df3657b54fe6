"""The hybrid model under RecBole's general protocol on ML-100K (issue #5): which
query history, history length and encoder, chosen on VALIDATION only, then one
run of the chosen configuration on test.

    .venv/bin/python bench/recbole_general.py validate [VARIANT ...]   # adds rows to the validation table
    .venv/bin/python bench/recbole_general.py test VARIANT             # the chosen one, once, on test
    .venv/bin/python bench/recbole_general.py test VARIANT --seeds 1 2 3  # the same on other training draws
    .venv/bin/python bench/recbole_general.py references               # EASE and a Mult-DAE on validation

The protocol (`recbole_general`): per-user random 80/10/10 split (seed 42), one
query per user, full ranking with train (+ validation at test) items masked.
`validate` trains each variant on train with early stopping on the validation
split, exactly as `tfrec run` does, and records the best validation Recall@20 /
NDCG@10 (train items masked); the test split is not read. `test` runs `tfrec run
--eval.protocol=recbole_general --eval.baselines=` with the variant's flags (the
ranking stage and export off: the target is the retrieval model). Results go to
bench/results/recbole_general_ml100k.json (rows merged across calls; atomic write).

Validation rows go to `validation_recbole_sizes` (session 12 on: the split sized as
RecBole's `_calcu_split_ids`); `validation` keeps the rows of sessions 5-7, measured on
the earlier rounded split, as they were. `references` puts two non-tfrec models on the
same validation queries for scale: EASE and a Mult-DAE (Liang et al. 2018: a user's
train items, dropout, one tanh layer, a softmax over the catalogue), the family a
two-tower model with profile queries belongs to.
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
from tfrec.config import load_config  # noqa: E402

OUT = ROOT / "bench" / "results" / "recbole_general_ml100k.json"
COMMON = ["--train.verbose=0", "--eval.baselines=", "--export.enabled=false", "--ranking.enabled=false"]
# Validation-only variants. "before_event" is the hybrid as it was (time-ordered queries).
VARIANTS = {
    "before_event_h20": ["--eval.query_history=before_event"],
    "profile_h20": ["--eval.query_history=profile"],
    "profile_h50": ["--eval.query_history=profile", "--data.history_length=50"],
    "profile_h100": ["--eval.query_history=profile", "--data.history_length=100"],
    "profile_h50_sasrec": ["--eval.query_history=profile", "--data.history_length=50", "--model.sequence=sasrec"],
    "profile_h50_t0.1": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.1"],
    "profile_h50_t0.2": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2"],
    "profile_h20_t0.1": ["--eval.query_history=profile", "--model.temperature=0.1"],
    "profile_h100_t0.1": ["--eval.query_history=profile", "--data.history_length=100", "--model.temperature=0.1"],
    "profile_h50_t0.1_d128": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.1",
                              "--model.embedding_dim=128"],
    "profile_h50_t0.3": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.3"],
    "profile_h50_t0.2_b2048": ["--eval.query_history=profile", "--data.history_length=50",
                               "--model.temperature=0.2", "--train.batch_size=2048"],
    "profile_h50_t0.2_udrop0.5": ["--eval.query_history=profile", "--data.history_length=50",
                                  "--model.temperature=0.2", "--model.user_id_dropout=0.5"],
    "profile_h50_t0.2_b4096": ["--eval.query_history=profile", "--data.history_length=50",
                               "--model.temperature=0.2", "--train.batch_size=4096"],
    "profile_h100_t0.2_b2048": ["--eval.query_history=profile", "--data.history_length=100",
                                "--model.temperature=0.2", "--train.batch_size=2048"],
    # The same as profile_h50_t0.2_b2048 with another seed: how much of a difference is noise.
    "profile_h50_t0.2_b2048_seed1": ["--eval.query_history=profile", "--data.history_length=50",
                                     "--model.temperature=0.2", "--train.batch_size=2048", "--train.seed=1"],
    "profile_h50_t0.2_b4096_e40": ["--eval.query_history=profile", "--data.history_length=50",
                                   "--model.temperature=0.2", "--train.batch_size=4096", "--train.epochs=40"],
    "profile_h100_t0.2_b4096_e40": ["--eval.query_history=profile", "--data.history_length=100",
                                    "--model.temperature=0.2", "--train.batch_size=4096", "--train.epochs=40"],
    "profile_h50_p5": ["--eval.query_history=profile", "--data.history_length=50",
                       "--train.early_stopping_patience=5", "--train.epochs=40"],
    # Session 5: around the chosen profile_h50_t0.2_b4096.
    "profile_h50_t0.2_b4096_lr0.001": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--train.learning_rate=0.001", "--train.epochs=40"],
    "profile_h50_t0.2_b4096_lr0.01": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--train.learning_rate=0.01"],
    "profile_h50_t0.2_b4096_iddrop0": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--model.id_dropout=0"],
    "profile_h50_t0.2_b4096_neg2000": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--model.num_random_negatives=2000"],
    "profile_h50_t0.2_b4096_noctx": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--model.use_context=false"],
    # Session 12, on RecBole's split sizes (validation_recbole_sizes), around the chosen setting.
    **{f"profile_h50_t0.2_b4096_{tag}": ["--eval.query_history=profile", "--data.history_length=50",
                                         "--model.temperature=0.2", "--train.batch_size=4096", *extra]
       for tag, extra in {"notext": ["--model.use_text=false"], "noattr": ["--model.use_attributes=false"],
                          "iddrop0.5": ["--model.id_dropout=0.5"], "t0.15": ["--model.temperature=0.15"],
                          "t0.25": ["--model.temperature=0.25"], "d32": ["--model.embedding_dim=32"],
                          "seed1": ["--train.seed=1"]}.items()},
    **{f"profile_h{n}_t0.2_b4096{tag}": ["--eval.query_history=profile", f"--data.history_length={n}",
                                         "--model.temperature=0.2", "--train.batch_size=4096", *extra]
       for n, tag, extra in [(100, "", []), (200, "", []), (200, "_seed1", ["--train.seed=1"]), (400, "", [])]},
    "profile_h50_t0.2_b4096_nologq": ["--eval.query_history=profile", "--data.history_length=50", "--model.temperature=0.2", "--train.batch_size=4096", "--model.logq_correction=false"],
    # Session 17 (validation_session17): wider retrieval spaces and a slower learning rate, two seeds each.
    **{f"profile_h50_t0.2_b4096_{tag}{seed_tag}": ["--eval.query_history=profile", "--data.history_length=50",
                                                   "--model.temperature=0.2", "--train.batch_size=4096", *extra, *seed]
       for tag, extra in {"d128": ["--model.embedding_dim=128"], "d256": ["--model.embedding_dim=256"],
                          "lr0.001_e40": ["--train.learning_rate=0.001", "--train.epochs=40"]}.items()
       for seed_tag, seed in (("", []), ("_seed1", ["--train.seed=1"]))},
    # Session 18 (validation_session18): the chosen setting with the history encoder reading the item tower
    # through the table refreshed every 10 steps (`model.history_refresh`, the default since) or through the
    # tower's own pass with gradient (0, as every row above was trained), two seeds each.
    **{f"profile_h200_t0.2_b4096_refresh{k}{seed_tag}": [
        "--eval.query_history=profile", "--data.history_length=200", "--model.temperature=0.2",
        "--train.batch_size=4096", f"--model.history_refresh={k}", *seed]
       for k in (0, 10) for seed_tag, seed in (("", []), ("_seed1", ["--train.seed=1"]), ("_seed2", ["--train.seed=2"]),
                                               ("_seed3", ["--train.seed=3"]))},
    # Session 19 (validation_session19): the same with the co-occurrence block (`model.cooccurrence`, EASE's
    # item-item scores with a weight chosen on validation after training, the default since) or without it (0).
    **{f"profile_h200_t0.2_b4096_{tag}{seed_tag}": [
        "--eval.query_history=profile", "--data.history_length=200", "--model.temperature=0.2",
        "--train.batch_size=4096", *extra, *seed]
       for tag, extra in (("cooc", []), ("nocooc", ["--model.cooccurrence=0"]))
       for seed_tag, seed in (("", []), ("_seed1", ["--train.seed=1"]), ("_seed2", ["--train.seed=2"]),
                              ("_seed3", ["--train.seed=3"]))},
    # Session 20: the chosen setting refitted on train + validation (`train.refit`). A refit consumes validation,
    # so it was chosen one level down (bench/refit.py recbole_general: NDCG@10 +0.004 on 4 of 4 seeds); test only.
    "profile_h200_t0.2_b4096_cooc_refit": [
        "--eval.query_history=profile", "--data.history_length=200", "--model.temperature=0.2",
        "--train.batch_size=4096", "--train.refit=true"],
    # Session 29: the same with the text profile and its lexical term, on by default since (chosen on the
    # cold-item split's validation-cold items, not here); test only, on seeds 42, 1, 2, 3.
    "profile_h200_t0.2_b4096_cooc_refit_text_profile": [
        "--eval.query_history=profile", "--data.history_length=200", "--model.temperature=0.2",
        "--train.batch_size=4096", "--train.refit=true", "--model.text_profile=0.5",
        "--model.text_profile_lexical=0.5"],
}
# For reference only (not produced here): bench/results/baselines_ml100k.json and RecBole's quick start.
ANCHORS = {"EASE (tfrec baseline, same split)": {"ndcg@10": 0.336, "recall@10": 0.274},
           "RecBole BPR (published quick start)": {"ndcg@10": 0.292, "recall@10": 0.2523}}


def _load():
    return json.loads(OUT.read_text()) if OUT.exists() else {}


def _save(out):
    out.update({"benchmark": "tfrec hybrid under recbole_general, ML-100K", "anchors": ANCHORS,
                "timestamp": datetime.datetime.utcnow().isoformat(),
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=OUT.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(out, fh, indent=2)
    os.replace(tmp, OUT)


PROFILE = "--eval.query_history=profile"
TABLE = "validation_recbole_sizes"  # `validation`: sessions 5-7, on the earlier rounded split


def _config(flags, tmp, protocol):
    # Profile queries are what the named protocol asks (and need it); a before-event
    # variant runs without it. The split is the protocol's either way (`prepare`).
    if PROFILE in flags:
        flags, protocol = [f for f in flags if f != PROFILE], True
    if not any(f.startswith("--model.text_profile=") for f in flags):
        flags = [*flags, "--model.text_profile=0"]  # every variant before session 29 ran without the text profile
    proto = ["--eval.protocol=recbole_general"] if protocol else []
    return load_config(None, [*COMMON, f"--run_root={tmp}", *proto, *flags])


def validate(names, table_key=TABLE):
    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare

    tmp = tempfile.mkdtemp(prefix="tfrec-recbole-general-")
    data, _, split, catalogue = prepare(_config([], tmp, protocol=True), log=lambda *a: None)
    out = _load()
    table = out.setdefault(table_key, {})
    text_emb = None
    for name in names:
        flags = VARIANTS[name]
        cfg = _config(flags, tmp, protocol=False)
        if text_emb is None:
            text_emb, _ = encode_item_texts(cfg, data.items, log=lambda *a: None)
        t0 = time.perf_counter()
        _, history, _, _ = train_hybrid(cfg, data, split, catalogue, text_emb, log=lambda *a: None)
        best = max(history["validation"], key=lambda h: h["val_recall@20"])
        table[name] = {"flags": flags, "seconds": round(time.perf_counter() - t0, 1),
                       "epochs_trained": len(history["validation"]), "best_epoch": best["epoch"],
                       "val_recall@20": best["val_recall@20"], "val_ndcg@10": best["val_ndcg@10"]}
        table[name].update(_after_choices(history))
        print(f"{name:<22} val recall@20 {best['val_recall@20']:.4f}  ndcg@10 {best['val_ndcg@10']:.4f}  "
              f"(epoch {best['epoch']}/{len(history['validation'])}, {table[name]['seconds']:.0f} s)", flush=True)
        out["table" if table_key == TABLE else f"table_{table_key}"] = _table(out, table_key)
        _save(out)


def ease_validation(split, catalogue):
    """EASE (l2=500, its tuned value on this split) on the same validation queries, for scale."""
    import numpy as np

    from tfrec.evaluation.baselines.ease import EASE
    from tfrec.evaluation.ranking import evaluate_ranking

    train, val = catalogue.matrix(split.train), catalogue.matrix(split.val)
    model = EASE(l2=500.0).fit(train)
    res = evaluate_ranking(lambda u: np.asarray(model.score(np.asarray(u))), np.unique(val.nonzero()[0]), val,
                           exclude=train, ks=(10, 20), return_topk=False).mean()
    return {"val_recall@20": res["recall@20"], "val_ndcg@10": res["ndcg@10"]}


def dae_validation(split, catalogue, dim=200, dropout=0.5, epochs=200, every=10, seed=0):
    """A Mult-DAE (Liang et al. 2018, multinomial likelihood) on the same validation
    queries, for scale: input a user's train items (dropout, L2-normalised), one tanh
    layer of `dim`, logits over the catalogue; Adam 1e-3, batch 128. Evaluated every
    `every` epochs; the best validation NDCG@10 is reported with its epoch."""
    import numpy as np
    import tensorflow as tf

    from tfrec.evaluation.ranking import evaluate_ranking

    train, val = catalogue.matrix(split.train), catalogue.matrix(split.val)
    x = (train > 0).astype(np.float32).toarray()
    tf.random.set_seed(seed)
    inp = tf.keras.Input((x.shape[1],))
    h = tf.keras.layers.Dropout(dropout)(inp)
    h = tf.keras.layers.Lambda(lambda t: tf.math.l2_normalize(t, 1))(h)
    h = tf.keras.layers.Dense(dim, activation="tanh", kernel_regularizer=tf.keras.regularizers.l2(1e-5))(h)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(x.shape[1])(h))
    model.compile(tf.keras.optimizers.Adam(1e-3), lambda y, z: -tf.reduce_sum(tf.nn.log_softmax(z) * y, axis=1))
    users, best = np.unique(val.nonzero()[0]), None
    for epoch in range(every, epochs + 1, every):
        model.fit(x, x, batch_size=128, epochs=every, verbose=0, shuffle=True)
        scores = model.predict(x, verbose=0)
        res = evaluate_ranking(lambda u: scores[np.asarray(u)], users, val, exclude=train, ks=(10, 20),
                               return_topk=False).mean()
        if best is None or res["ndcg@10"] > best["val_ndcg@10"]:
            best = {"val_recall@20": res["recall@20"], "val_ndcg@10": res["ndcg@10"], "best_epoch": epoch}
    return {**best, "dim": dim, "dropout": dropout, "epochs": epochs}


def references():
    from tfrec.cli.run import prepare

    _, _, split, catalogue = prepare(_config([], tempfile.mkdtemp(prefix="tfrec-recbole-general-"), protocol=True),
                                     log=lambda *a: None)
    out = _load()
    out["ease_validation"] = ease_validation(split, catalogue)
    out["dae_validation"] = dae_validation(split, catalogue)
    out["table"] = _table(out)
    _save(out)
    print(out["table"])


def _after_choices(history):
    """The co-occurrence weight and popularity prior chosen on validation after training, and the
    validation metrics with both (the prior is chosen last, with the block in place)."""
    co, prior = history.get("cooccurrence") or {}, history.get("popularity_prior") or {}
    chosen = [t for t in prior.get("trials", []) if (t["weight"], t["days"]) == (prior["weight"], prior["days"])]
    if not chosen:
        return {}
    return {"cooccurrence_weight": co.get("weight", 0.0), "prior": [prior["weight"], prior["days"]],
            "val_recall@20_after_choices": chosen[0]["val_recall@20"],
            "val_ndcg@10_after_choices": chosen[0]["val_ndcg@10"]}


def _table(out, key=TABLE):
    lines = ["| variant | val Recall@20 | val NDCG@10 | epochs (best) |", "|---|---|---|---|"]
    after = any("val_ndcg@10_after_choices" in r for r in out.get(key, {}).values())
    if after:  # session 19 on: also after the choices made on validation after training
        lines = ["| variant | val Recall@20 | val NDCG@10 | epochs (best) | co-occurrence weight | prior (w, days) "
                 "| val Recall@20 after | val NDCG@10 after |", "|---|---|---|---|---|---|---|---|"]
    for name, r in out.get(key, {}).items():
        extra = (f" {r['cooccurrence_weight']:g} | {r['prior'][0]:g}, {r['prior'][1]} | "
                 f"{r['val_recall@20_after_choices']:.4f} | {r['val_ndcg@10_after_choices']:.4f} |"
                 ) if "val_ndcg@10_after_choices" in r else (" - | - | - | - |" if after else "")
        lines.append(f"| {name} | {r['val_recall@20']:.4f} | {r['val_ndcg@10']:.4f} | "
                     f"{r['epochs_trained']} ({r['best_epoch']}) |{extra}")
    ref, dae = out.get("ease_validation"), out.get("dae_validation")
    if ref:
        lines.append(f"| EASE l2=500 (reference) | {ref['val_recall@20']:.4f} | {ref['val_ndcg@10']:.4f} | - |")
    if dae:
        lines.append(f"| Mult-DAE {dae['dim']}, dropout {dae['dropout']} (reference) | {dae['val_recall@20']:.4f} | "
                     f"{dae['val_ndcg@10']:.4f} | {dae['epochs']} ({dae['best_epoch']}) |")
    return "\n".join(lines)


METRICS = ("ndcg@10", "recall@10", "mrr@10", "hit_rate@10", "precision@10")


def _test_run(flags):
    """One `tfrec run` of `flags` under the protocol, on test: (result, its JSON row)."""
    from tfrec.cli.run import run

    tmp = tempfile.mkdtemp(prefix="tfrec-recbole-general-")
    t0 = time.perf_counter()
    res = run(_config(flags, tmp, protocol=True), log=lambda *a: None)
    model = res.metrics["models"]["tfrec hybrid"]
    return res, {"command": "tfrec run --eval.protocol=recbole_general " + " ".join(
                     COMMON + [f for f in flags if f != PROFILE]),
                 "config": {**res.metrics["config"], "run_root": "<a temporary folder>"},
                 "seconds": round(time.perf_counter() - t0, 1),
                 "mean": {m: model["mean"][m] for m in METRICS}, "ci95": {m: model["ci95"].get(m) for m in METRICS}}


def test(name):
    flags = VARIANTS[name]
    if PROFILE not in flags:
        raise SystemExit(f"{name}: only profile-query variants run under the recbole_general protocol.")
    res, row = _test_run(flags)
    out = _load()
    out["selection"] = (f"{name}: the highest validation NDCG@10 in the table (the headline metric); "
                        "test was run once, for it only")
    out["ease_validation"] = ease_validation(res.split, res.catalogue)
    out["table"] = _table(out)
    out["test"] = {"variant": name, **row}
    _save(out)
    print(json.dumps({k: out["test"][k] for k in ("variant", "mean", "ci95")}, indent=1))


def test_seeds(name, seeds, key):
    """The chosen variant again on test with other training seeds (`--train.seed`): how much
    of its test number is the training draw. Nothing is chosen on these rows; `test` (the
    variant's own run, seed 42) is left as it is. Rows go to `key`, with the mean over them
    and the `test` row when it is the same variant."""
    flags = VARIANTS[name]
    if PROFILE not in flags or any(f.startswith("--train.seed=") for f in flags):
        raise SystemExit(f"{name}: --seeds needs a profile-query variant without its own --train.seed.")
    rows = {}
    for s in seeds:
        _, rows[str(s)] = _test_run([*flags, f"--train.seed={s}"])
        print(f"seed {s}: " + ", ".join(f"{m} {rows[str(s)]['mean'][m]:.4f}" for m in METRICS), flush=True)
    out = _load()
    draws = [r["mean"] for r in rows.values()]
    base = out.get("test", {})
    if base.get("variant") == name and "--train.seed" not in base.get("command", "") and 42 not in seeds:
        draws.append(base["mean"])  # (seed 42 run again here: the new run counts, not the earlier one)
    out[key] = {"variant": name, "seeds": rows,
                "mean_over_draws": {m: sum(d[m] for d in draws) / len(draws) for m in METRICS},
                "draws_in_mean": len(draws),
                "note": "the chosen variant on other training seeds; the mean counts these and the `test` row "
                        "(seed 42) when it is the same variant and seed 42 is not among these; nothing was chosen "
                        "on them"}
    _save(out)
    print(json.dumps({k: out[key][k] for k in ("variant", "mean_over_draws", "draws_in_mean")}, indent=1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=("validate", "test", "references"))
    ap.add_argument("variants", nargs="*", default=[])
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="test: run the variant on these training seeds instead (rows under --seeds-key)")
    ap.add_argument("--seeds-key", default="test_seeds")
    ap.add_argument("--table", default=TABLE,
                    help=f"validate: the JSON key the rows go to (default {TABLE}; session 14 reran session 12's "
                         "rows under validation_session14, every model on the batch order a fresh process gives)")
    args = ap.parse_args()
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if args.stage == "references":
        references()
    elif args.stage == "validate":
        validate(args.variants or list(VARIANTS), args.table)
    else:
        if len(args.variants) != 1:
            sys.exit("`test` takes exactly one variant (the one chosen on validation)")
        if args.seeds:
            test_seeds(args.variants[0], args.seeds, args.seeds_key)
        else:
            test(args.variants[0])


if __name__ == "__main__":
    main()
