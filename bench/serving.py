"""Benchmark: latency and throughput of exported retrieval SavedModels, brute force vs k-means.

For each catalogue size the script exports the same query tower and item embeddings
twice with `tfrec.export.retrieval.export_retrieval` (index="brute_force" and
index="kmeans"), loads both with `tf.saved_model.load` in the same process and times
the `serving_default` signature (raw user ids in, top-100 item ids out):

* latency p50 / p99 per call at batch 1 (one user per request, cycling over users)
  and batch 64; throughput = queries per second of one sequential client;
* recall@100 of k-means against brute force over up to 1,000 users;
* export time (the k-means fit included) and size on disk.

Shapes: an ML-100K-size catalogue (1,682 items, 943 users) and synthetic catalogues of
100,000 and 1,000,000 items, d = 64. Embeddings are synthetic and clustered: items and
users are drawn around the same Gaussian centres (n_items / 1000 of them, at least 10),
noise as large as the spread of the centres, the structure trained two-tower
embeddings show. The recall of an inverted-file index depends on that structure, so it
is measured here, not assumed; on embeddings without any cluster structure it is lower.

A last case exports the real MiniLM (`BertTextEncoder("minilm")`) as `encode_items`
over the ML-100K-size catalogue and reports the export size against the parameter bytes
(a first probe had saved the weights twice), plus `encode_items` latency.

Each case runs in a fresh subprocess. Targets: p50 <= 5 ms at batch 1 for the
ML-100K size; k-means >= 5x faster than brute force at 1M with recall@100 >= 0.95.

Usage (from the repository root):
    .venv/bin/python bench/serving.py                  # full run -> bench/results/serving.json
    .venv/bin/python bench/serving.py --quick          # small shapes, smoke run (~1 min)
    .venv/bin/python bench/serving.py --out /tmp/s.json --cases ml100k 1m
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from bench._common import machine_info, write_json  # noqa: E402
DEFAULT_OUT = os.path.join("bench", "results", "serving.json")
DIM = 64
K = 100

# name -> shape and index settings; `calls` = timed calls at (batch 1, batch 64).
CASES = {
    "ml100k": dict(kind="retrieval", n_items=1682, n_users=943, partitions=None, probes=None, calls=(500, 100)),
    "100k": dict(kind="retrieval", n_items=100_000, n_users=10_000, partitions=632, probes=10, calls=(300, 30)),
    "1m": dict(kind="retrieval", n_items=1_000_000, n_users=10_000, partitions=2000, probes=12, calls=(200, 15)),
    "minilm": dict(kind="minilm", n_items=1682, calls=(50, 5)),
}
QUICK_CASES = {
    "ml100k": dict(kind="retrieval", n_items=1682, n_users=943, partitions=None, probes=None, calls=(100, 20)),
    "20k": dict(kind="retrieval", n_items=20_000, n_users=2_000, partitions=141, probes=8, calls=(100, 10)),
}


# ---------------------------------------------------------------------------------
# Child process

def clustered(n_items, n_users, seed=0):
    rng = np.random.default_rng(seed)
    n_centres = max(10, n_items // 1000)
    centres = rng.normal(0.0, 1.0, (n_centres, DIM)) / np.sqrt(DIM)
    items = centres[rng.integers(0, n_centres, n_items)] + rng.normal(0.0, 1.0, (n_items, DIM)) / np.sqrt(DIM)
    users = centres[rng.integers(0, n_centres, n_users)] + rng.normal(0.0, 1.0, (n_users, DIM)) / np.sqrt(DIM)
    return items.astype(np.float32), users.astype(np.float32), n_centres


def _time_calls(fn, requests, n_calls):
    for r in requests[:3]:  # warm-up: tracing, allocation
        fn(r)
    times = []
    for i in range(n_calls):
        r = requests[i % len(requests)]
        t0 = time.perf_counter()
        fn(r)
        times.append(time.perf_counter() - t0)
    t = np.array(times) * 1e3
    return {"p50_ms": round(float(np.percentile(t, 50)), 3), "p99_ms": round(float(np.percentile(t, 99)), 3),
            "mean_ms": round(float(t.mean()), 3), "calls": n_calls}


def child_retrieval(spec, folder):
    sys.path.insert(0, REPO)
    import tfrec  # noqa: F401  (before tensorflow)
    import tensorflow as tf

    from tfrec.export.inspection import export_size
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.id_tower import IdTower

    items, users, n_centres = clustered(spec["n_items"], spec["n_users"])
    item_ids = np.array([f"item{i}" for i in range(spec["n_items"])])
    user_ids = [f"user{i}" for i in range(spec["n_users"])]
    tower = IdTower(user_ids, DIM)
    tower(tf.constant(user_ids[:1]))
    table = np.zeros((len(user_ids) + 2, DIM), np.float32)  # rows 0, 1: mask and OOV
    table[2:] = users
    tower.embedding.embeddings.assign(table)

    out = {"n_items": spec["n_items"], "n_users": spec["n_users"], "dim": DIM, "k": K, "clusters": n_centres}
    loaded = {}
    kmeans = {k: spec[k] for k in ("partitions", "probes") if spec[k]}  # None: the index's defaults
    for index, params in (("brute_force", None), ("kmeans", kmeans)):
        t0 = time.perf_counter()
        path = export_retrieval(tower, tf.TensorSpec([None], tf.string, name="user_id"), item_ids, items,
                                index=index, index_params=params, k=K, retrieve_k=K, root=folder, name=index)
        row = {"export_seconds": round(time.perf_counter() - t0, 2), "export_bytes": export_size(path)["total"]}
        if index == "kmeans":
            meta = json.load(open(os.path.join(path, "assets.extra", "tfrec_export.json")))
            row["index"] = meta["index"]
            row["scanned_fraction_mean"] = round(meta["index"]["probes"] * meta["index"]["partition_size_mean"]
                                                 / spec["n_items"], 4)
        loaded[index] = tf.saved_model.load(path).signatures["serving_default"]
        out[index] = row
        print(f"  exported {index} in {row['export_seconds']} s", file=sys.stderr, flush=True)

    rng = np.random.default_rng(1)
    b1 = [{"user_id": tf.constant([u])} for u in rng.choice(user_ids, 256)]
    b64 = [{"user_id": tf.constant(list(rng.choice(user_ids, 64)))} for _ in range(8)]
    for index, sig in loaded.items():
        def call(r, sig=sig):
            return sig(**r)["item_ids"].numpy()  # results brought home, as a server serialises them

        for batch, reqs, n in ((1, b1, spec["calls"][0]), (64, b64, spec["calls"][1])):
            res = _time_calls(call, reqs, n)
            res["queries_per_second"] = round(batch * 1e3 / res["mean_ms"], 1)
            out[index][f"batch_{batch}"] = res
            print(f"  {index} batch {batch}: p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms", file=sys.stderr,
                  flush=True)

    eval_users = user_ids[:1000]
    hits = []
    for s in range(0, len(eval_users), 64):
        u = tf.constant(eval_users[s:s + 64])
        a = loaded["brute_force"](user_id=u)["item_ids"].numpy()
        b = loaded["kmeans"](user_id=u)["item_ids"].numpy()
        hits += [len(set(x) & set(y)) / K for x, y in zip(a, b)]
    out["kmeans"]["recall_at_100_vs_brute_force"] = round(float(np.mean(hits)), 4)
    for batch in (1, 64):
        out[f"speedup_batch_{batch}_p50"] = round(out["brute_force"][f"batch_{batch}"]["p50_ms"]
                                                  / out["kmeans"][f"batch_{batch}"]["p50_ms"], 2)
    return out


def child_minilm(spec, folder):
    sys.path.insert(0, REPO)
    import tfrec  # noqa: F401
    import tensorflow as tf

    from tfrec.export.inspection import export_size
    from tfrec.export.retrieval import export_retrieval
    from tfrec.models.id_tower import IdTower
    from tfrec.text.encoder import BertTextEncoder

    encoder = BertTextEncoder("minilm", sequence_length=32)
    tower = IdTower(["u1"], encoder.output_dim)
    tower(tf.constant(["u1"]))
    rng = np.random.default_rng(0)
    n = spec["n_items"]
    item_ids = np.array([f"item{i}" for i in range(n)])
    items = rng.normal(size=(n, encoder.output_dim)).astype(np.float32)
    t0 = time.perf_counter()
    path = export_retrieval(tower, tf.TensorSpec([None], tf.string, name="user_id"), item_ids, items,
                            item_encoder=encoder, root=folder, name="minilm", k=K)
    secs = time.perf_counter() - t0
    size = export_size(path)
    bert_params = encoder.bert.inner.count_params()
    params = (bert_params + sum(int(np.prod(w.shape)) for w in tower.weights)) * 4 + items.nbytes \
        + sum(len(i) for i in item_ids)
    sig = tf.saved_model.load(path).signatures["encode_items"]
    titles = [tf.constant([t]) for t in ("Toy Story (1995)", "GoldenEye (1995)", "Four Rooms (1995)",
                                         "Get Shorty (1995)", "Copycat (1995)")]
    lat = _time_calls(lambda r: sig(item_text=r)["embedding"].numpy(), titles, spec["calls"][0])
    batch = [tf.constant(["Toy Story (1995)"] * 64)]
    lat64 = _time_calls(lambda r: sig(item_text=r)["embedding"].numpy(), batch, spec["calls"][1])
    return {"bert_parameters": int(bert_params), "parameter_bytes": int(params), "export_seconds": round(secs, 1),
            "size": size, "ratio_total_to_parameters": round(size["total"] / params, 4),
            "ratio_checkpoint_to_parameters": round(size["checkpoint_parameter_bytes"] / params, 4),
            "encode_items_batch_1": lat, "encode_items_batch_64": lat64}


# ---------------------------------------------------------------------------------
# Driver

def _run_child(name, spec):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", json.dumps(spec)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=None, text=True, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"case {name} failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def _targets(results):
    out = {}
    if "ml100k" in results:
        p50 = results["ml100k"]["brute_force"]["batch_1"]["p50_ms"]
        out["ml100k_batch_1_p50_ms <= 5"] = {"value": p50, "met": p50 <= 5.0}
    if "1m" in results:
        r = results["1m"]
        rec = r["kmeans"]["recall_at_100_vs_brute_force"]
        for b in (1, 64):
            s = r[f"speedup_batch_{b}_p50"]
            out[f"1m_kmeans_speedup_batch_{b} >= 5"] = {"value": s, "met": s >= 5.0}
        out["1m_kmeans_recall_at_100 >= 0.95"] = {"value": rec, "met": rec >= 0.95}
    if "minilm" in results:
        ratio = results["minilm"]["ratio_total_to_parameters"]
        out["minilm_export_bytes <= 1.1 x parameter bytes"] = {"value": ratio, "met": ratio <= 1.1}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for smoke runs")
    parser.add_argument("--out", default=None, help=f"JSON path (default {DEFAULT_OUT}; with --quick, nothing "
                        "is written unless --out is given)")
    parser.add_argument("--cases", nargs="*", default=None, help="subset of case names")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        spec = json.loads(args._child)
        with tempfile.TemporaryDirectory() as folder:
            fn = child_minilm if spec["kind"] == "minilm" else child_retrieval
            print("RESULT " + json.dumps(fn(spec, folder)))
        return

    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        unknown = set(args.cases) - set(cases)
        if unknown:
            parser.error(f"unknown case(s) {sorted(unknown)}; choose from {sorted(cases)}")
        cases = {n: cases[n] for n in args.cases}
    machine = machine_info(packages=("tensorflow", "tensorflow-text", "numpy"))
    results = {}
    for name, spec in cases.items():
        t0 = time.perf_counter()
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        results[name] = _run_child(name, spec)
        results[name]["case_seconds"] = round(time.perf_counter() - t0, 1)
    payload = {
        "benchmark": "bench/serving.py",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "method": "tf.saved_model.load(...).signatures['serving_default'] in-process, one sequential client; "
                  "latency per call incl. converting the outputs to numpy",
        "machine": machine,
        "load_average_after": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "targets": _targets(results),
        "cases": results,
    }
    out = args.out or (None if args.quick else os.path.join(REPO, DEFAULT_OUT))
    if out:
        write_json(out, payload)
        print(f"wrote {out}", file=sys.stderr)
    print(json.dumps({"targets": payload["targets"]}, indent=2))


if __name__ == "__main__":
    main()
