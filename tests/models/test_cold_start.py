"""Cold-start items: the content-only auxiliary loss, cold items' ids, and the
validation-cold split used to tune for them."""
import numpy as np
import pytest
import tensorflow as tf

from tests.models.worlds import seeded_hybrid, synthetic_world
from tfrec.data.splits import validation_cold_split
from tfrec.errors import ConfigError, DataError
from tfrec.models.item_tower import OOV_ID, ItemTower


@pytest.fixture(scope="module")
def cold():
    return synthetic_world(60, 40, 1500, data_seed=5, split="cold_items", text_dim=6, history_length=4,
                           cold_item_fraction=0.2, seed=1)


def _model(cold, **kw):
    return seeded_hybrid(cold, **kw)


def _batch(cold, n=32):
    data, split, cat, text, qf = cold
    part = split.train.iloc[:n]
    feats = qf.build(part, context=split.train)
    feats["item_id"] = part["item_id"].astype(str).to_numpy(dtype=object)
    return {k: tf.constant(v) for k, v in feats.items()}


def _numpy_in_batch_loss(q, c, log_q, ids, temperature):
    """Naive reference: for each query i, -log softmax_i over the batch's candidates,
    logits q_i . c_j / T - log Q(j), other copies of i's positive removed."""
    total = 0.0
    for i in range(len(q)):
        keep = [j for j in range(len(c)) if j == i or ids[j] != ids[i]]
        logits = np.array([q[i] @ c[j] / temperature - log_q[j] for j in keep], np.float64)
        total += np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[keep.index(i)]
    return total


def test_content_loss_is_the_retrieval_loss_over_cold_embedded_candidates(cold):
    data, split, cat, text, qf = cold
    feats = _batch(cold)
    with_content = _model(cold, content_loss_weight=0.7)
    got = float(with_content.compute_loss(feats, training=False))
    with_content.content_loss_weight = 0.0  # the same weights without the auxiliary loss
    base = float(with_content.compute_loss(feats, training=False))

    # Independent pieces: the query vectors, and the candidates embedded through the
    # item tower with an id no vocabulary holds (how a cold item is embedded).
    q = with_content.query_embedding(feats).numpy()  # (32, 8)
    ids = feats["item_id"].numpy()
    unseen = tf.constant(["never-seen-item"] * len(ids))
    looked_up = with_content.lookup(feats["item_id"])
    c_full = with_content.item_tower({**looked_up, "item_id": feats["item_id"]}).numpy()
    c_cold = with_content.item_tower({**looked_up, "item_id": unseen}).numpy()
    counts = np.asarray(cat.item_vocab.counts, np.float64)
    logp = dict(zip(cat.item_vocab.values, np.log(counts / counts.sum())))
    log_q = np.clip([logp[i.decode()] for i in ids], np.log(1e-6), 0.0)
    want_base = _numpy_in_batch_loss(q, c_full, log_q, ids, 0.05)
    want_content = _numpy_in_batch_loss(q, c_cold, log_q, ids, 0.05)
    assert base == pytest.approx(want_base, rel=1e-4)
    assert got == pytest.approx(want_base + 0.7 * want_content, rel=1e-4)
    assert want_content != pytest.approx(want_base, rel=1e-3)  # the two losses do differ


def test_training_with_the_content_loss_and_random_negatives_lowers_the_loss(cold):
    from tfrec.data.pipeline import make_dataset

    data, split, cat, text, qf = cold
    model = _model(cold, content_loss_weight=1.0, num_random_negatives=8)
    model.compile(tf.keras.optimizers.Adam(0.01))
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    hist = model.fit(make_dataset(feats, 128, seed=0), epochs=3, verbose=0).history["mean_batch_loss"]
    assert hist[-1] < hist[0] and np.isfinite(hist).all()


