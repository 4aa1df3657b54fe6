"""Helpers the benchmark scripts share: what machine a result came from, an atomic JSON
write (a reader never sees a half-written results file), and the argument parsing and
result header of the benchmarks that read one `tfrec run` folder."""
import argparse
import datetime
import importlib.metadata
import json
import os
import pathlib
import platform
import tempfile
import time

DEFAULT_PACKAGES = ("tensorflow", "tensorflow-recommenders", "numpy", "pandas")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")),
                        platform.processor())
    except OSError:
        return platform.processor() or platform.machine()


def package_version(name: str):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def machine_info(packages=DEFAULT_PACKAGES, **extra) -> dict:
    """CPU count and model, usable CPUs, load average now, platform, Python, and the
    versions of `packages` (as `<name>_version`, dashes as underscores); `extra`
    entries are added as they are."""
    info = {"cpu_count": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu_model": cpu_model(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "platform": platform.platform(), "python": platform.python_version()}
    info.update({f"{p.replace('-', '_')}_version": package_version(p) for p in packages})
    info.update(extra)
    return info


def write_json(path, obj) -> None:
    """Writes `obj` as indented JSON to `path` through a temporary file and a rename."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2)
            fh.write("\n")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_run_folder(doc: str, out_name: str, argv=None):
    """For a benchmark that reads one `tfrec run` folder: parses `RUN_DIR [--out FILE]`
    (default bench/results/`out_name`; the description is `doc`'s first line) and loads
    the run (`tfrec.cli.artifacts.load_run`). Returns (args, run, start time)."""
    from tfrec.cli.artifacts import load_run

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=str(pathlib.Path(__file__).resolve().parent / "results" / out_name))
    args = ap.parse_args(argv)
    start = time.time()
    return args, load_run(args.run_dir, log=print), start


def run_result(script: str, args, start: float, **fields) -> dict:
    """The JSON document of a `load_run_folder` benchmark: what it measured (`fields`),
    the command that reproduces it, the run folder's name, the seconds and the machine."""
    name = pathlib.Path(args.run_dir).name
    return {**fields, "timestamp": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": f"python bench/{script} runs/{name}", "run": name,
            "seconds": round(time.time() - start, 1), "machine": machine_info()}


def two_stage_test_reports(run, ranker, config):
    """For a ranker on a loaded run's retrieval model: (the test report comparing two-stage with
    retrieval alone, `evaluate_models` with one comparison; the rating evaluation,
    `evaluate_rating_stage`), as `tfrec run` measures them under `config` (its eval
    protocol, bootstrap count and `ranking.candidates`; no baselines)."""
    import dataclasses

    from tfrec.cli.ranking_stage import evaluate_rating_stage, two_stage_for_test
    from tfrec.evaluation.protocol import evaluate_models
    from tfrec.models.scoring import HybridScorer

    split, known, cat = run.split, run.known, run.catalogue
    eval_cfg = dataclasses.replace(config.eval, baselines=[])
    scorer = HybridScorer(run.model, run.query_features, known, cat.item_ids)
    models = {"tfrec hybrid": (scorer.user_matrix(cat, split.test), scorer.item_embeddings),
              "tfrec two-stage": two_stage_for_test(run.model, ranker, run.query_features, known, split, cat,
                                                    eval_cfg, config.ranking.candidates)}
    report = evaluate_models(models, run.data, split, cat, eval_cfg, log=lambda *a: None,
                             compare=[("tfrec two-stage", "tfrec hybrid")])
    ratings = evaluate_rating_stage(ranker, run.query_features, split, known, n_boot=eval_cfg.n_bootstrap,
                                    log=lambda *a: None)
    return report, ratings
