"""Benchmark: does the streaming path (`tfrec.data.streaming`) run in bounded memory?

Each case runs in a fresh subprocess, so its peak RSS (VmHWM) is its own:
  memory_<n>     n synthetic interactions over a FIXED catalogue (200k users, 100k
                 items) streamed from a chunk generator to 16 TFRecord shards under
                 /tmp, one `count_ids` pass (vocabularies + popularity), then
                 `fit_from_shards` for a fixed number of steps; peak RSS after each
                 phase. Run for 1M and 10M: the target is a flat peak (ratio ~1),
                 since memory should grow with distinct ids, not with interactions.
  catalogue_1m   training the id two-tower model to a fixed number of steps on a
                 catalogue of ~1M items (3M interactions, Zipf exponent 0.3 so most
                 items appear): steps/s, examples/s, peak RSS, item embedding table
                 size; with Adam (the `tfrec run` default) and with Adagrad.
Shards are written under a temporary folder in /tmp and deleted afterwards.

Usage (from the repository root):
    .venv/bin/python bench/scale_streaming.py            # full run (~6-10 min on 2 busy cores)
    .venv/bin/python bench/scale_streaming.py --quick    # smoke run, small sizes, writes nothing unless --out
    .venv/bin/python bench/scale_streaming.py --cases catalogue --out /tmp/cat.json   # a subset
    .venv/bin/python bench/scale.py --part streaming     # the full run through bench/scale.py
"""
import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from data_pipeline import RESULT  # noqa: E402
from bench._common import machine_info, write_json  # noqa: E402  (shared bench helpers)

REPO = pathlib.Path(__file__).resolve().parents[1]
OUT = "bench/results/scale_streaming.json"
BATCH = 1024
LEARNING_RATES = {"adam": 0.003, "adagrad": 0.05}  # `tfrec run`'s default; the trainer's Adagrad default
CHUNK = 250_000  # rows per generated chunk, the same at every size: the writer holds one chunk
FULL = {"sizes": [1_000_000, 10_000_000], "users": 200_000, "items": 100_000, "memory_steps": 100,
        "catalogue_items": 1_000_000, "catalogue_users": 200_000, "catalogue_interactions": 3_000_000,
        "catalogue_steps": 200, "shards": 16}
QUICK = {"sizes": [20_000, 200_000], "users": 2_000, "items": 1_000, "memory_steps": 20,
         "catalogue_items": 20_000, "catalogue_users": 2_000, "catalogue_interactions": 60_000,
         "catalogue_steps": 20, "shards": 4}


