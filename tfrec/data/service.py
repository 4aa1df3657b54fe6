"""Distributed input: how workers split a data set, and tf.data service.

Auto-sharding. Under a multi-worker strategy every worker builds the same input
pipeline and `tf.distribute` cuts it so that each worker sees its own part:
`FILE` gives each worker whole files (no record is read twice), `DATA` has every
worker read everything and keep its share of each batch. `auto_shard_policy`
chooses explicitly, for both of tfrec's input kinds: in-memory columns (no files)
-> DATA; sharded TFRecords -> FILE with at least one file per worker, else DATA.

tf.data service. Preprocessing can run on other machines: a dispatcher hands
out the work, tf.data workers run the pipeline, and training reads the finished
batches over gRPC:

    tfrec data-service dispatcher --port 5050
    tfrec data-service worker --dispatcher HOST:5050 --port 5051     # one per machine
    tfrec run --train.data_service=grpc://HOST:5050

`distribute` uses processing_mode "distributed_epoch": the dispatcher splits
the source (the row range or the file list) among the tf.data workers, so every
example is produced exactly once per epoch however many workers there are; in
"parallel_epochs" each tf.data worker would produce a whole epoch, and training
would see every example once per tf.data worker.
"""
import json
import os
from typing import Optional

import tensorflow as tf

from tfrec.errors import ConfigError

SHARD_DATA = tf.data.experimental.AutoShardPolicy.DATA
SHARD_FILE = tf.data.experimental.AutoShardPolicy.FILE


def num_workers_from_tf_config(environ=None) -> int:
    """Training workers in `TF_CONFIG` (chief included); 1 when unset or unreadable
    (the strategy itself reports a malformed TF_CONFIG)."""
    try:
        cluster = json.loads((os.environ if environ is None else environ).get("TF_CONFIG") or "{}").get("cluster", {})
        return max(1, len(cluster.get("worker", ())) + len(cluster.get("chief", ())))
    except (ValueError, AttributeError, TypeError):
        return 1


def auto_shard_policy(num_files: Optional[int] = None, num_workers: Optional[int] = None):
    """The auto-shard policy for an input of `num_files` files (None: in-memory
    data, no files) read by `num_workers` workers (default: from TF_CONFIG).

    FILE only when every worker gets at least one whole file; otherwise DATA,
    which is always correct (each worker keeps its slice of every global batch).
    """
    workers = num_workers or num_workers_from_tf_config()
    if num_files is not None and num_files >= workers:
        return SHARD_FILE
    return SHARD_DATA


def with_auto_shard(ds: tf.data.Dataset, policy) -> tf.data.Dataset:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return ds.with_options(options)


def _address(service: str) -> str:
    if not isinstance(service, str) or "://" not in service or ":" not in service.split("://", 1)[1]:
        raise ConfigError(f"`train.data_service` must look like `grpc://HOST:PORT` (the dispatcher), got "
                          f"{service!r}. Start one with `tfrec data-service dispatcher --port 5050`.")
    return service


def distribute(ds: tf.data.Dataset, service: str, job_name: str = "tfrec-train") -> tf.data.Dataset:
    """Runs `ds` on the tf.data service at `service` ("grpc://HOST:PORT").

    Every consumer with the same `job_name` shares one job, so the epoch is split
    between them ("distributed_epoch", see the module docstring); auto-sharding is
    turned off because the service has already split the data.
    """
    out = ds.apply(tf.data.experimental.service.distribute(
        processing_mode="distributed_epoch", service=_address(service), job_name=job_name))
    return with_auto_shard(out, tf.data.experimental.AutoShardPolicy.OFF)


def start_dispatcher(port: int = 5050, work_dir: Optional[str] = None) -> tf.data.experimental.service.DispatchServer:
    """Starts a tf.data service dispatcher on `port` (0: any free port). With
    `work_dir`, its journal survives a restart (fault-tolerant mode)."""
    config = tf.data.experimental.service.DispatcherConfig(port=int(port), work_dir=work_dir,
                                                           fault_tolerant_mode=bool(work_dir))
    return tf.data.experimental.service.DispatchServer(config)


def start_worker(dispatcher: str, port: int = 0,
                 worker_address: Optional[str] = None) -> tf.data.experimental.service.WorkerServer:
    """Starts a tf.data worker on `port` that registers with `dispatcher`
    ("HOST:PORT", with or without "grpc://")."""
    dispatcher = dispatcher.split("://", 1)[-1]
    if ":" not in dispatcher:
        raise ConfigError(f"`--dispatcher` must be HOST:PORT, got {dispatcher!r}.")
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher, port=int(port),
                                                       worker_address=worker_address)
    return tf.data.experimental.service.WorkerServer(config)


def serve(role: str, port: int, dispatcher: Optional[str] = None, work_dir: Optional[str] = None, log=print):
    """`tfrec data-service dispatcher|worker`: starts the server and blocks."""
    if role == "dispatcher":
        server = start_dispatcher(port, work_dir)
        log(f"tf.data service dispatcher on grpc://localhost:{port}"
            f"{f' (journal in {work_dir})' if work_dir else ''}; train with --train.data_service=grpc://HOST:{port}")
    elif role == "worker":
        if not dispatcher:
            raise ConfigError("`tfrec data-service worker` needs `--dispatcher HOST:PORT`.")
        server = start_worker(dispatcher, port)
        log(f"tf.data service worker on port {port}, registered with {dispatcher}")
    else:
        raise ConfigError(f"Unknown data-service role {role!r}; choose dispatcher or worker.")
    server.join()
