"""Multi-worker training: the cluster from `TF_CONFIG`, who is chief, and what a
lost worker means.

`MultiWorkerMirroredStrategy` runs the same program on every worker; the workers
meet in collective all-reduces every step. Three rules follow, and live here:

- the cluster comes from the `TF_CONFIG` environment variable, checked up front
  (a typo there otherwise surfaces as a gRPC hang or an opaque C++ error);
- only the chief writes what outlives the job (checkpoints, the run folder,
  exports); the other workers must run the same saves (they take part in the
  same collectives), into temporary folders that are deleted right after;
- a worker that dies leaves its peers waiting in a collective: with a timeout
  (`CommunicationOptions`) that wait fails, and `WorkerLostError` says how to
  resume.
"""
import json
import os
import shutil
import tempfile
from typing import Optional

import tensorflow as tf

from tfrec.errors import ConfigError, TfrecError

TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')
# Errors a collective raises when a peer is gone: the timeout (DeadlineExceeded), a
# broken connection (Unavailable), or ops aborted by the strategy's health check.
COLLECTIVE_ERRORS = (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.CancelledError,
                     tf.errors.AbortedError)


class WorkerLostError(TfrecError, RuntimeError):
    """A peer of a multi-worker job stopped answering; the job must be restarted."""


def _bad(rule: str, got) -> ConfigError:
    return ConfigError(f"`TF_CONFIG` {rule}, got {got!r}. `train.strategy=multi_worker` reads the cluster from this "
                       f"environment variable; set it on every worker, e.g. {TF_CONFIG_EXAMPLE} "
                       "(same cluster everywhere, a different task index per worker).")


def read_tf_config(environ=None) -> dict:
    """The parsed and checked `TF_CONFIG`: {"cluster": {...}, "task": {"type", "index"}}.

    Raises ConfigError naming what is missing or malformed, with an example.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG")
    if raw is None or not raw.strip():
        raise _bad("is not set", raw)
    try:
        cfg = json.loads(raw)
    except ValueError as e:
        raise _bad(f"must be JSON ({e})", raw) from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("cluster"), dict):
        raise _bad('must be a JSON object with a "cluster" mapping of job name -> ["host:port", ...]', raw)
    cluster = cfg["cluster"]
    if not (cluster.get("worker") or cluster.get("chief")):
        raise _bad('needs a "worker" (or "chief") list in "cluster"', raw)
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) and ":" in a for a in addresses):
            raise _bad(f'needs "cluster.{job}" to be a list of "host:port" strings', raw)
    task = cfg.get("task")
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise _bad(f'needs a "task" {{"type": one of {sorted(cluster)}, "index": N}}', raw)
    index = task.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(cluster[task["type"]]):
        raise _bad(f'needs "task.index" to be an integer in [0, {len(cluster[task["type"]])})', raw)
    return {"cluster": cluster, "task": {"type": task["type"], "index": index}}


def is_chief_task(environ=None) -> bool:
    """Whether this process is the chief: the `chief` task, or worker 0 of a cluster
    without one (TensorFlow's rule)."""
    cfg = read_tf_config(environ)
    task, cluster = cfg["task"], cfg["cluster"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in cluster)


def is_chief(strategy) -> bool:
    """Whether this process writes checkpoints and outputs under `strategy`."""
    return bool(strategy.extended.should_checkpoint)


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


class TempWriteDir:
    """A temporary folder for a non-chief's share of a collective save, removed on exit."""

    def __enter__(self) -> str:
        self.path = tempfile.mkdtemp(prefix="tfrec-worker-")
        return self.path

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def worker_lost(error: Exception, checkpoint_dir: Optional[str], finished_epochs: int) -> WorkerLostError:
    """The clear error for a collective that failed because a peer is gone."""
    where = (f"restart all workers with the same TF_CONFIG and checkpoint_dir ({checkpoint_dir}) to resume from "
             f"epoch {finished_epochs + 1}") if checkpoint_dir else \
        "restart all workers with the same TF_CONFIG (no checkpoint_dir: training starts again at epoch 1)"
    return WorkerLostError(f"worker lost during multi-worker training ({type(error).__name__}: {_reason(error)}); "
                           f"{where}. A peer that stops answering fails the job after `train.collective_timeout_s`.")


def _reason(error: Exception) -> str:
    """The informative line of a collective's error (TF's first line is often just
    "Graph execution error:")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    keys = ("crashed", "deadline", "timed out", "timeout", "unavailable", "connection", "cancelled", "aborted")
    hit = next((line for line in lines if any(k in line.lower() for k in keys)), lines[0] if lines else "")
    return hit[:300] or type(error).__name__


def worker_scratch(strategy_name: str) -> Optional[tempfile.TemporaryDirectory]:
    """For a non-chief worker of a multi-worker job, a temporary folder to take
    everything the job would write (run folder, export); None for the chief and for
    single-process strategies."""
    if strategy_name != "multi_worker" or is_chief_task():
        return None
    return tempfile.TemporaryDirectory(prefix="tfrec-worker-")


def through_data_service(ds, config, strategy, log=print):
    """The training dataset sent through the tf.data service at `train.data_service`.

    Under multi_worker the service would split each epoch unevenly between the
    trainers (a share each, "distributed_epoch"), and a trainer that runs out of
    batches first leaves the others waiting in a collective: refused.
    """
    from tfrec.data.service import distribute

    if is_multi_worker(strategy):
        raise ConfigError("`train.data_service` is not supported with `train.strategy=multi_worker`: the service "
                          "hands each trainer an uneven share of the epoch, and the trainers' all-reduces would "
                          "wait on each other. Fix: use `train.strategy=mirrored` with the data service (one "
                          "trainer, many tf.data workers), or multi_worker without it (auto-sharded input).")
    import hashlib

    job = "tfrec-" + hashlib.sha1(config.to_json().encode("utf-8")).hexdigest()[:12]
    log(f"train: input through the tf.data service at {config.train.data_service} (job {job}, distributed_epoch)")
    return distribute(ds, config.train.data_service, job_name=job)
