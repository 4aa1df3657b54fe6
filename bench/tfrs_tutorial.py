"""The hybrid under the TFRS tutorials' protocol: one row per `tfrec run` folder, merged
by label into bench/results/tfrs_tutorial_ml100k.json (atomic write).

    tfrec run --eval.protocol=tfrs_tutorial --eval.baselines= --ranking.enabled=false --export.enabled=false [FLAGS]
    .venv/bin/python bench/tfrs_tutorial.py runs/RUN --label "LABEL" --command "tfrec run ... FLAGS"

A row holds the test top-100 accuracy (FactorizedTopK's top-K categorical accuracy, per
test rating) with its CI, the other metrics, and what the run chose on validation (its
seeded 10% slice of train): the popularity prior, with the protocol's selection metric
(validation hit_rate@100) before and after it, and the learned repeat penalty if any.
Settings are compared on that validation number; test is reported, never used to choose.
"""
import argparse
import datetime
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import machine_info, write_json  # noqa: E402

OUT = REPO / "bench" / "results" / "tfrs_tutorial_ml100k.json"


def summarise(run_dir: pathlib.Path, command: str) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    if m["config"]["eval"]["protocol"] != "tfrs_tutorial":
        raise SystemExit(f"{run_dir}: protocol {m['config']['eval']['protocol']!r}, not tfrs_tutorial")
    hybrid, train = m["models"]["tfrec hybrid"], m["train"]
    prior = train.get("popularity_prior") or {}
    trials = prior.get("trials") or []
    off = next((t for t in trials if t["weight"] == 0.0), None)
    chosen = next((t for t in trials if (t["weight"], t["days"]) == (prior.get("weight"), prior.get("days"))), None)
    return {"command": command, "run": run_dir.name,
            "popularity_prior": {k: prior.get(k) for k in ("weight", "days", "metric")} if prior else None,
            "validation_hit_rate@100": {"prior_off": off and off["val_hit_rate@100"],
                                        "chosen": chosen and chosen["val_hit_rate@100"]},
            "repeat_penalty": train.get("repeat_penalty"),
            "cooccurrence_weight": (train.get("cooccurrence") or {}).get("weight", 0.0),
            "top100_accuracy": hybrid["mean"]["hit_rate@100"], "ci95": hybrid["ci95"]["hit_rate@100"],
            "mean": {k: hybrid["mean"][k] for k in ("hit_rate@10", "hit_rate@50", "ndcg@10", "mrr@10")},
            "coverage@10": hybrid["beyond"]["coverage@10"], "seen@10": hybrid["beyond"].get("seen_share@10")}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--label", required=True, help="the row's name in the JSON (replaces a row of that name)")
    ap.add_argument("--command", required=True, help="the tfrec command that made the run folder")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out)
    doc = json.loads(out.read_text()) if out.exists() else {"benchmark": "tfrec hybrid under tfrs_tutorial, ML-100K"}
    doc.setdefault("runs", {})[args.label] = summarise(pathlib.Path(args.run_dir), args.command)
    doc.update(timestamp=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               machine=machine_info())
    write_json(out, doc)
    print(json.dumps(doc["runs"][args.label], indent=1))


if __name__ == "__main__":
    main()
