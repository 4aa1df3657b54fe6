"""A training process for the multi-worker tests and bench/scale.py (run with sys.executable).

    python mw_child.py '{"mode": "multi_worker", "out": "w.npz", "ckpt": "ckpt", ...}'

mode: "multi_worker" (cluster from TF_CONFIG, one CPU device per process) or
"mirrored" (MirroredStrategy over `devices` logical CPU devices in this process).
Trains the id two-tower (or, with "model": "hybrid", a small hybrid whose history
encoder reads the item tower's table, `model.history_refresh`) on a small synthetic data
set through `tfrec.training.trainer.train`, then writes its trainable weights to `out`
(the hybrid also its history table, as the key "table").
With env TFREC_TEST_KILL_AT_EPOCH=k, worker 1 dies (os._exit) when epoch k begins,
after epoch k's checkpoint. Exit code 3: a WorkerLostError (message on stderr).
"""
import json
import os
import pathlib
import sys
import time

import tfrec  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrec.data.pipeline import make_dataset  # noqa: E402
from tfrec.data.synthetic import generate  # noqa: E402
from tfrec.models.two_tower import TwoTowerRetrieval  # noqa: E402
from tfrec.training.multi_worker import WorkerLostError  # noqa: E402
from tfrec.training.strategy import make_strategy, split_cpu  # noqa: E402
from tfrec.training.trainer import train  # noqa: E402


class _Die(tf.keras.callbacks.Callback):
    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            print(f"child: worker 1 dies at the start of epoch {epoch + 1}", flush=True)
            os._exit(1)


class _Steps(tf.keras.callbacks.Callback):
    """Per-step wall times (after the first, compile-heavy, step of each epoch)."""

    def __init__(self):
        super().__init__()
        self.times, self._t = [], None

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch > 0:
            self.times.append(time.perf_counter() - self._t)


def features(n_rows, n_users=60, n_items=40, seed=7):
    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_rows, seed=seed)
    ia = data.interactions.iloc[:n_rows]
    return {"user_id": ia["user_id"].astype(str).to_numpy(dtype=object),
            "item_id": ia["item_id"].astype(str).to_numpy(dtype=object)}


def hybrid_parts(args):
    """(model_fn, dataset) of a hybrid (ids, random text, attributes, time, a 4-item
    history read from the table refreshed every 2 steps) on a synthetic world; no
    dropout, so replicas on workers and in one process compute the same thing."""
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))  # the repository, for tests.models
    from tests.models.worlds import synthetic_world
    from tfrec.config import ModelConfig
    from tfrec.models.factory import build_hybrid

    data, split, cat, text, qf = synthetic_world(60, 40, int(args.get("rows", 512)), data_seed=7, split="temporal",
                                                 text_dim=6, history_length=4)
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    cfg = ModelConfig(embedding_dim=int(args.get("dim", 8)), history_refresh=2, id_dropout=0.0, user_id_dropout=0.0,
                      popularity_prior=(0.0,))
    ds = make_dataset(feats, int(args.get("batch", 64)), shuffle=False, seed=0, drop_remainder=True)
    return (lambda: build_hybrid(cfg, cat, data.items, text, qf, seed=0)), ds


def main(args):
    if args["mode"] == "mirrored":
        devices = split_cpu(int(args.get("devices", 2)))
        strategy = make_strategy("mirrored", devices=devices)
    else:
        strategy = make_strategy("multi_worker", collective_timeout_s=float(args.get("timeout", 300)))
    hybrid = args.get("model") == "hybrid"
    if hybrid:
        model_fn, ds = hybrid_parts(args)
    else:
        feats = features(int(args.get("rows", 512)), int(args.get("users", 60)), int(args.get("items", 40)))
        users, items = sorted(set(feats["user_id"])), sorted(set(feats["item_id"]))
        # shuffle=False by default: a resumed run's fresh iterator would restart the seeded
        # shuffle sequence, so only an unshuffled run can match an uninterrupted one.
        ds = make_dataset(feats, int(args.get("batch", 64)), shuffle=bool(args.get("shuffle", False)), seed=0,
                          drop_remainder=True)
        model_fn = lambda: TwoTowerRetrieval(users, items, int(args.get("dim", 8)))  # noqa: E731
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    callbacks = [_Steps()]
    kill_at = os.environ.get("TFREC_TEST_KILL_AT_EPOCH")
    if kill_at and task.get("index") == 1:
        callbacks.append(_Die(int(kill_at)))
    try:
        model, history, secs = train(model_fn, ds, strategy=strategy, epochs=int(args.get("epochs", 2)),
                                     optimizer="adam" if hybrid else "adagrad", learning_rate=0.01 if hybrid else 0.1,
                                     seed=0, verbose=0, callbacks=callbacks,
                                     checkpoint_dir=args.get("ckpt"), log_dir=args.get("log_dir"),
                                     log=lambda *a: print(*a, flush=True))
    except WorkerLostError as e:
        print(f"child: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    weights = {f"w{i}": v.numpy() for i, v in enumerate(model.trainable_variables)}
    if hybrid:
        weights["table"] = model._history_table.table.read_value().numpy()  # this worker's (first replica's) copy
    out = args.get("out")
    if out:
        np.savez(out, **weights)
    summary = {"replicas": strategy.num_replicas_in_sync, "seconds": secs, "loss": history["mean_batch_loss"],
               "step_times": callbacks[0].times}
    print("child-result " + json.dumps(summary), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
