"""Checkpoints with resume: a run killed after epoch k and restarted on the same
checkpoint folder ends where an uninterrupted run ends, without redoing epochs."""
import json

import numpy as np
import pytest
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.data.pipeline import make_dataset
from tfrec.data.splits import make_split
from tfrec.data.synthetic import generate
from tfrec.features.catalogue import Catalogue
from tfrec.features.query_features import QueryFeatures
from tfrec.models.factory import build_hybrid
from tfrec.models.scoring import FullCatalogueValidation
from tfrec.training.trainer import STATE_FILE, train

EPOCHS, KILLED_AT = 4, 2  # the interrupted run dies at the start of its 3rd epoch (index 2)


class _Killed(Exception):
    pass


class _Epochs(tf.keras.callbacks.Callback):
    """Records the epochs a fit runs; raises at the start of epoch `kill_at`."""

    def __init__(self, kill_at=None):
        super().__init__()
        self.kill_at, self.started = kill_at, []

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.kill_at:
            raise _Killed(f"killed at epoch {epoch}")
        self.started.append(epoch)


@pytest.fixture(scope="module")
def setup():
    data = generate(n_users=40, n_items=30, n_interactions=900, seed=11)
    split = make_split(data.interactions, "temporal")
    cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
    qf = QueryFeatures.fit(split.train, data.users, 4)
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    text = np.random.default_rng(0).normal(size=(cat.n_items, 8)).astype(np.float32)
    # No randomness inside training (no shuffling, no id dropout), so an interrupted
    # and resumed run must reproduce the uninterrupted one.
    ds = make_dataset(feats, 128, shuffle=False, drop_remainder=True)
    cfg = ModelConfig(embedding_dim=8, id_dropout=0.0, user_id_dropout=0.0)
    return data, split, cat, qf, text, ds, cfg


def _run(setup, ckpt_dir, kill_at=None, log=print):
    data, split, cat, qf, text, ds, cfg = setup
    validation = FullCatalogueValidation(qf, split.train, split.val, cat, k=10, log=lambda *a: None)
    # Patience above the epochs: early stopping keeps counting, never stops.
    stopping = tf.keras.callbacks.EarlyStopping(monitor="val_recall@10", mode="max", patience=EPOCHS + 1,
                                                restore_best_weights=True)
    epochs = _Epochs(kill_at)
    model, history, _ = train(lambda: build_hybrid(cfg, cat, data.items, text, qf, seed=0), ds,
                              strategy=tf.distribute.get_strategy(), epochs=EPOCHS, optimizer="adam",
                              learning_rate=0.02, seed=0, verbose=0, callbacks=[validation, stopping, epochs],
                              checkpoint_dir=str(ckpt_dir), log=log)
    return model, history, validation, stopping, epochs


def test_an_interrupted_run_resumes_after_its_last_finished_epoch(setup, tmp_path):
    ref_model, ref_hist, ref_val, ref_stop, ref_epochs = _run(setup, tmp_path / "uninterrupted")
    assert ref_epochs.started == list(range(EPOCHS))

    with pytest.raises(_Killed):
        _run(setup, tmp_path / "resumed", kill_at=KILLED_AT)
    state = json.loads((tmp_path / "resumed" / STATE_FILE).read_text())
    assert state["epoch"] == KILLED_AT and not state["completed"]

    lines = []
    model, hist, val, stop, epochs = _run(setup, tmp_path / "resumed", log=lines.append)
    assert epochs.started == list(range(KILLED_AT, EPOCHS))  # finished epochs are not redone
    assert any(f"resuming from checkpoint" in line and f"epochs 1-{KILLED_AT} already finished" in line
               and f"continuing at epoch {KILLED_AT + 1} of {EPOCHS}" in line for line in lines), lines

    # Same final weights (model, and the optimizer state that produced them). Tolerance:
    # float32 training on 2 threads; the runs differ by nothing but the restart.
    names = [v.name for v in ref_model.trainable_variables]  # Keras numbers repeated layer names: shapes
    assert [v.shape for v in ref_model.trainable_variables] == [v.shape for v in model.trainable_variables]
    assert len(names) > 10
    for a, b in zip(ref_model.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5, err_msg=a.name)
    ref_slots, slots = ref_model.optimizer.variables(), model.optimizer.variables()  # step count, Adam moments
    assert len(slots) == len(ref_slots) == 1 + 2 * len(names)
    for a, b in zip(ref_slots, slots):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6, err_msg=a.name)
    # Callback state: validation history and early-stopping counters carried over.
    assert [h["epoch"] for h in val.history] == list(range(1, EPOCHS + 1))
    np.testing.assert_allclose([h["val_recall@10"] for h in val.history],
                               [h["val_recall@10"] for h in ref_val.history], atol=1e-6)
    assert (stop.best, stop.wait, stop.best_epoch) == pytest.approx((ref_stop.best, ref_stop.wait, ref_stop.best_epoch))
    # The returned history covers every epoch, the resumed ones included.
    assert len(hist["mean_batch_loss"]) == EPOCHS
    np.testing.assert_allclose(hist["mean_batch_loss"], ref_hist["mean_batch_loss"], rtol=1e-4)

    # A finished run is not resumed: the same folder trains afresh.
    lines.clear()
    _, _, _, _, again = _run(setup, tmp_path / "resumed", log=lines.append)
    assert again.started == list(range(EPOCHS)) and not any("resuming" in line for line in lines)
