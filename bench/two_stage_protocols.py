"""Both stages under each evaluation protocol: two-stage vs retrieval alone (paired
differences) and the ranker's rating RMSE vs the user/item-bias baseline, read from
`tfrec run` folders (metrics.json), one row per folder.

    tfrec run                                                         # temporal (make demo)
    tfrec run --eval.protocol=tfrs_tutorial --eval.baselines=
    tfrec run --eval.protocol=recbole_sequential --eval.baselines= --model.history_negatives=1
    .venv/bin/python bench/two_stage_protocols.py runs/A runs/B runs/C [--out FILE] [--merge]

(`recbole_general` asks profile queries, for which `tfrec run` skips the ranking stage.)
Writes bench/results/two_stage_protocols_ml100k.json (atomic).
"""
import argparse
import datetime
import json
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import machine_info, write_json  # noqa: E402


def summarise(run_dir: pathlib.Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ranking = metrics.get("ranking") or {}
    ratings = ranking.get("ratings") or {}
    row = {"run": run_dir.name, "protocol": metrics["config"]["eval"]["protocol"] or "temporal",
           "two_stage_vs_retrieval": {c["metric"]: {k: c[k] for k in ("mean_diff", "low", "high", "p_value")}
                                      for c in metrics.get("comparisons", [])
                                      if (c["a"], c["b"]) == ("tfrec two-stage", "tfrec hybrid")},
           "blend": (ranking.get("train") or {}).get("retrieval_blend", {}).get("blend")}
    if ratings:
        bias, ranker = ratings["user_item_bias"], ratings["tfrec ranker"]
        row["ratings"] = {
            "user_item_bias_rmse": bias["rmse"], "ranker_rmse": ranker["rmse"],
            "bias_params": bias.get("params"), "bias_tuned_on": bias.get("tuned_on", "train / validation"),
            "ranker_minus_bias_squared_error": {k: ranker["squared_error_vs_user_item_bias"][k]
                                                for k in ("mean_diff", "low", "high", "p_value")},
            "online": {"user_item_bias_rmse": bias["online"]["rmse"], "ranker_rmse": ranker["online"]["rmse"],
                       "ranker_minus_bias_squared_error": {
                           k: ranker["online"]["squared_error_vs_user_item_bias"][k]
                           for k in ("mean_diff", "low", "high", "p_value")}}}
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="tfrec run folders")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "two_stage_protocols_ml100k.json"))
    ap.add_argument("--note", action="append", default=[], help="RUN=TEXT: a note on one row")
    ap.add_argument("--merge", action="store_true", help="keep the rows already in --out and add these after them")
    args = ap.parse_args(argv)
    notes = dict(n.split("=", 1) for n in args.note)
    out = pathlib.Path(args.out)
    rows = json.loads(out.read_text())["rows"] if args.merge and out.exists() else []
    for r in args.runs:
        row = summarise(pathlib.Path(r))
        if row["run"] in notes:
            row["note"] = notes[row["run"]]
        rows.append(row)
    doc = {"benchmark": "two-stage vs retrieval and ranker vs bias ratings under each protocol (ML-100K)",
           "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": "python bench/two_stage_protocols.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_info(), "rows": rows}
    if args.merge and out.exists():
        before = json.loads(out.read_text())
        doc["earlier_commands"] = before.get("earlier_commands", []) + [before["command"]]
    write_json(args.out, doc)
    for row in rows:
        print(json.dumps(row))
    return doc


if __name__ == "__main__":
    main()
