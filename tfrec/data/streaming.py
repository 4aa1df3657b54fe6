"""Training from sharded TFRecords larger than memory, in bounded memory.

Interactions that do not fit in memory (tens of millions of events) never become
a pandas table. They are written once as shards (`tfrec.data.tfrecord.write_shards`
takes a generator of chunks), then:

1. `count_ids` makes one streaming pass over the shards: batches of the id
   columns are parsed by tf.data and counted into in-graph hash tables, so memory
   grows with the number of distinct ids, not with the number of interactions. It
   yields the user and item vocabularies (the same as `Vocabulary.fit` on the
   whole table) and the item popularity counts for the logQ correction.
2. `training_dataset` streams the shards again for training: only the id columns
   are parsed, repeated, shuffled in a bounded buffer, batched and prefetched,
   with file-level auto-sharding across workers (see `read_shards`).
3. `fit_from_shards` builds the id two-tower retrieval model on those
   vocabularies and trains it to a fixed number of steps with
   `tfrec.training.trainer.train`, logging progress.

Example:
    from tfrec.config import load_config
    from tfrec.data.synthetic import iter_interaction_chunks
    from tfrec.data.tfrecord import write_shards

    write_shards(iter_interaction_chunks(n_interactions=1_000_000, chunk_size=200_000), "/tmp/ia/train",
                 n_shards=8)
    config = load_config(None, ["--model.kind=two_tower", "--train.batch_size=1024"])
    fit = fit_from_shards("/tmp/ia/train-*.tfrecord", config=config, steps=200)
    fit.model.candidate_tower(tf.constant(["i0"]))  # (1, 64)
"""
import dataclasses
import time
from typing import Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from tfrec.data.tfrecord import list_shards, read_shards  # noqa: F401  (list_shards: part of this API)
from tfrec.errors import ConfigError, DataError
from tfrec.features.vocabulary import Vocabulary

AUTOTUNE = tf.data.AUTOTUNE
_KINDS = {"bytes_list": tf.string, "int64_list": tf.int64}
_INT_MISSING = np.iinfo(np.int64).min  # parse default of a missing integer id; such rows are dropped


@dataclasses.dataclass(frozen=True)
class IdCounts:
    """What one streaming pass over the interaction shards learns.

    Args:
        user_vocab, item_vocab: ids most frequent first (ties by id), after
            `min_count` / `max_tokens`; `.counts` are their interaction counts.
        n_interactions: records read (the logQ denominator).
        n_items_seen, n_users_seen: distinct ids before `min_count` / `max_tokens`.
    """

    user_vocab: Vocabulary
    item_vocab: Vocabulary
    n_interactions: int
    n_users_seen: int
    n_items_seen: int

    def item_log_probability(self) -> dict:
        """id -> log(count / interactions): the in-batch sampling probability of each
        vocabulary item, as `TwoTowerRetrieval(item_log_probability=...)` takes it."""
        counts = np.asarray(self.item_vocab.counts, np.float64)
        return dict(zip(self.item_vocab.values, np.log(counts / max(self.n_interactions, 1)).tolist()))


@dataclasses.dataclass
class StreamingFit:
    """What `fit_from_shards` returns: the trained model, the vocabularies it was
    built on, the loss after every step, and the training wall time."""

    model: tf.keras.Model
    counts: IdCounts
    step_losses: list
    seconds: float
    steps: int
    batch_size: int