def test_cold_items_get_no_trained_id_only_the_shared_oov_row(cold):
    data, split, cat, text, qf = cold
    model = _model(cold, content_loss_weight=1.0)
    tower = model.item_tower
    cold_ids = [str(i) for i in split.cold_items]
    assert cold_ids and not set(cold_ids) & set(tower.item_vocabulary)  # no row was ever made for them
    oov_row = int(tower.ids.lookup(tf.constant([OOV_ID]))[0])
    assert [int(i) for i in tower.ids.lookup(tf.constant(cold_ids))] == [oov_row] * len(cold_ids)
    assert oov_row not in [int(i) for i in tower.ids.lookup(tf.constant(tower.item_vocabulary))]
    # Their embedding is their content path: the same as the content-only output.
    feats = model.lookup(tf.constant(cold_ids))
    full, content = tower({**feats, "item_id": tf.constant(cold_ids)}, with_content=True)
    np.testing.assert_allclose(full.numpy(), content.numpy(), rtol=1e-6, atol=1e-7)


def test_with_content_replaces_only_the_id():
    tower = ItemTower(["a", "b"], output_dim=4, id_dim=4, categorical={"genres": ["x", "y"]}, numeric=["year"],
                      id_dropout=0.0)
    feats = {"item_id": tf.constant(["a", "b"]), "text_embedding": tf.constant(np.eye(2, 3, dtype=np.float32)),
             "genres": tf.constant(["x", "x|y"]), "year": tf.constant([0.5, -1.0])}
    full, content = tower(feats, with_content=True)
    np.testing.assert_allclose(full.numpy(), tower(feats).numpy(), rtol=1e-6)
    np.testing.assert_allclose(content.numpy(), tower({**feats, "item_id": tf.constant(["zz", "q"])}).numpy(),
                               rtol=1e-6)
    assert not np.allclose(full.numpy(), content.numpy())


def test_content_loss_weight_errors(cold):
    with pytest.raises(ConfigError, match="`model.content_loss_weight` must be >= 0"):
        _model(cold, content_loss_weight=-1.0)
    with pytest.raises(ConfigError, match="needs `model.use_id=true`"):
        _model(cold, content_loss_weight=1.0, use_id=False)


def test_validation_cold_split_holds_out_train_items_and_never_test_cold_items(cold):
    data, split, cat, text, qf = cold
    v = validation_cold_split(split, fraction=0.25, seed=3)
    vc = set(v.cold_items)
    assert vc and vc <= set(split.train["item_id"])
    assert not vc & set(split.cold_items)
    assert not vc & (set(v.train["item_id"]) | set(v.val["item_id"]))
    assert not set(split.cold_items) & (set(v.train["item_id"]) | set(v.val["item_id"]) | set(v.test["item_id"]))
    # Every train/val interaction lands in exactly one part.
    assert len(v.train) + len(v.val) + len(v.test) == len(split.train) + len(split.val)
    assert set(v.test["item_id"]) == vc
    assert len(vc) == round(split.train["item_id"].nunique() * 0.25)
    with pytest.raises(DataError, match="must be in \\(0, 1\\)"):
        validation_cold_split(split, fraction=1.0)


def test_cold_queries_give_every_model_the_same_information():
    import pandas as pd

    from tfrec.data.splits import Split
    from tfrec.evaluation.cold_start import cold_queries

    # u1: known at t=1, 5, 9; first cold event at t=4. u2: no known event; cold at t=7.
    train = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["a", "b"], "timestamp": [1, 5]})
    val = pd.DataFrame({"user_id": ["u1"], "item_id": ["c"], "timestamp": [9]})
    test = pd.DataFrame({"user_id": ["u1", "u1", "u2", "u1"], "item_id": ["x", "y", "x", "d"],
                         "timestamp": [4, 8, 7, 10]})
    split = Split(train, val, test, "cold_items", {}, cold_items=np.array(["x", "y"], object))
    events, seen = cold_queries(split, "known")
    assert dict(zip(events["user_id"], events["timestamp"])) == {"u1": 10, "u2": 7}  # after the last known event
    assert sorted(seen["item_id"]) == ["a", "b", "c"]
    events, seen = cold_queries(split, "before_first_cold")
    assert dict(zip(events["user_id"], events["timestamp"])) == {"u1": 4, "u2": 7}
    assert sorted(seen["item_id"]) == ["a"]  # only what precedes t=4
    with pytest.raises(ConfigError, match="`information` must be one of"):
        cold_queries(split, "everything")
