"""`model.history_refresh`: in training the history encoder reads a table of the item
tower's vectors refreshed every K steps, without gradient (tfrec.models.history_table)."""

import numpy as np
import pytest
import tensorflow as tf

from tests.models.worlds import seeded_hybrid, synthetic_world
from tests.two_devices import run_on_two_cpus
from tfrec.config import ModelConfig
from tfrec.errors import ConfigError


@pytest.fixture(scope="module")
def world():
    return synthetic_world(80, 40, 2500, data_seed=4, split="temporal", text_dim=6, history_length=4)


def _batch(world, n=96):
    _, split, _, _, qf = world
    part = split.train.iloc[-n:]
    feats = qf.build(part, context=split.train)
    feats["item_id"] = part["item_id"].astype(str).to_numpy(dtype=object)
    return feats


def _tensors(feats):
    return {k: tf.constant(v) for k, v in feats.items()}


def _catalogue_vectors(model):
    """The reference: each catalogue item through the tower alone (inference mode), then zeros."""
    ids = model.lookup.item_ids
    rows = [model._tower_on_ids(tf.constant([i])).numpy()[0] for i in ids]
    return np.vstack(rows + [np.zeros(model.item_tower.output_dim, np.float32)])


def test_the_table_is_every_items_tower_vector_refreshed_every_k_steps(world):
    model = seeded_hybrid(world, history_refresh=3)
    table = model._history_table
    first = table().numpy()  # step 0: filled
    np.testing.assert_allclose(first, _catalogue_vectors(model), rtol=1e-5, atol=1e-6)
    fuse = model.item_tower.fuse.trainable_weights[0]
    fuse.assign(fuse * 1.5 + 0.1)  # the tower moves, as an optimizer step would move it
    moved = _catalogue_vectors(model)
    assert not np.allclose(first, moved, atol=1e-3)
    np.testing.assert_array_equal(table().numpy(), first)  # steps 1 and 2: the table as it was
    np.testing.assert_array_equal(table().numpy(), first)
    np.testing.assert_allclose(table().numpy(), moved, rtol=1e-5, atol=1e-6)  # step 3: refreshed


@pytest.mark.parametrize("sequence,as_rows", [("mean", False), ("gru", False), ("mean", True), ("gru", True)])
def test_a_fresh_table_gives_the_loss_of_the_towers_own_pass(world, sequence, as_rows):
    # Without dropout the tower's training and inference outputs agree, so at step 0 (the
    # table just filled) the table path's loss equals the per-batch pass's, for batches
    # of string ids and of catalogue rows (as `tfrec run` feeds them).
    from tfrec.models.hybrid import catalogue_rows

    kw = dict(sequence=sequence, id_dropout=0.0, user_id_dropout=0.0)
    feats = _batch(world)
    batch = _tensors(catalogue_rows(feats, world[2].item_ids) if as_rows else feats)
    want = float(seeded_hybrid(world, history_refresh=0, **kw).compute_loss(batch, training=True))
    got = float(seeded_hybrid(world, history_refresh=5, **kw).compute_loss(batch, training=True))
    assert got == pytest.approx(want, rel=1e-5)


def test_history_items_get_no_gradient_through_the_table(world):
    feats = _batch(world)
    hist_only = sorted(set(feats["history"].ravel()) - set(feats["item_id"]) - {""})
    assert hist_only  # items that are only in some query's history, never a candidate of this batch
    batch = _tensors(feats)

    def id_gradient_rows(model):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(batch, training=True)
        emb = model.item_tower.ids.embedding.embeddings
        grad = tf.convert_to_tensor(tape.gradient(loss, emb)).numpy()
        rows = model.item_tower.ids.lookup(tf.constant(hist_only)).numpy()
        return np.abs(grad[rows]).sum(axis=1)

    kw = dict(id_dropout=0.0, user_id_dropout=0.0)
    assert (id_gradient_rows(seeded_hybrid(world, history_refresh=0, **kw)) > 0).all()
    np.testing.assert_array_equal(id_gradient_rows(seeded_hybrid(world, history_refresh=2, **kw)), 0.0)


def test_the_table_is_a_cache_not_a_weight(world):
    with_table = seeded_hybrid(world, history_refresh=4)
    without = seeded_hybrid(world, history_refresh=0)
    assert with_table._history_table is not None and without._history_table is None
    batch = _tensors(_batch(world))
    for model in (with_table, without):
        model.compute_loss(batch, training=True)  # builds the weights (and fills the table)
    shapes = [tuple(v.shape) for v in with_table.variables]
    assert [tuple(v.shape) for v in without.variables] == shapes  # the same weights, checkpoints and exports
    assert not any("history_table" in v.name for v in with_table.variables)


def test_a_negative_refresh_is_a_config_error():
    with pytest.raises(ConfigError, match="history_refresh"):
        ModelConfig(history_refresh=-1)


@pytest.mark.slow
def test_each_replica_refreshes_its_own_table_under_mirrored_strategy():
    out = run_on_two_cpus("""
        import numpy as np, tensorflow as tf
        from tests.models.worlds import synthetic_world
        from tfrec.config import ModelConfig
        from tfrec.data.pipeline import make_dataset
        from tfrec.models.factory import build_hybrid
        data, split, cat, text, qf = synthetic_world(80, 40, 2500, data_seed=4, split="temporal", text_dim=6,
                                                     history_length=4)
        feats = qf.build(split.train, context=split.train)
        feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            model = build_hybrid(ModelConfig(embedding_dim=8, history_refresh=3), cat, data.items, text, qf)
            model.compile(tf.keras.optimizers.Adam(0.01))
        h = model.fit(make_dataset(feats, 128, seed=0), epochs=2, verbose=0).history["loss"]
        copies = [v.numpy() for v in model._history_table.table.values]
        steps = [int(v.numpy()) for v in model._history_table.step.values]
        print("COPIES", len(copies), "STEPS", steps, "FILLED", all(np.abs(c[:-1]).sum() > 0 for c in copies),
              "EQUAL", bool(np.allclose(copies[0], copies[1], atol=1e-6)), "FINITE", bool(np.isfinite(h).all()))
    """)
    line = out.strip().splitlines()[-1]
    steps = [int(s) for s in line.split("STEPS [")[1].split("]")[0].split(",")]
    assert line.startswith("COPIES 2") and steps[0] == steps[1] > 3, line  # every replica counted every step
    assert "FILLED True EQUAL True FINITE True" in line, line