def id_column_kinds(files: Sequence[str], columns: Sequence[str], compression: Optional[str] = None,
                    probe: int = 32) -> dict:
    """Reads the first `probe` records of every shard and checks each id column is
    there (in at least one of them: a missing value is an absent feature) as a
    string or integer feature; returns {column: tf.string | tf.int64}.

    Raises DataError naming the shard and the column when one is missing or has
    another type (empty shards are skipped)."""
    kinds = {}
    for path in files:
        seen = {}
        keys = set()
        for raw in tf.data.TFRecordDataset(path, compression_type=compression or "").take(probe):
            feats = tf.train.Example.FromString(raw.numpy()).features.feature
            keys.update(feats)
            for col in columns:
                if col in feats:
                    seen.setdefault(col, feats[col].WhichOneof("kind"))
        if not keys:
            continue
        for col in columns:
            if col not in seen:
                raise DataError(f"Shard {path!r} has no column `{col}` (its first records have {sorted(keys)}). "
                                f"Every shard needs the id columns {list(columns)}. Fix: rewrite the shards with "
                                "that column, or name the id columns with `user_column=` / `item_column=`.")
            kind = seen[col]
            if kind not in _KINDS:
                raise DataError(f"Column `{col}` of shard {path!r} holds {kind or 'no values'}; ids must be strings "
                                "or integers. Fix: write the ids as strings.")
            if kinds.setdefault(col, _KINDS[kind]) != _KINDS[kind]:
                raise DataError(f"Column `{col}` is {kinds[col].name} in some shards and {_KINDS[kind].name} in "
                                f"{path!r}. Fix: write every shard with the same column types.")
    if not kinds:
        raise DataError(f"The {len(files)} shard(s) matched, e.g. {files[0]!r}, hold no records. Fix: write the "
                        "interactions first.")
    return kinds


def count_ids(pattern: Union[str, Sequence[str]], *, user_column: str = "user_id", item_column: str = "item_id",
              min_count: int = 1, max_tokens: Optional[int] = None, batch_size: int = 16_384,
              compression: Optional[str] = None) -> IdCounts:
    """Counts user and item ids in one streaming pass over interaction shards.

    Memory is bounded by the number of distinct ids (two in-graph hash tables) and
    one batch, never by the number of interactions. The vocabularies equal
    `Vocabulary.fit` on the same columns of the whole table (missing ids skipped).

    Args:
        pattern: the shards: a glob, a file, or a list of either.
        user_column, item_column: the id columns (string or integer features).
        min_count: keep ids seen at least this often.
        max_tokens: keep at most this many ids (the most frequent), not counting
            the padding and out-of-vocabulary rows; None keeps all.
        batch_size: records of one file parsed and counted at a time.
        compression: None, "GZIP" or "ZLIB", as written.
    """
    _check_int("min_count", min_count, 1)
    _check_int("batch_size", batch_size, 1)
    if max_tokens is not None:
        _check_int("max_tokens", max_tokens, 1)
    files = list_shards(pattern)
    columns = (user_column, item_column)
    kinds = id_column_kinds(files, columns, compression)
    # Blocks of raw records per file, read in parallel: handing single records across
    # reader threads (TFRecordDataset(num_parallel_reads=...)) was ~4x slower here.
    ds = tf.data.Dataset.from_tensor_slices(files).interleave(
        lambda f: tf.data.TFRecordDataset(f, compression_type=compression or "").batch(batch_size),
        num_parallel_calls=AUTOTUNE, deterministic=False)
    ds = ds.map(lambda x: _parse_ids(x, kinds), num_parallel_calls=AUTOTUNE, deterministic=False)
    tables = {c: tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0) for c in columns}

    @tf.function(reduce_retracing=True)
    def update(batch):
        for col in columns:
            ids = tf.boolean_mask(batch[col], batch[col] != "")  # missing ids are not counted
            uniq, _, n = tf.unique_with_counts(ids, out_idx=tf.int64)
            tables[col].insert(uniq, tables[col].lookup(uniq) + n)
        return tf.size(batch[user_column], out_type=tf.int64)

    n_rows = 0
    try:
        for batch in ds.prefetch(2):
            n_rows += int(update(batch))
    except tf.errors.InvalidArgumentError as e:
        raise DataError(f"Reading the id columns {list(columns)} of {pattern!r} failed: {e.message.splitlines()[0]}. "
                        "Fix: every record needs each id column, with one value of the same type.") from None
    vocabs = []
    for col in columns:
        keys, values = tables[col].export()
        ids = [k.decode("utf-8") for k in keys.numpy().tolist()]
        vocabs.append((Vocabulary.from_counts(ids, values.numpy(), min_count=min_count, max_tokens=max_tokens),
                       len(ids)))
    (users, n_users), (items, n_items) = vocabs
    return IdCounts(users, items, n_rows, n_users, n_items)


