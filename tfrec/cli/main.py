"""`tfrec` command line: drives every stage.

    tfrec run [--config FILE] [--data PATH] [--section.key=value ...]
    tfrec evaluate --protocol NAME|all [--config FILE] [--data PATH] [--eval.baselines=...]
    tfrec export --run RUN_DIR [--version N] [--export.key=value ...]
    tfrec explain --run RUN_DIR --user ID [--k 5] [--item ID] [--json]
    tfrec recommend --run RUN_DIR --user ID [--k 10] [--history IDS] [--exclude IDS] [--where COL=V,...] [--json]
    tfrec info [--data PATH]
    tfrec data-service dispatcher --port 5050 [--work-dir DIR]
    tfrec data-service worker --dispatcher HOST:5050 --port 5051
"""
import argparse
import sys

from tfrec.errors import TfrecError


def _parser():
    p = argparse.ArgumentParser(prog="tfrec", description="Hybrid recommenders in TensorFlow: train, evaluate, export.")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="load, split, train, evaluate on the full catalogue and export a SavedModel",
                       epilog="Any config value can be overridden with a dotted flag, e.g. --train.epochs=3 "
                              "--split.kind=leave_last_n --eval.baselines=most_popular,ease")
    r.add_argument("--config", help="YAML or JSON config file (see configs/)")
    r.add_argument("--data", help="data folder, GroupLens zip, tfds:NAME or a registered name (default: TFREC_DATA, "
                                  "then ../shared/datasets/ml-100k, then TFDS)")
    e = sub.add_parser("evaluate", help="run every baseline under evaluation protocols named after published anchors",
                       epilog="Protocols: tfrs_tutorial, recbole_general, recbole_sequential, temporal, or all. "
                              "Config overrides as for `run`, e.g. --eval.baselines=most_popular,ease")
    e.add_argument("--protocol", required=True, help="protocol name, or `all` for every protocol")
    e.add_argument("--config", help="YAML or JSON config file (data, eval.baselines, run_root)")
    e.add_argument("--data", help="as for `run`")
    e.add_argument("--markdown", help="also write the combined Markdown report to this file (atomically)")
    e.add_argument("--json", help="also write metrics.json's content to this file (atomically)")
    e.add_argument("--full-grids", action="store_true",
                   help="search every baseline's full grid (slow: the TFRS-tutorial grid alone is ~10 min per protocol)")
    x = sub.add_parser("export", help="export a finished run's trained model as a new TF Serving version",
                       epilog="Export settings can be overridden with dotted flags, e.g. --export.root=saved_models "
                              "--export.name=ml100k_ann --export.index=kmeans --export.probes=16")
    x.add_argument("--run", required=True, help="run folder written by `tfrec run` (runs/<time>-<name>/)")
    x.add_argument("--version", help="integer version folder to write (default: the next free one); "
                                     "an existing version is refused")
    xp = sub.add_parser("explain", help="why a finished run's model recommends items to a user (evidence + sentence)")
    xp.add_argument("--run", required=True, help="run folder written by `tfrec run` (hybrid model)")
    xp.add_argument("--user", required=True, help="user id")
    xp.add_argument("--k", type=int, default=5, help="explain the user's top-k recommendations (default 5)")
    xp.add_argument("--item", help="explain this item instead of the top-k")
    xp.add_argument("--timestamp", type=int,
                    help="request time, Unix seconds (default: 1 s after the run's last known interaction)")
    xp.add_argument("--json", action="store_true", help="print the explanations' JSON form")
    rc = sub.add_parser("recommend", help="a finished run's recommendations for a user, with business rules")
    rc.add_argument("--run", required=True, help="run folder written by `tfrec run` (hybrid model)")
    rc.add_argument("--user", required=True, help="user id (known or not: history and attributes suffice)")
    rc.add_argument("--k", type=int, default=10, help="how many items (default 10)")
    rc.add_argument("--timestamp", type=int,
                    help="request time, Unix seconds (default: 1 s after the run's last known interaction)")
    rc.add_argument("--history", help="comma-separated item ids, oldest first (default: the user's known history)")
    rc.add_argument("--attribute", action="append", metavar="NAME=VALUE",
                    help="a user attribute, e.g. age=31 or gender=F (repeatable; default: the known ones)")
    rc.add_argument("--exclude", help="comma-separated item ids never to return")
    rc.add_argument("--where", action="append", metavar="COLUMN=V1,V2",
                    help="keep items whose COLUMN has one of these values (repeatable), e.g. genres=Comedy,Romance")
    rc.add_argument("--max-per-category", metavar="COLUMN:CAP", help="at most CAP items per value, e.g. genres:3")
    rc.add_argument("--retrieval-only", action="store_true", help="skip the ranker even if the run has one")
    rc.add_argument("--keep-seen", action="store_true", help="allow items the user already interacted with")
    rc.add_argument("--json", action="store_true", help="print the list as JSON records")
    i = sub.add_parser("info", help="summarise a data set (counts, time range, density)")
    i.add_argument("--data", help="as for `run`")
    ds = sub.add_parser("data-service", help="run a tf.data service dispatcher or worker (for --train.data_service)")
    ds.add_argument("role", choices=("dispatcher", "worker"))
    ds.add_argument("--port", type=int, default=None, help="port to serve on (dispatcher default 5050, worker any)")
    ds.add_argument("--work-dir", help="dispatcher: journal folder, so a restarted dispatcher resumes its jobs")
    ds.add_argument("--dispatcher", help="worker: the dispatcher's HOST:PORT")
    return p


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command in ("explain", "recommend"):  # no config overrides there: a typo, not a setting
        parser.error(f"unrecognized arguments for `{args.command}`: {' '.join(rest)}")
    try:
        from tfrec.config import load_config

        overrides = list(rest)
        if getattr(args, "data", None):
            overrides.append(f"--data.source={args.data}")
        if args.command == "run":
            from tfrec.cli.run import run

            run(load_config(args.config, overrides))
        elif args.command == "evaluate":
            from tfrec.cli.evaluate import evaluate

            evaluate(load_config(args.config, overrides), [n.strip() for n in args.protocol.split(",") if n.strip()],
                     full_grids=args.full_grids, markdown_path=args.markdown, json_path=args.json)
        elif args.command == "export":
            from tfrec.cli.export import export_run

            export_run(args.run, version=args.version, overrides=rest)
        elif args.command == "explain":
            from tfrec.cli.explain import explain_run

            explain_run(args.run, args.user, k=args.k, item=args.item, as_json=args.json, timestamp=args.timestamp)
        elif args.command == "recommend":
            from tfrec.cli.recommend import recommend_run

            recommend_run(args.run, args.user, k=args.k, timestamp=args.timestamp, history=args.history,
                          attributes=args.attribute, exclude=args.exclude, where=args.where,
                          max_per_category=args.max_per_category, retrieval_only=args.retrieval_only,
                          keep_seen=args.keep_seen, as_json=args.json)
        elif args.command == "data-service":
            from tfrec.data.service import serve

            port = args.port if args.port is not None else (5050 if args.role == "dispatcher" else 0)
            serve(args.role, port, dispatcher=args.dispatcher, work_dir=args.work_dir)
        elif args.command == "info":
            import json

            from tfrec.cli.run import load_data

            cfg = load_config(None, overrides)
            data = load_data(cfg.data)
            print(json.dumps({**data.summary(), "source": data.source}, indent=2))
        return 0
    except TfrecError as e:
        print(f"tfrec: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
