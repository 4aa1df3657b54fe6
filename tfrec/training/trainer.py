"""A generic Keras training loop: the model defines `compute_loss`, this knows
nothing about it beyond `compile` and `fit`.

Checkpoints with resume: with `checkpoint_dir`, `EpochCheckpoint` saves the model,
the optimizer (slots and step count) and the state of the other callbacks
(`EarlyStopping`'s counters and best weights, any callback's `history` list such
as `FullCatalogueValidation`'s) after every finished epoch; `train` started again
on the same folder restores them and continues with the next epoch.

Under MultiWorkerMirroredStrategy every worker restores from the chief's folder
and every worker saves (the save reads distributed variables collectively), but
only the chief saves there: the others save into a temporary folder that is
deleted at once, and write nothing else. A collective that fails because a peer
is gone becomes a `WorkerLostError` naming the epoch a restart resumes from.
"""
import json
import os
import pathlib
import tempfile
import time
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tfrec.errors import ConfigError
from tfrec.training.multi_worker import COLLECTIVE_ERRORS, TempWriteDir, is_chief, is_multi_worker, worker_lost

STATE_FILE = "train_state.json"
BEST_WEIGHTS_FILE = "early_stopping_best_weights.npz"


def make_optimizer(name: str, learning_rate: float):
    name = name.lower()
    table = {
        "adagrad": tf.keras.optimizers.Adagrad,
        "adam": tf.keras.optimizers.Adam,
        "sgd": tf.keras.optimizers.SGD,
    }
    if name not in table:
        raise ConfigError(f"Unknown `train.optimizer` {name!r}; choose one of {', '.join(table)}.")
    return table[name](learning_rate=learning_rate)