def training_dataset(pattern: Union[str, Sequence[str]], batch_size: int, *, user_column: str = "user_id",
                     item_column: str = "item_id", shuffle_buffer: int = 100_000, seed: Optional[int] = 42,
                     repeat: bool = True, drop_remainder: bool = True, num_workers: Optional[int] = None,
                     compression: Optional[str] = None) -> tf.data.Dataset:
    """Batches of {"user_id", "item_id"} string tensors streamed from the shards.

    Only the two id columns are parsed (integer ids become strings, records with a
    missing id are dropped). Files are visited in a seeded order, records mixed in
    a `shuffle_buffer`, and with at least as many files as workers each worker
    reads whole files (`AutoShardPolicy.FILE`, else `DATA`; see `read_shards`):
    keep `seed` set under multi-worker training so every worker lists the files
    in the same order. With `repeat`, the stream never ends: train to a number of
    steps, which also keeps workers with unequal shards in step.

    Args:
        pattern: the shards: a glob, a file, or a list of either.
        batch_size: the global batch (split across replicas by the strategy).
        user_column, item_column: id columns in the shards; the batches always
            use the keys "user_id" and "item_id", as the models expect.
        shuffle_buffer, seed, repeat, drop_remainder, num_workers, compression:
            as in `tfrec.data.tfrecord.read_shards`.
    """
    files = list_shards(pattern)
    kinds = id_column_kinds(files, (user_column, item_column), compression)
    spec = _id_spec(kinds)
    ds = read_shards(files, spec, batch_size, seed=seed, shuffle_buffer=shuffle_buffer, repeat=repeat,
                     drop_remainder=drop_remainder, num_workers=num_workers, compression=compression)

    def to_ids(batch):
        user, item = _as_string(batch[user_column]), _as_string(batch[item_column])
        keep = (user != "") & (item != "")
        return {"user_id": tf.boolean_mask(user, keep), "item_id": tf.boolean_mask(item, keep)}

    # read_shards set the auto-shard policy; map and prefetch keep the options.
    return ds.map(to_ids, num_parallel_calls=AUTOTUNE)


