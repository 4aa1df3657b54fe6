"""Benchmark: full-catalogue evaluation cost against a bare scoring matmul + top-k.

`tfrec.evaluation.evaluate_ranking` ranks every item for every user. Its floor is the
work any top-K evaluator must do: score a chunk of users against the whole catalogue
(a [chunk, d] x [d, I] matmul) and take the top 100. This script measures both on the
same data and chunk size and reports the ratio evaluate / bare (target: <= 2):

* (a) bare: a `tf.function` doing gather + matmul + `tf.math.top_k(k=100)` per chunk,
  results copied to numpy, over all users.
* (b) `evaluate_ranking(embedding_scorer(U, I), ...)` with ks=(5, 10, 20, 50, 100),
  all metrics including full-ranking MRR and AUC, seen items excluded.

Shapes: ML-100K (real interactions from `../shared/datasets/ml-100k`, a per-user
random 80/20 split: the 20 % is relevant, the 80 % excluded), a synthetic ML-1M size
(6,040 x 3,706) and a synthetic 100,000 x 50,000. Embeddings are random (d=64): the
cost of ranking does not depend on how good the model is. Synthetic interactions
follow a Zipf-like item popularity and a log-normal number of items per user.

Every measurement runs in a fresh subprocess so that its peak RSS
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`) is its own; the data are generated once
and shared through a temporary .npz so (a) and (b) see identical inputs.

Usage (from the repository root):
    .venv/bin/python bench/evaluation.py                # full run -> bench/results/evaluation.json
    .venv/bin/python bench/evaluation.py --quick        # small shapes, smoke run
    .venv/bin/python bench/evaluation.py --out /tmp/e.json --cases ml-1m-synthetic
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
DEFAULT_OUT = os.path.join("bench", "results", "evaluation.json")
DEFAULT_ML100K = os.path.join("..", "shared", "datasets", "ml-100k")
KS = (5, 10, 20, 50, 100)
DIM = 64

# name -> synthetic shape; `max_users` evaluates only the first users (a slice),
# `repeats` keeps the best of several timings (the machine is shared).
CASES = {
    "ml-100k": dict(kind="ml-100k", repeats=5),
    "ml-1m-synthetic": dict(kind="synthetic", n_users=6040, n_items=3706, n_relevant=10,
                            n_seen=80, repeats=5),
    "100k-x-50k-synthetic": dict(kind="synthetic", n_users=100_000, n_items=50_000,
                                 n_relevant=10, n_seen=50, repeats=1),
}
QUICK_CASES = {
    "ml-100k": dict(kind="ml-100k", repeats=1),
    "small-synthetic": dict(kind="synthetic", n_users=1000, n_items=2000, n_relevant=10,
                            n_seen=50, repeats=1),
}


# ---------------------------------------------------------------------------------
# Data (parent process)

def _popularity(n_items: int, rng) -> np.ndarray:
    # Zipf with a flattened head: the most popular item gets ~1 % of interactions on
    # the ML-1M shape (0.34 % in the real ML-1M), the tail stays long.
    p = 1.0 / (np.arange(n_items) + 20.0)
    p /= p.sum()
    return p[rng.permutation(n_items)]  # popularity unrelated to the item index


def synthetic_interactions(n_users, n_items, n_relevant, n_seen, seed=0):
    """(relevant, exclude) CSR [U, I]: ~n_relevant held-out and ~n_seen seen items per user."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    mean_total = n_relevant + n_seen
    # Log-normal activity (sigma 0.6): a few heavy users, as in MovieLens.
    sigma = 0.6
    counts = rng.lognormal(np.log(mean_total) - sigma ** 2 / 2, sigma, n_users)
    counts = np.clip(np.round(counts), 5, n_items // 2).astype(np.int64)
    rows = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    items = rng.choice(n_items, size=rows.size, p=_popularity(n_items, rng))
    keys = np.unique(rows * n_items + items)  # repeated draws collapse
    rows, items = keys // n_items, keys % n_items
    # A per-user random holdout: each distinct pair is relevant with this probability.
    held = rng.random(keys.size) < n_relevant / mean_total
    shape = (n_users, n_items)

    def csr(mask):
        return sp.csr_matrix((np.ones(mask.sum(), np.float32), (rows[mask], items[mask])), shape=shape)

    return csr(held), csr(~held)


def ml100k_interactions(path, seed=0):
    """(relevant, exclude) CSR from MovieLens 100K `u.data`: a per-user random 80/20 split."""
    import scipy.sparse as sp

    data = np.loadtxt(os.path.join(path, "u.data"), dtype=np.int64, usecols=(0, 1))
    users, items = data[:, 0] - 1, data[:, 1] - 1  # ids are 1-based and dense
    shape = (int(users.max()) + 1, int(items.max()) + 1)
    held = np.random.default_rng(seed).random(users.size) < 0.2

    def csr(mask):
        return sp.csr_matrix((np.ones(mask.sum(), np.float32), (users[mask], items[mask])), shape=shape)

    return csr(held), csr(~held)


def make_case_file(name, spec, folder, ml100k_path, seed=0):
    """Writes the case's embeddings and interactions to an .npz; returns (path, info)."""
    if spec["kind"] == "ml-100k":
        relevant, exclude = ml100k_interactions(ml100k_path, seed)
    else:
        relevant, exclude = synthetic_interactions(
            spec["n_users"], spec["n_items"], spec["n_relevant"], spec["n_seen"], seed)
    n_users, n_items = relevant.shape
    rng = np.random.default_rng(seed + 1)
    # Scale 1/sqrt(d) keeps scores O(1); continuous scores make ties vanishingly rare.
    user_emb = (rng.standard_normal((n_users, DIM)) / np.sqrt(DIM)).astype(np.float32)
    item_emb = (rng.standard_normal((n_items, DIM)) / np.sqrt(DIM)).astype(np.float32)
    path = os.path.join(folder, f"{name}.npz")
    np.savez(path, user_emb=user_emb, item_emb=item_emb,
             rel_indptr=relevant.indptr, rel_indices=relevant.indices,
             ex_indptr=exclude.indptr, ex_indices=exclude.indices,
             shape=np.array([n_users, n_items]))
    rel_per_user = np.diff(relevant.indptr)
    info = {
        "n_users": int(n_users),
        "n_items": int(n_items),
        "dim": DIM,
        "relevant_per_user_mean": round(float(rel_per_user.mean()), 2),
        "relevant_per_user_max": int(rel_per_user.max()),
        "excluded_per_user_mean": round(float(np.diff(exclude.indptr).mean()), 2),
        "relevant_also_excluded": 0,  # disjoint by construction (a holdout split)
    }
    return path, info


# ---------------------------------------------------------------------------------
# Measurements (child process)

def _rss_mib():
    try:  # Linux; elsewhere only the peak is reported
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except (OSError, ValueError):
        return None


def _peak_rss_mib():
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 2 ** 10  # bytes vs KiB


def child(mode, data_path, chunk_size, max_users, repeats):
    """Times `bare` and/or `evaluate` in this fresh process and prints one RESULT line.

    `paired` alternates bare and evaluate runs (best of `repeats` each): on a shared
    machine, load drifts over seconds, so the ratio is taken from adjacent runs. `bare`
    and `evaluate` alone measure one process's peak RSS.
    """
    sys.path.insert(0, REPO)
    import tfrec  # noqa: F401  (must precede tensorflow: sets TF_USE_LEGACY_KERAS)
    import scipy.sparse as sp
    import tensorflow as tf

    from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking

    z = np.load(data_path)
    shape = tuple(int(s) for s in z["shape"])
    ones = lambda idx: np.ones(idx.size, np.float32)  # noqa: E731
    relevant = sp.csr_matrix((ones(z["rel_indices"]), z["rel_indices"], z["rel_indptr"]), shape=shape)
    exclude = sp.csr_matrix((ones(z["ex_indices"]), z["ex_indices"], z["ex_indptr"]), shape=shape)
    user_emb, item_emb = z["user_emb"], z["item_emb"]
    users = np.arange(min(shape[0], max_users or shape[0]))
    k = min(max(KS), shape[1])

    user_t = tf.constant(user_emb)
    item_t = tf.constant(item_emb)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
    def score_topk(idx):
        scores = tf.matmul(tf.gather(user_t, idx), item_t, transpose_b=True)  # (b, I)
        return tf.math.top_k(scores, k=k)

    def bare(rows):
        out = []
        for start in range(0, rows.size, chunk_size):
            values, indices = score_topk(tf.constant(rows[start:start + chunk_size], tf.int32))
            out.append((values.numpy(), indices.numpy()))  # evaluate also brings results home
        return out

    score_fn = embedding_scorer(user_emb, item_emb)

    def evaluate(rows):
        return evaluate_ranking(score_fn, rows, relevant, exclude, ks=KS,
                                chunk_size=chunk_size, return_topk=True)

    runners = {"bare": bare, "evaluate": evaluate}
    # The first chunk as `evaluate_ranking` will form it (users with a relevant item),
    # so the warm-up compiles exactly the shapes of the timed runs.
    warm_users = users[np.diff(relevant.indptr)[users] > 0][:chunk_size]
    names = ["bare", "evaluate"] if mode == "paired" else [mode]
    out = {"n_users": int(users.size)}
    for name in names:
        # Warm-up on one full chunk: tf.function tracing and XLA compilation happen
        # once per shape and process, so they are reported apart from steady state.
        t0 = time.perf_counter()
        runners[name](warm_users)
        out[f"{name}_first_chunk_cold_seconds"] = time.perf_counter() - t0
    out["rss_before_mib"] = _rss_mib()
    times = {name: [] for name in names}
    for _ in range(repeats):
        for name in names:
            t0 = time.perf_counter()
            result = runners[name](users)
            times[name].append(time.perf_counter() - t0)
    for name in names:
        out[f"{name}_seconds"] = min(times[name])
        out[f"{name}_seconds_all"] = [round(t, 3) for t in times[name]]
    out["peak_rss_mib"] = _peak_rss_mib()
    if "evaluate" in names:
        means = result.mean()
        out["ndcg@10"] = means["ndcg@10"]
        out["auc"] = means["auc"]  # ~0.5 for random embeddings: a sanity check
        out["n_evaluated"] = int(result.users.size)
    print("RESULT " + json.dumps(out))


def _run_child(mode, data_path, args, max_users, repeats):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", mode, "--_data", data_path,
           "--chunk-size", str(args.chunk_size), "--_max-users", str(max_users or 0),
           "--_repeats", str(repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{mode} run failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---------------------------------------------------------------------------------
# Driver

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for smoke runs")
    parser.add_argument("--out", default=None, help=f"JSON path (default {DEFAULT_OUT}; "
                        "with --quick, nothing is written unless --out is given)")
    parser.add_argument("--cases", nargs="*", default=None, help="subset of case names")
    parser.add_argument("--chunk-size", type=int, default=1024, help="users per chunk, both runs")
    parser.add_argument("--max-users", type=int, default=0,
                        help="evaluate only the first N users of each case (0 = all)")
    parser.add_argument("--ml100k", default=DEFAULT_ML100K,
                        help="MovieLens 100K folder (relative paths: from the repository root)")
    parser.add_argument("--_child", choices=["paired", "bare", "evaluate"], help=argparse.SUPPRESS)
    parser.add_argument("--_data", help=argparse.SUPPRESS)
    parser.add_argument("--_max-users", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--_repeats", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args._child:
        child(args._child, args._data, args.chunk_size, args._max_users, args._repeats)
        return

    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        unknown = set(args.cases) - set(cases)
        if unknown:
            parser.error(f"unknown case(s) {sorted(unknown)}; choose from {sorted(cases)}")
        cases = {n: cases[n] for n in args.cases}
    ml100k = os.path.join(REPO, args.ml100k)
    if "ml-100k" in cases and not os.path.exists(os.path.join(ml100k, "u.data")):
        print(f"skipping ml-100k: no u.data under {args.ml100k} (pass --ml100k)", file=sys.stderr)
        cases = {n: s for n, s in cases.items() if n != "ml-100k"}

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, spec in cases.items():
            t0 = time.perf_counter()
            data_path, info = make_case_file(name, spec, folder, ml100k)
            max_users = args.max_users or spec.get("max_users") or 0
            repeats = spec["repeats"]
            print(f"[{name}] {info['n_users']} x {info['n_items']} data in "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
            timing = _run_child("paired", data_path, args, max_users, repeats)
            ratio = timing["evaluate_seconds"] / timing["bare_seconds"]
            print(f"[{name}] bare {timing['bare_seconds']:.2f}s evaluate "
                  f"{timing['evaluate_seconds']:.2f}s ratio {ratio:.2f}", file=sys.stderr, flush=True)
            # Peak memory: each alone in a fresh process, one run after the warm-up.
            bare = _run_child("bare", data_path, args, max_users, 1)
            ev = _run_child("evaluate", data_path, args, max_users, 1)
            print(f"[{name}] peak RSS bare {bare['peak_rss_mib']:.0f} MiB, evaluate "
                  f"{ev['peak_rss_mib']:.0f} MiB", file=sys.stderr, flush=True)
            n_measured = timing["n_users"]
            row = dict(info)
            row.update({
                "n_users_measured": n_measured,
                "full_run": n_measured == info["n_users"],
                "chunk_size": args.chunk_size,
                "repeats": repeats,
                "bare_seconds": round(timing["bare_seconds"], 4),
                "evaluate_seconds": round(timing["evaluate_seconds"], 4),
                "ratio_evaluate_over_bare": round(ratio, 3),
                "bare_seconds_all": timing["bare_seconds_all"],
                "evaluate_seconds_all": timing["evaluate_seconds_all"],
                "bare_first_chunk_cold_seconds": round(timing["bare_first_chunk_cold_seconds"], 3),
                "evaluate_first_chunk_cold_seconds": round(timing["evaluate_first_chunk_cold_seconds"], 3),
                "bare_alone_seconds": round(bare["bare_seconds"], 4),
                "evaluate_alone_seconds": round(ev["evaluate_seconds"], 4),
                "bare_peak_rss_mib": round(bare["peak_rss_mib"], 1),
                "evaluate_peak_rss_mib": round(ev["peak_rss_mib"], 1),
                "bare_rss_before_run_mib": _round(bare["rss_before_mib"]),
                "evaluate_rss_before_run_mib": _round(ev["rss_before_mib"]),
                "evaluate_users_evaluated": ev["n_evaluated"],
                "evaluate_ndcg@10": round(ev["ndcg@10"], 5),
                "evaluate_auc": round(ev["auc"], 5),
            })
            if not row["full_run"]:
                scale = info["n_users"] / n_measured
                row["extrapolated_full_bare_seconds"] = round(timing["bare_seconds"] * scale, 1)
                row["extrapolated_full_evaluate_seconds"] = round(timing["evaluate_seconds"] * scale, 1)
                row["extrapolation_note"] = ("EXTRAPOLATED linearly in users from the measured "
                                             "slice; not measured")
            results[name] = row

    payload = {
        "benchmark": "bench/evaluation.py",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": bool(args.quick),
        "ks": list(KS),
        "target": "evaluate_seconds <= 2 x bare_seconds (bare = matmul + top_k(k=100) per chunk)",
        "machine": machine_info(packages=("tensorflow", "numpy")),
        "cases": results,
    }
    out = args.out or (None if args.quick else os.path.join(REPO, DEFAULT_OUT))
    if out:
        write_json(out, payload)
        print(f"wrote {out}", file=sys.stderr)
    print(json.dumps(results, indent=2))


def _round(x):
    return None if x is None else round(x, 1)


if __name__ == "__main__":
    main()