def _status_mib(key: str) -> float:
    """VmHWM (peak) or VmRSS (current) of this process, in MiB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"{key} not in /proc/self/status")


def _config(kind_args, optimizer="adam", learning_rate=0.003):
    from tfrec.config import RunConfig

    cfg = RunConfig()
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kind="two_tower", **kind_args),
                               train=dataclasses.replace(cfg.train, batch_size=BATCH, optimizer=optimizer,
                                                         learning_rate=learning_rate, strategy="mirrored",
                                                         verbose=0))


def _write(tmp, n_users, n_items, n_rows, shards, exponent=1.0):
    from tfrec.data.synthetic import iter_interaction_chunks
    from tfrec.data.tfrecord import write_shards

    start = time.perf_counter()
    chunks = iter_interaction_chunks(n_users, n_items, n_rows, popularity_exponent=exponent, seed=0,
                                     chunk_size=CHUNK)
    paths = write_shards(chunks, os.path.join(tmp, "ia"), n_shards=shards)
    return os.path.join(tmp, "ia-*.tfrecord"), {
        "write_seconds": round(time.perf_counter() - start, 1),
        "bytes_on_disk": sum(os.path.getsize(p) for p in paths)}


def _train(pattern, counts, cfg, steps):
    from tfrec.data.streaming import fit_from_shards

    lines = []
    fit = fit_from_shards(pattern, config=cfg, steps=steps, counts=counts, log_every=max(steps // 4, 1),
                          log=lines.append)
    # Steady rate: the steps after the first quarter (tracing and lookup-table build excluded).
    timed = [ln for ln in lines if ln.startswith("train: step")]
    last_rate = int(timed[-1].split(", ")[2].split()[0].replace(",", "")) if timed else None
    return fit, {"steps": fit.steps, "fit_seconds": round(fit.seconds, 2),
                 "steps_per_s_overall": round(fit.steps / fit.seconds, 2),
                 "examples_per_s_overall": round(fit.steps * BATCH / fit.seconds),
                 "examples_per_s_last_quarter": last_rate,
                 "steps_per_s_last_quarter": round(last_rate / BATCH, 2) if last_rate else None,
                 "loss_first_10": round(sum(fit.step_losses[:10]) / 10, 1),
                 "loss_last_10": round(sum(fit.step_losses[-10:]) / 10, 1), "progress": lines}


def case_memory(params, n_rows):
    import tfrec  # noqa: F401  (before TensorFlow)
    import tensorflow as tf

    from tfrec.data.streaming import count_ids

    base = _status_mib("VmHWM")
    tmp = tempfile.mkdtemp(prefix="tfrec-scale-stream-", dir="/tmp")
    try:
        pattern, info = _write(tmp, params["users"], params["items"], n_rows, params["shards"])
        after_write = _status_mib("VmHWM")
        start = time.perf_counter()
        counts = count_ids(pattern)
        count_s = time.perf_counter() - start
        after_count = _status_mib("VmHWM")
        _, train = _train(pattern, counts, _config({"embedding_dim": 64}), params["memory_steps"])
        peak = _status_mib("VmHWM")
        return {"interactions": n_rows, "users_in_vocab": len(counts.user_vocab),
                "items_in_vocab": len(counts.item_vocab), "shards": params["shards"], "chunk_rows": CHUNK, **info,
                "count_seconds": round(count_s, 1), "count_rows_per_s": round(n_rows / count_s),
                "train": train, "rss_after_import_mib": round(base, 1),
                "peak_rss_after_write_mib": round(after_write, 1),
                "peak_rss_after_count_mib": round(after_count, 1), "peak_rss_mib": round(peak, 1),
                "peak_above_import_mib": round(peak - base, 1), "tf_version": tf.__version__}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def case_catalogue(params, optimizer):
    import tfrec  # noqa: F401
    from tfrec.data.streaming import count_ids

    base = _status_mib("VmHWM")
    tmp = tempfile.mkdtemp(prefix="tfrec-scale-cat-", dir="/tmp")
    try:
        pattern, info = _write(tmp, params["catalogue_users"], params["catalogue_items"],
                               params["catalogue_interactions"], params["shards"], exponent=0.3)
        start = time.perf_counter()
        counts = count_ids(pattern)
        count_s = time.perf_counter() - start
        dim = 64
        lr = LEARNING_RATES[optimizer]
        fit, train = _train(pattern, counts, _config({"embedding_dim": dim}, optimizer, lr), params["catalogue_steps"])
        table = fit.model.candidate_tower.embedding.embeddings
        return {"optimizer": optimizer, "learning_rate": lr, "interactions": params["catalogue_interactions"],
                "catalogue_items": params["catalogue_items"], "items_in_vocab": len(counts.item_vocab),
                "users_in_vocab": len(counts.user_vocab), "embedding_dim": dim,
                "item_table_shape": [int(d) for d in table.shape],
                "item_table_mib": round(int(table.shape[0]) * int(table.shape[1]) * 4 / 2**20, 1), **info,
                "count_seconds": round(count_s, 1), "train": train, "rss_after_import_mib": round(base, 1),
                "peak_rss_mib": round(_status_mib("VmHWM"), 1)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_case(name, params):
    if name.startswith("memory_"):
        return case_memory(params, int(name.split("_")[1]))
    if name.startswith("catalogue_"):
        return case_catalogue(params, name.split("_")[1])
    raise SystemExit(f"unknown case {name!r}")


def _spawn(name, params):
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--case", name, "--params", json.dumps(params)]
    print(f"[bench] {name} ...", flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT)), None)
    if proc.returncode != 0 or line is None:
        tail = "\n".join((proc.stderr or proc.stdout).splitlines()[-25:])
        raise RuntimeError(f"case {name} failed (exit {proc.returncode}):\n{tail}")
    res = json.loads(line[len(RESULT):])
    res["process_wall_seconds"] = round(time.perf_counter() - start, 1)
    print(f"[bench] {name}: peak RSS {res['peak_rss_mib']} MiB, {res['process_wall_seconds']} s", flush=True)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    ap.add_argument("--out", default=None,
                    help=f"JSON result path (default {OUT}; --quick and --cases write none unless given --out)")
    ap.add_argument("--cases", default=None, help="comma-separated subset: memory,catalogue")
    ap.add_argument("--case", help=argparse.SUPPRESS)  # internal: run one case in this process
    ap.add_argument("--params", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(RESULT + json.dumps(run_case(args.case, json.loads(args.params))), flush=True)
        return None
    params = QUICK if args.quick else FULL
    parts = set((args.cases or "memory,catalogue").split(","))
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    cases = {}
    if "memory" in parts:
        for n in params["sizes"]:
            cases[f"memory_{n}"] = _spawn(f"memory_{n}", params)
    if "catalogue" in parts:
        for opt in ("adam", "adagrad"):
            cases[f"catalogue_{opt}"] = _spawn(f"catalogue_{opt}", params)
    result = {"benchmark": "scale_streaming", "timestamp": started.isoformat(timespec="seconds"),
              "quick": bool(args.quick), "machine": machine,
              "config": {**params, "batch_size": BATCH, "chunk_rows": CHUNK, "model": "two_tower (ids), dim 64"},
              "cases": cases, "summary": _summary(cases, params),
              "notes": [
                  "Peak RSS is VmHWM of a fresh subprocess per case (TensorFlow import included; "
                  "rss_after_import_mib is the baseline).",
                  "memory_* cases keep the catalogue fixed so that only the number of interactions changes; "
                  "the vocabulary pass holds O(distinct ids), the writer one chunk, the trainer one shuffle buffer.",
                  "CPU-only machine with 2 cores shared with other jobs: times and rates are noisy.",
                  "steps_per_s / examples_per_s divide all steps by fit_seconds, which includes building the "
                  "model (lookup tables over the vocabularies), tracing and filling the shuffle buffer; "
                  "steady_* are the last quarter of the steps.",
                  "Losses are the TFRS sum over a batch of 1,024. They barely move in these short runs: 100-200 "
                  "steps show each of the 200k users about once, so query embeddings are still random; the "
                  "runs measure memory and speed, tests/data/test_streaming.py checks that training learns.",
                  "tf.keras Adam's sparse update still rewrites both slot tables and the embedding table in "
                  "full every step (m and v are decayed densely), so its step time grows with the catalogue; "
                  "Adagrad's sparse update touches only the batch's rows.",
              ],
              "wall_seconds": round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds(), 1)}
    # A smoke run or a subset never replaces the full result file by default.
    out = args.out or (None if args.quick or args.cases else OUT)
    if out:
        out = pathlib.Path(out)
        out = out if out.is_absolute() else REPO / out
        write_json(out, result)
        print(f"[bench] wrote {out}")
    print(json.dumps(result["summary"], indent=2))
    return result


def _summary(cases, params):
    s = {}
    small, large = (f"memory_{n}" for n in params["sizes"])
    if small in cases and large in cases:
        a, b = cases[small]["peak_rss_mib"], cases[large]["peak_rss_mib"]
        s["peak_rss_mib"] = {small: a, large: b}
        s["peak_rss_ratio_large_to_small"] = round(b / a, 3)
        s["peak_above_import_ratio"] = round(cases[large]["peak_above_import_mib"]
                                             / cases[small]["peak_above_import_mib"], 3)
        s["target"] = "flat peak RSS (ratio close to 1) for 10x the interactions"
        s["meets_target"] = bool(b / a < 1.15)
        s["write_seconds"] = {small: cases[small]["write_seconds"], large: cases[large]["write_seconds"]}
        s["count_seconds"] = {small: cases[small]["count_seconds"], large: cases[large]["count_seconds"]}
    for opt in ("adam", "adagrad"):
        c = cases.get(f"catalogue_{opt}")
        if c:
            s[f"catalogue_{opt}"] = {"items_in_vocab": c["items_in_vocab"], "item_table_mib": c["item_table_mib"],
                                     "steps_per_s": c["train"]["steps_per_s_overall"],
                                     "examples_per_s": c["train"]["examples_per_s_overall"],
                                     "steady_steps_per_s": c["train"]["steps_per_s_last_quarter"],
                                     "steady_examples_per_s": c["train"]["examples_per_s_last_quarter"],
                                     "peak_rss_mib": c["peak_rss_mib"]}
    return s


if __name__ == "__main__":
    main()