def fit_from_shards(pattern: Union[str, Sequence[str]], *, config, steps: int, counts: Optional[IdCounts] = None,
                    strategy=None, log_every: int = 50, log=print, user_column: str = "user_id",
                    item_column: str = "item_id", min_count: int = 1, max_tokens: Optional[int] = None,
                    compression: Optional[str] = None) -> StreamingFit:
    """Trains the id two-tower retrieval model on interaction shards to `steps` steps.

    Counts the ids in one streaming pass (unless `counts` is given), builds
    `TwoTowerRetrieval` on those vocabularies (with the logQ correction when
    `config.model.logq_correction`), and fits it on `training_dataset` through
    `tfrec.training.trainer.train`, logging the loss and throughput every
    `log_every` steps.

    Args:
        pattern: the interaction shards (glob, file or list).
        config: a `RunConfig` with `model.kind == "two_tower"`; uses `model.*`
            (embedding_dim, logq_correction, remove_accidental_hits) and `train.*`
            (batch_size global, shuffle_buffer, optimizer, learning_rate, seed,
            strategy, collective_timeout_s, checkpoint_dir, resume).
        steps: training steps (batches of `train.batch_size`).
        counts: vocabularies from an earlier `count_ids` over the same shards.
        strategy: a tf.distribute strategy; default `make_strategy(train.strategy)`.
        log_every: steps between progress lines; 0 disables them.
        log: where progress lines go.
        min_count, max_tokens: vocabulary cut-offs (see `count_ids`).
    """
    from tfrec.models.two_tower import TwoTowerRetrieval
    from tfrec.training.strategy import make_strategy
    from tfrec.training.trainer import train

    if config.model.kind != "two_tower":
        raise ConfigError(f"`model.kind` {config.model.kind!r} cannot train from shards yet: the streaming path "
                          "trains the id two-tower model. Fix: set `--model.kind=two_tower` (or "
                          "`dataclasses.replace(config.model, kind='two_tower')`).")
    _check_int("steps", steps, 1)
    _check_int("log_every", log_every, 0)
    m, t = config.model, config.train
    if counts is None:
        start = time.perf_counter()
        counts = count_ids(pattern, user_column=user_column, item_column=item_column, min_count=min_count,
                           max_tokens=max_tokens, compression=compression)
        log(f"streaming: counted {counts.n_interactions:,} interactions in {time.perf_counter() - start:.1f} s: "
            f"{len(counts.user_vocab):,} users, {len(counts.item_vocab):,} items in the vocabularies")
    if not len(counts.item_vocab) or not len(counts.user_vocab):
        raise DataError(f"No id of {pattern!r} passes `min_count`={min_count}; lower it.")
    ds = training_dataset(pattern, t.batch_size, user_column=user_column, item_column=item_column,
                          shuffle_buffer=t.shuffle_buffer, seed=t.seed, compression=compression)
    logq = counts.item_log_probability() if m.logq_correction else None
    strategy = strategy or make_strategy(t.strategy, collective_timeout_s=t.collective_timeout_s)
    progress = StepProgress(steps, t.batch_size, log_every, log)
    # One epoch of `steps` batches from the endless stream (train() has no steps_per_epoch).
    model, _, secs = train(lambda: TwoTowerRetrieval(counts.user_vocab.values, counts.item_vocab.values,
                                                     m.embedding_dim, item_log_probability=logq,
                                                     remove_accidental_hits=m.remove_accidental_hits),
                           ds.take(steps), strategy=strategy, epochs=1, optimizer=t.optimizer,
                           learning_rate=t.learning_rate, seed=t.seed, verbose=0, callbacks=[progress],
                           checkpoint_dir=t.checkpoint_dir, resume=t.resume, log=log)
    return StreamingFit(model, counts, progress.losses, secs, len(progress.losses), t.batch_size)


class StepProgress(tf.keras.callbacks.Callback):
    """Keeps the loss of every step and logs `step k/N, loss, examples/s` every
    `every` steps (0: never)."""

    def __init__(self, steps, batch_size, every=50, log=print):
        super().__init__()
        self.steps, self.batch_size, self.every, self.log = int(steps), int(batch_size), int(every), log
        self.losses = []
        self._start = self._last = None

    def on_train_begin(self, logs=None):
        self.losses = []
        self._start = self._last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.losses.append(float((logs or {}).get("loss", float("nan"))))
        step = len(self.losses)
        if self.every and (step % self.every == 0 or step == self.steps):
            now = time.perf_counter()
            window = step % self.every or self.every
            rate = window * self.batch_size / max(now - self._last, 1e-9)
            recent = np.mean(self.losses[-window:])
            self.log(f"train: step {step}/{self.steps}, loss {recent:.3f} (mean of last {window}), "
                     f"{rate:,.0f} examples/s, {now - self._start:.1f} s")
            self._last = now


def _id_spec(kinds: dict) -> dict:
    return {c: tf.io.FixedLenFeature([], dtype, default_value="" if dtype == tf.string else _INT_MISSING)
            for c, dtype in kinds.items()}


def _parse_ids(serialized, kinds: dict) -> dict:
    parsed = tf.io.parse_example(serialized, _id_spec(kinds))
    return {c: _as_string(v) for c, v in parsed.items()}


def _as_string(ids):
    if ids.dtype == tf.string:
        return ids
    return tf.where(ids == _INT_MISSING, tf.constant(""), tf.strings.as_string(ids))


def _check_int(name: str, value, minimum: int):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"`{name}` must be an integer >= {minimum}, got {value!r}.")
