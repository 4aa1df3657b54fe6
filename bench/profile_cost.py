"""Benchmark (session 27): what the text profile's block costs a served retrieval model.

    .venv/bin/python bench/profile_cost.py [--calls 300]

`--model.text_profile` (and its lexical term) add columns to both retrieval vectors: the text
embedding's (384 with MiniLM; since session 28 its 64 principal directions by default,
`--model.text_profile_dim`) and one per kept word (`--model.text_profile_lexical_terms`).
They were off by default for that size until session 29 (on since: 64 directions, 1,024 words).
This measures it on ML-100K: one hybrid trained for one
epoch on the `cold_items` split (MiniLM, cached text; the cost does not depend on how well it is
trained), then for each setting the retrieval vectors' width, the item matrix's bytes, the
exported SavedModel's size on disk (brute-force index, no item encoder), and the latency of its
`serving_default` signature (top-100 ids) at batch 1: p50 / p99 over `--calls` calls after 20
warm-up calls, cycling over the 200 users with the most known items, each sent with their whole
known history (the profile reads up to 1,000 items). Every setting is exported from the same
trained model and timed in the same process, in turn. Writes
bench/results/profile_cost_ml100k.json (atomic).
"""
import argparse
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = REPO / "bench" / "results" / "profile_cost_ml100k.json"
# name -> (text profile weight, lexical weight, lexical terms, text dimensions); None: no profile. The text part in
# every dimension (0) as before session 28, and in the default 64 principal directions (`model.text_profile_dim`).
# "no text profile (default)": the key as recorded; the default until session 29
SETTINGS = {"no text profile (default)": None, "text profile": (0.5, 0.0, 0, 0),
            "+ lexical term, every word": (0.5, 0.5, 0, 0), "+ lexical term, 1,024 words": (0.5, 0.5, 1024, 0),
            "+ lexical term, 256 words": (0.5, 0.5, 256, 0), "text profile, 64 directions": (0.5, 0.0, 0, 64),
            "+ lexical term, 1,024 words, 64 directions": (0.5, 0.5, 1024, 64)}


def _size(path):
    return sum(p.stat().st_size for p in pathlib.Path(path).rglob("*") if p.is_file())


def main(argv=None):
    import tensorflow as tf

    from cold_start import VARIANTS, train_cold_model
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.scoring import HybridScorer
    from tfrec.models.serving import hybrid_serving_parts
    from tfrec.models.text_profile import catalogue_texts

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    start = time.time()
    _, data, split, catalogue, scorer, _, _ = train_cold_model([*VARIANTS["default"], "--train.seed=42"], 1, False)
    model, qf, known = scorer.model, scorer.query_features, scorer.context
    ids = list(catalogue.item_ids)
    users = known["user_id"].astype(str).value_counts().index[:200].tolist()
    ts = int(known["timestamp"].max()) + 1
    ordered = known.sort_values("timestamp", kind="mergesort")
    requests = []
    for user in users:
        hist = ordered.loc[ordered["user_id"].astype(str) == user, "item_id"].astype(str).tolist()[-1000:]
        req = {"user_id": tf.constant([user]), "timestamp": tf.constant([ts], tf.int64), "history": tf.constant([hist])}
        req.update({k: tf.constant(v) for k, v in qf.attributes([user]).items()})
        requests.append(req)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, setting in SETTINGS.items():
            if setting is None:
                model.set_text_profile(0.0)
            else:
                w, v, terms, dim = setting
                model.set_text_profile(w, lexical=v, lexical_terms=terms, dim=dim,
                                       item_texts=catalogue_texts(model.lookup, data.items) if v else None)
            emb = HybridScorer(model, qf, known, ids).item_embeddings
            query_model, spec, _, _ = hybrid_serving_parts(model, qf)
            t0 = time.perf_counter()
            path = export_retrieval(query_model, spec, ids, emb, root=tmp, name=f"s{len(rows)}", k=100, warmup=False)
            export_s = time.perf_counter() - t0
            serve = tf.saved_model.load(path).signatures["serving_default"]
            spec_names = set(serve.structured_input_signature[1])
            calls = [{k: v for k, v in r.items() if k in spec_names} for r in requests]
            for r in calls[:20]:
                serve(**r)
            times = []
            for i in range(args.calls):
                t = time.perf_counter()
                serve(**calls[i % len(calls)])
                times.append((time.perf_counter() - t) * 1000)
            rows[name] = {"width": int(emb.shape[1]), "item_matrix_mb": round(emb.nbytes / 2**20, 2),
                          "lexical_columns": int(model.text_profile.lexical.dim) if setting and setting[1] else 0,
                          "savedmodel_mb": round(_size(path) / 2**20, 2), "export_seconds": round(export_s, 1),
                          "p50_ms": round(float(np.percentile(times, 50)), 2),
                          "p99_ms": round(float(np.percentile(times, 99)), 2)}
            print(f"{name}: {rows[name]}", flush=True)
    model.set_text_profile(0.0)
    write_json(args.out, {"benchmark": "text profile block: width, size and batch-1 latency of the served model",
                          "catalogue_items": len(ids), "users_cycled": len(users), "calls": args.calls,
                          "settings": {k: list(v) if v else None for k, v in SETTINGS.items()}, "rows": rows,
                          "seconds": round(time.time() - start, 1), "machine": machine_info()})


if __name__ == "__main__":
    main()
