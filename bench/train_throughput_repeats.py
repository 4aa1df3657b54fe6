"""Runs bench/train_throughput.py several times in a row (a fresh process each) and writes
their headline numbers into its results JSON as `repeat_runs_<label>`, beside the
variants of the run already there (left as they are).

The hybrid-to-tutorial ratio moves by about ±0.1 from run to run on 2 shared cores
(bench/README, session 22), more than one run can settle near the 1.5x target; this
records the spread. Session 22's `repeat_runs_session22` was assembled with `summary` from
three runs of the same command made by hand before this script existed.

    .venv/bin/python bench/train_throughput_repeats.py --runs 3 --label session23
    .venv/bin/python bench/train_throughput_repeats.py --runs 2 --quick --out /tmp/t.json   # smoke run
"""
import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import write_json  # noqa: E402

OUT = REPO / "bench" / "results" / "train_throughput.json"


def summary(result: dict) -> dict:
    """One run's headline numbers (from a train_throughput.py JSON)."""
    v = result["variants"]
    best = {k: v[k]["seconds_per_epoch"] for k in v}
    return {"timestamp": result["timestamp"], "load_average_at_start": result["machine"]["load_average_at_start"],
            "platform": result["machine"]["platform"], "quick": result["quick"], "seconds_per_epoch": best,
            "hybrid_full_x_tutorial": round(best["hybrid_full"] / best["tutorial"], 3),
            "hybrid_full_x_tutorial_same_loop": round(best["hybrid_full"] / best["tutorial_same_loop"], 3)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--label", required=True, help="the block is stored as repeat_runs_<label>")
    ap.add_argument("--quick", action="store_true", help="pass --quick to each run")
    ap.add_argument("--out", default=str(OUT), help="the results JSON to add the block to (must exist)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    if not out.exists():
        sys.exit(f"{out} does not exist: run bench/train_throughput.py --out {out} first.")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            path = pathlib.Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, str(REPO / "bench" / "train_throughput.py"), "--out", str(path)]
            subprocess.run(cmd + (["--quick"] if args.quick else []), check=True, stdout=subprocess.DEVNULL)
            runs.append(summary(json.loads(path.read_text())))
            ratio = runs[-1]["hybrid_full_x_tutorial"]
            print(f"run {i + 1}/{args.runs}: hybrid_full {ratio}x the tutorial", flush=True)
    result = json.loads(out.read_text())
    result[f"repeat_runs_{args.label}"] = {
        "note": f"bench/train_throughput_repeats.py: {args.runs} runs of bench/train_throughput.py in a row, a fresh "
                "process each; each run's best epochs. The variants above are the run that wrote them.",
        "runs": runs,
        "hybrid_full_x_tutorial_median": round(statistics.median(r["hybrid_full_x_tutorial"] for r in runs), 3)}
    write_json(out, result)


if __name__ == "__main__":
    main()
