"""tf.data input pipelines of feature dicts.

The training pipeline is built from in-memory columns (or from sharded TFRecords
via `tfrec.data.tfrecord`): cache -> seeded shuffle -> batch -> vectorised
parallel map -> prefetch(AUTOTUNE). Batching before the map lets preprocessing
run once per batch instead of once per example.
"""
from typing import Callable, Dict, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.data.history import histories
from tfrec.data.seeding import seed_alone
from tfrec.data.service import auto_shard_policy, with_auto_shard

AUTOTUNE = tf.data.AUTOTUNE


def interaction_features(events: pd.DataFrame, *, history_length: int = 0, context: Optional[pd.DataFrame] = None,
                         extra: Optional[Dict[str, np.ndarray]] = None, columns=None) -> Dict[str, np.ndarray]:
    """Columns of `events` as a dict of NumPy arrays (strings as bytes objects), plus
    a `history` [n, history_length] of item ids strictly before each event."""
    columns = list(columns or events.columns)
    out = {}
    for c in columns:
        col = events[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            out[c] = col.astype(str).to_numpy(dtype=object)
        elif pd.api.types.is_integer_dtype(col):
            out[c] = col.to_numpy(dtype=np.int64)
        elif pd.api.types.is_bool_dtype(col):
            out[c] = col.to_numpy(dtype=bool)
        else:
            out[c] = col.to_numpy(dtype=np.float32)
    if history_length:
        out["history"] = histories(events, history_length, context=context)
    if extra:
        out.update(extra)
    return out


def make_dataset(features: Dict[str, np.ndarray], batch_size: int, *, shuffle: bool = True, seed: int = 42,
                 shuffle_buffer: Optional[int] = None, cache: bool = True, map_fn: Optional[Callable] = None,
                 drop_remainder: bool = False, repeat: bool = False) -> tf.data.Dataset:
    """A batched, prefetched dataset of feature dicts from in-memory columns.

    Only row indices go through tf.data's shuffle; whole batches are then gathered
    from the column tensors in one op each, so no tf.data op touches single
    examples (1.7x the examples/s of slicing + shuffling feature dicts, measured in
    bench/data_pipeline.py). For data larger than memory use
    `tfrec.data.tfrecord.read_shards`.

    Args:
        features: name -> array with a common first dimension.
        batch_size: global batch size (a distribution strategy splits it).
        shuffle: reshuffle every epoch, reproducibly for a `seed` (the same order
            whatever `tf.random.set_seed` was called with, see tfrec.data.seeding).
        shuffle_buffer: defaults to the whole data set (a full shuffle).
        cache: kept for API compatibility; in-memory columns need no cache.
        map_fn: optional vectorised preprocessing applied per batch in parallel.
    """
    n = len(next(iter(features.values())))
    if n == 0:
        raise ValueError("make_dataset got no examples (every feature array is empty).")
    columns = {k: tf.constant(v) for k, v in features.items()}
    ds = tf.data.Dataset.range(n)
    if shuffle:
        with seed_alone(seed):  # the order is the seed's, not also the global seed's (tfrec.data.seeding)
            ds = ds.shuffle(min(n, shuffle_buffer or n), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(lambda idx: {k: tf.gather(v, idx) for k, v in columns.items()},
                num_parallel_calls=AUTOTUNE, deterministic=True)
    if map_fn is not None:
        ds = ds.map(map_fn, num_parallel_calls=AUTOTUNE, deterministic=True)
    # No files to split: under a multi-worker strategy each worker keeps its slice
    # of every global batch (AUTO would try FILE first, then fall back with a warning).
    return with_auto_shard(ds.prefetch(AUTOTUNE), auto_shard_policy(num_files=None))
