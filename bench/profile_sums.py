"""Benchmark (session 28): the history blocks' row sums, gathered against as a product.

    .venv/bin/python bench/profile_sums.py [--repeats 20]

The text profile sums one table row (a text embedding, 384 floats with MiniLM) per item of
each query's window (up to 1,000 items), as do the co-occurrence block and the lexical term
with theirs. `tfrec.models.bags.sum_rows` does it either by gathering the rows, a
[queries, window, 384] tensor, or as a [queries, catalogue rows] weight matrix times the
table; it takes the product for at least `MIN_QUERIES` queries whose window is at least
1 / `DENSE_RATIO` of the table's rows wide. This times both, forced through those two, on
ML-100K's shape (1,683 rows with the unknown one, 384 wide; random values and ids, a third of
each window padding, as the timing does not depend on them) for 256 queries (the scorer's
calls) and for 1 (a served request), at windows of 64, 256 and 1,000 items: the mean of
`--repeats` calls of a traced function after a warm-up call, and the largest difference
between the two sums. Writes bench/results/profile_sums_ml100k.json (atomic).
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

OUT = REPO / "bench" / "results" / "profile_sums_ml100k.json"


def main(argv=None):
    import tensorflow as tf

    import tfrec.models.bags as bags

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    rows_n, dim = 1683, 384
    rng = np.random.default_rng(0)
    table = tf.constant(rng.random((rows_n, dim), dtype=np.float32))
    default_ratio, default_min = bags.DENSE_RATIO, bags.MIN_QUERIES
    results = []
    for queries, window in ((256, 64), (256, 256), (256, 1000), (1, 64), (1, 1000)):
        ids = rng.integers(0, rows_n, size=(queries, window))
        ids[:, :window // 3] = rows_n - 1  # padding: the unknown row
        weights = (ids != rows_n - 1) * rng.random((queries, window))
        ids, weights = tf.constant(ids, tf.int64), tf.constant(weights, tf.float32)
        row = {"queries": queries, "window": window, "default_path": "product" if (
            window * default_ratio >= rows_n and queries >= default_min) else "gathered"}
        sums = {}
        for path, ratio, least in (("gathered", 0, default_min), ("product", 10**6, 0)):
            bags.DENSE_RATIO, bags.MIN_QUERIES = ratio, least  # read when traced: trace again for each path
            fn = tf.function(lambda r, w: bags.sum_rows(table, r, w))
            sums[path] = fn(ids, weights).numpy()
            start = time.perf_counter()
            for _ in range(args.repeats):
                fn(ids, weights)
            row[f"{path}_ms"] = round((time.perf_counter() - start) / args.repeats * 1000, 3)
        bags.DENSE_RATIO, bags.MIN_QUERIES = default_ratio, default_min
        row["max_abs_difference"] = float(np.abs(sums["gathered"] - sums["product"]).max())
        row["max_abs_sum"] = float(np.abs(sums["gathered"]).max())
        print(row, flush=True)
        results.append(row)
    write_json(args.out, {"benchmark": "history blocks' row sums: gathered vs a weight matrix times the table",
                          "table": [rows_n, dim], "dense_ratio": default_ratio,
                          "min_queries": default_min, "repeats": args.repeats,
                          "rows": results, "machine": machine_info()})


if __name__ == "__main__":
    main()