def _atomic_write(path: pathlib.Path, write):
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _savez(path, arrays):
    with open(path, "wb") as fh:  # a file object: np.savez would append ".npz" to a name
        np.savez(fh, **arrays)


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)) or hasattr(value, "numpy"):
        value = np.asarray(value).tolist()
    return value


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves everything a resumed run needs after every finished epoch.

    Put it after the callbacks whose state it keeps (`train` does), so their
    `on_epoch_end` (validation, early stopping) has run when it saves.

    Args:
        directory: checkpoint folder (created).
        callbacks: the other callbacks of the fit; `EarlyStopping` state and any
            `history` list attribute are saved and restored.
        max_to_keep: model/optimizer checkpoints kept.
    """

    def __init__(self, directory, callbacks=(), max_to_keep=2):
        super().__init__()
        self.directory = pathlib.Path(directory)
        self.callbacks = [c for c in callbacks if c is not self]
        self.max_to_keep = int(max_to_keep)
        self.epoch_logs = []  # one dict per finished epoch, resumed epochs included
        self._restored_state = None
        self._manager = None
        self._saved_best = None
        self._chief = True

    # -- state on disk -------------------------------------------------------
    def read_state(self) -> Optional[dict]:
        path = self.directory / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def _write_state(self, state):
        _atomic_write(self.directory / STATE_FILE, lambda tmp: pathlib.Path(tmp).write_text(json.dumps(state)))

    def manager(self, model):
        if self._manager is None:
            ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
            self._manager = tf.train.CheckpointManager(ckpt, str(self.directory), max_to_keep=self.max_to_keep,
                                                       checkpoint_name="epoch")
        return self._manager

    def restore(self, model) -> int:
        """Restores the last finished epoch of an unfinished run; returns the number
        of finished epochs (0: nothing to resume, training starts afresh). Every
        worker of a multi-worker job restores from this (the chief's) folder."""
        self._chief = is_chief(model.distribute_strategy)
        state = self.read_state()
        manager = self.manager(model)
        if not state or state.get("completed") or not manager.latest_checkpoint:
            return 0
        # Deferred restoration: variables not created yet (lazily built layers,
        # optimizer slots) receive their values when they are created.
        manager.checkpoint.restore(manager.latest_checkpoint).expect_partial()
        self._restored_state = state
        self.epoch_logs = list(state.get("epoch_logs", []))
        return int(state["epoch"])

    # -- Keras hooks -----------------------------------------------------------
    def on_train_begin(self, logs=None):
        self._chief = is_chief(self.model.distribute_strategy)
        if self._chief:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.manager(self.model)
        state = self._restored_state
        if state is None:
            return
        # Runs after the other callbacks' on_train_begin, which reset their state.
        for i, cb in enumerate(self.callbacks):
            saved = state["callbacks"].get(str(i))
            if not saved or saved.get("class") != type(cb).__name__:
                continue
            if isinstance(cb, tf.keras.callbacks.EarlyStopping):
                cb.wait, cb.best, cb.stopped_epoch = saved["wait"], saved["best"], saved["stopped_epoch"]
                cb.best_epoch = saved.get("best_epoch", 0)
                best = self.directory / BEST_WEIGHTS_FILE
                if saved.get("has_best_weights") and best.exists():
                    with np.load(best) as f:  # byte strings back to objects (string variables)
                        cb.best_weights = [f[f"w{j}"].astype(object) if f[f"w{j}"].dtype.kind == "S"
                                           else f[f"w{j}"] for j in range(len(f.files))]
                    self._saved_best = cb.best_weights
            if "history" in saved and isinstance(getattr(cb, "history", None), list):
                cb.history[:] = saved["history"]

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_logs.append({k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0})
        if self._chief:
            self.manager(self.model).save(checkpoint_number=epoch + 1)
            self._write_state(self._state(epoch + 1, completed=False))
            return
        # Non-chief: the same save (same collectives, same save counter), thrown away.
        with TempWriteDir() as tmp:
            tf.train.CheckpointManager(self.manager(self.model).checkpoint, tmp, max_to_keep=1,
                                       checkpoint_name="epoch").save(checkpoint_number=epoch + 1)

    def on_train_end(self, logs=None):
        if self.epoch_logs and self._chief:
            self._write_state(self._state(len(self.epoch_logs), completed=True))

    def _state(self, epoch, completed):
        saved = {}
        for i, cb in enumerate(self.callbacks):
            entry = {"class": type(cb).__name__}
            if isinstance(cb, tf.keras.callbacks.EarlyStopping):
                entry.update(wait=int(cb.wait), best=float(cb.best), stopped_epoch=int(cb.stopped_epoch),
                             best_epoch=int(getattr(cb, "best_epoch", 0)),
                             has_best_weights=cb.best_weights is not None)
                if cb.best_weights is not None and cb.best_weights is not self._saved_best:
                    # String variables (catalogue columns) as fixed-width bytes: no pickle.
                    weights = {f"w{j}": np.asarray(w).astype(bytes) if np.asarray(w).dtype == object else w
                               for j, w in enumerate(cb.best_weights)}
                    _atomic_write(self.directory / BEST_WEIGHTS_FILE, lambda tmp: _savez(tmp, weights))
                    self._saved_best = cb.best_weights
            if isinstance(getattr(cb, "history", None), list):
                entry["history"] = _jsonable(cb.history)
            saved[str(i)] = entry
        return {"epoch": int(epoch), "completed": bool(completed), "epoch_logs": self.epoch_logs, "callbacks": saved}


def train(build_model: Callable[[], tf.keras.Model], dataset, *, strategy, epochs: int, optimizer: str = "adagrad",
          learning_rate: float = 0.05, seed: int = 42, verbose: int = 2, log_dir: Optional[str] = None,
          validation_data=None, callbacks=(), checkpoint_dir: Optional[str] = None, resume: bool = True,
          log=print, steps_per_execution: int = 1):
    """Builds the model under `strategy`, compiles and fits it.

    With `checkpoint_dir`, saves a checkpoint after every epoch; with `resume`, an
    unfinished run found there (same folder: use one per config) is restored and
    continues after its last finished epoch, instead of starting again.

    `steps_per_execution` steps run in one call of the compiled training function
    (Keras `compile`): the same updates in the same order, with less per-step
    overhead; callbacks' `on_train_batch_*` then run once per call. It is 1 (logged)
    with more than one replica, where the all-gather of sparse (embedding) gradients
    inside a multi-step call fails ("Shape mismatch in the collective instance"), and for
    a dataset of unknown length (a tf.data service's), which Keras refuses with it.

    Returns (model, history dict over all epochs, resumed ones included, seconds).
    """
    tf.keras.utils.set_random_seed(seed)
    if steps_per_execution > 1 and strategy.num_replicas_in_sync > 1:
        log(f"train: steps_per_execution {steps_per_execution} -> 1 under {strategy.num_replicas_in_sync} replicas "
            "(sparse gradients cannot be all-gathered inside a multi-step call)")
        steps_per_execution = 1
    cardinality = getattr(dataset, "cardinality", None)  # a tf.data.Dataset's; < 0: unknown or infinite
    if steps_per_execution > 1 and (cardinality is None or int(cardinality()) < 0):
        log(f"train: steps_per_execution {steps_per_execution} -> 1 (the dataset's length is not known)")
        steps_per_execution = 1
    with strategy.scope():
        model = build_model()
        model.compile(optimizer=make_optimizer(optimizer, learning_rate), steps_per_execution=steps_per_execution)
    multi_worker = is_multi_worker(strategy)
    if multi_worker:
        # tf-keras's "auto" SUMs the (already all-reduced) metric results over workers
        # under MWMS: a 2-worker job would log twice the loss. Every worker holds the same value.
        model.distribute_reduction_method = "first"
    cbs = list(callbacks)
    initial_epoch = 0
    checkpoint = None
    if checkpoint_dir:
        checkpoint = EpochCheckpoint(checkpoint_dir, cbs)
        if resume:
            with strategy.scope():
                initial_epoch = checkpoint.restore(model)
            if initial_epoch:
                log(f"train: resuming from checkpoint {checkpoint_dir}: epochs 1-{initial_epoch} already finished, "
                    f"continuing at epoch {initial_epoch + 1} of {epochs}")
    if log_dir and is_chief(strategy):  # other workers write nothing but temporary checkpoints
        os.makedirs(log_dir, exist_ok=True)
        cbs.append(tf.keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False, profile_batch=0))
    if checkpoint is not None:
        cbs.append(checkpoint)  # last: saves after validation and early stopping have updated
    start = time.perf_counter()
    try:
        hist = model.fit(dataset, epochs=epochs, verbose=verbose, validation_data=validation_data, callbacks=cbs,
                         initial_epoch=initial_epoch)
    except COLLECTIVE_ERRORS as e:
        if not multi_worker:
            raise
        finished = len(checkpoint.epoch_logs) if checkpoint is not None else 0
        raise worker_lost(e, checkpoint_dir, finished) from e
    history = hist.history
    if checkpoint is not None and initial_epoch:
        # The whole curve: finished epochs from the checkpoint, then this process's.
        keys = set(history) | {k for e in checkpoint.epoch_logs for k in e}
        history = {k: [e.get(k, float("nan")) for e in checkpoint.epoch_logs] for k in keys}
    return model, history, time.perf_counter() - start
