"""Validation only: the hybrid's scores + w x EASE's, with B at full rank or factorised (rank r).

How the co-occurrence block (`model.cooccurrence`, `tfrec.models.cooccurrence`) was sized.
For each protocol and seed the retriever is trained as `tfrec run` trains it (with its
popularity prior chosen on validation, the co-occurrence block off), then its validation
score matrix gets w x (x_u B) added, B the EASE weights fitted on the training part (l2 in
{250, 500}) and, for rank r > 0, replaced by its best rank-r approximation (truncated SVD),
x_u the user's 0/1 train items. NDCG@10 and Recall@20 on the validation split (the
protocol's exclusions); w = "ease" is EASE alone. The test split is not read.

    .venv/bin/python bench/cooccurrence_rank.py recbole_general 42 1   # ~3 min per seed on 2 cores
    .venv/bin/python bench/cooccurrence_rank.py temporal 42
    .venv/bin/python bench/cooccurrence_rank.py --choice temporal 1 2  # the weight `tfrec run` chooses (default config)

Rows merge into bench/results/cooccurrence_rank_ml100k.json under "<protocol> seed <s>"
(`runs`; `choices` for --choice: the retriever trained with the default config, the block's
weight chosen jointly with the popularity prior, every trial).
"""
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)
from bench._common import machine_info, write_json  # noqa: E402

OUT = ROOT / "bench" / "results" / "cooccurrence_rank_ml100k.json"
FLAGS = {"temporal": [],
         "recbole_general": ["--eval.protocol=recbole_general", "--data.history_length=200",
                             "--model.temperature=0.2", "--train.batch_size=4096"]}


def run(protocol, seed):
    from tfrec.cli.retrieval_stage import early_stopping_parts, retrieval_validation, train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.evaluation.baselines.ease import ease_weights
    from tfrec.models.cooccurrence import factorise

    cfg = load_config(None, ["--train.verbose=0", "--eval.baselines=", "--export.enabled=false",
                             "--ranking.enabled=false", "--model.cooccurrence=0", f"--train.seed={seed}",
                             *FLAGS[protocol]])
    quiet = lambda *a: None  # noqa: E731
    data, _, split, catalogue = prepare(cfg, quiet)
    text, _ = encode_item_texts(cfg, data.items, quiet)
    model, history, _, qf = train_hybrid(cfg, data, split, catalogue, text, quiet)
    fit_part, val_part = early_stopping_parts(split, cfg.train.early_stopping_patience, cfg.train.seed, quiet)
    val = retrieval_validation(cfg, qf, fit_part, val_part, catalogue, quiet)
    model.set_popularity_prior(fit_part)  # the chosen prior, counting the training part (as it was chosen)
    users, items, _ = val.vectors(model)
    hybrid = users @ items.T
    x = (val.train_matrix > 0).astype(np.float64)
    dense = np.asarray(x.todense(), np.float32)
    rows = {}
    for l2 in (250.0, 500.0):
        full = ease_weights(x, l2)
        for rank in (0, 64, 128, 256):
            if rank:
                p, q = factorise(full, rank)
            b = full if rank == 0 else p @ q.T
            ease = dense @ b.astype(np.float32)
            for w in (0.0, 0.5, 1.0, 2.0, 4.0, "ease"):
                s = ease if w == "ease" else hybrid + w * ease
                res = evaluate_ranking(lambda u: s[np.asarray(u)], val.users, val.val_matrix,
                                       exclude=val.train_matrix if val.exclude_seen else None, ks=(10, 20),
                                       return_topk=False).mean()
                key = f"l2 {l2:g} rank {rank or 'full'} w {w}"
                rows[key] = {"val_ndcg@10": round(float(res["ndcg@10"]), 4),
                             "val_recall@20": round(float(res["recall@20"]), 4)}
                print(protocol, seed, key, rows[key], flush=True)
    return {"prior": {k: history.get("popularity_prior", {}).get(k) for k in ("weight", "days")}, "rows": rows}


def choice(protocol, seed):
    """The block's weight as `tfrec run` chooses it with the default config (retrieval only)."""
    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config

    cfg = load_config(None, ["--train.verbose=0", "--eval.baselines=", "--export.enabled=false",
                             "--ranking.enabled=false", f"--train.seed={seed}", *FLAGS[protocol]])
    quiet = lambda *a: None  # noqa: E731
    data, _, split, catalogue = prepare(cfg, quiet)
    text, _ = encode_item_texts(cfg, data.items, quiet)
    _, history, _, _ = train_hybrid(cfg, data, split, catalogue, text, quiet)
    prior = history.get("popularity_prior") or {}
    return {"cooccurrence": history["cooccurrence"], "popularity_prior": {k: prior.get(k) for k in ("weight", "days")}}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    mode = "choices" if argv and argv[0] == "--choice" else "runs"
    argv = argv[1:] if mode == "choices" else argv
    protocol, seeds = argv[0], [int(s) for s in argv[1:]] or [42]
    if protocol not in FLAGS:
        sys.exit(f"protocol must be one of {', '.join(FLAGS)}, got {protocol!r}")
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    for seed in seeds:
        t0 = time.time()
        row = run(protocol, seed) if mode == "runs" else choice(protocol, seed)
        out.setdefault(mode, {})[f"{protocol} seed {seed}"] = {**row, "seconds": round(time.time() - t0, 1)}
        out.update({"benchmark": "cooccurrence_rank", "what": __doc__.split("\n\n")[1].replace("\n", " "),
                    "machine": machine_info()})
        write_json(OUT, out)


if __name__ == "__main__":
    main()
