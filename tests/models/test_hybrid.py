import json

import numpy as np
import pytest
import tensorflow as tf

from tests.models.worlds import seeded_hybrid, synthetic_world
from tests.two_devices import run_on_two_cpus
from tfrec.models.catalogue_lookup import CatalogueLookup
from tfrec.models.id_tower import IdTower
from tfrec.models.item_tower import ItemTower
from tfrec.models.query_tower import QueryTower
from tfrec.models.sequence_encoder import SequenceEncoder
from tfrec.text.adapter import Keras3Adapter


def _roundtrip(layer):
    cfg = json.loads(json.dumps(tf.keras.layers.serialize(layer)))
    objs = {c.__name__: c for c in (IdTower, ItemTower, QueryTower, SequenceEncoder, CatalogueLookup, Keras3Adapter)}
    clone = tf.keras.layers.deserialize(cfg, custom_objects=objs)
    assert clone.get_config() == layer.get_config()
    return clone


def test_keras_json_round_trip_of_public_layers():
    import keras_hub

    _roundtrip(IdTower(["a", "b"], 4))
    _roundtrip(ItemTower(["a"], output_dim=4, id_dim=4, categorical={"genres": ["x", "y"]}, numeric=["year"]))
    _roundtrip(QueryTower(["u"], output_dim=4, id_dim=4, categorical={"gender": ["M", "F"]}, numeric={"age": [18.0]}))
    for kind in ("mean", "gru", "sasrec"):
        _roundtrip(SequenceEncoder(kind, output_dim=4))
    clone = _roundtrip(CatalogueLookup(["1", "2"], {"year": np.array([0.5, -1.0], np.float32),
                                                    "genres": np.array(["A|B", "C"], object),
                                                    "sub-genre": np.array(["x", "y"], object)}))  # any column name
    out = clone(tf.constant(["2", "nope"]))
    assert out["year"].numpy().tolist() == [-1.0, 0.0] and out["genres"].numpy().tolist() == [b"C", b""]
    assert out["sub-genre"].numpy().tolist() == [b"y", b""]
    rows = clone.by_row(tf.constant([1, 2]))  # row 1 = "2", row 2 = the unknown row
    assert rows["year"].numpy().tolist() == [-1.0, 0.0] and rows["genres"].numpy().tolist() == [b"C", b""]
    bb = keras_hub.models.BertBackbone(vocabulary_size=20, num_layers=1, num_heads=1, hidden_dim=4,
                                       intermediate_dim=8, max_sequence_length=8)
    _roundtrip(Keras3Adapter(bb))


def test_mean_encoder_is_the_masked_mean_and_empty_history_is_zero():
    enc = SequenceEncoder("mean", output_dim=3)
    rng = np.random.default_rng(0)
    items = rng.normal(size=(3, 4, 5)).astype(np.float32)
    mask = np.array([[0, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]], bool)
    out = enc(tf.constant(items), tf.constant(mask)).numpy()
    proj = enc.project(tf.constant(items)).numpy()  # (3, 4, 3)
    np.testing.assert_allclose(out[0], proj[0, 1:].mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[1], proj[1, 3], rtol=1e-5, atol=1e-6)
    assert np.all(out[2] == 0) and np.isfinite(out).all()


@pytest.mark.parametrize("kind", ["gru", "sasrec"])
def test_padding_content_never_changes_the_encoding(kind):
    enc = SequenceEncoder(kind, output_dim=4, dropout=0.0)
    rng = np.random.default_rng(1)
    items = rng.normal(size=(2, 5, 4)).astype(np.float32)
    mask = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]], bool)
    a = enc(tf.constant(items), tf.constant(mask)).numpy()
    items2 = items.copy()
    items2[:, :2] = 99.0  # garbage in the padded slots
    b = enc(tf.constant(items2), tf.constant(mask)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.all(a[1] == 0)


def test_sasrec_is_causal_over_its_last_position_only_through_the_past():
    enc = SequenceEncoder("sasrec", output_dim=4, dropout=0.0)
    rng = np.random.default_rng(2)
    items = rng.normal(size=(1, 4, 4)).astype(np.float32)
    mask = np.ones((1, 4), bool)
    full = enc(tf.constant(items), tf.constant(mask)).numpy()
    changed = items.copy()
    changed[0, 0] += 1.0  # an older item matters for the newest position
    assert not np.allclose(enc(tf.constant(changed), tf.constant(mask)).numpy(), full)


@pytest.fixture(scope="module")
def small():
    return synthetic_world(120, 80, 4000, data_seed=3, split="temporal", text_dim=8, history_length=5,
                           val_fraction=0.1, test_fraction=0.1)


def _model(small, **kw):
    return seeded_hybrid(small, **kw)


def test_item_embeddings_per_distinct_id_equal_the_tower_row_by_row(small):
    model = _model(small)
    ids = np.array([["i1", "i2", "i1"], ["", "i3", "unknown"]], dtype=object)
    got = model.item_embeddings(tf.constant(ids)).numpy()  # (2, 3, 8)
    for r in range(2):
        for c in range(3):
            want = model._tower_on_ids(tf.constant([ids[r, c]])).numpy()[0]
            np.testing.assert_allclose(got[r, c], want, rtol=1e-5, atol=1e-6)


def test_training_lowers_the_loss_and_handles_empty_histories(small):
    from tfrec.data.pipeline import make_dataset

    data, split, cat, text, qf = small
    model = _model(small, num_random_negatives=16, sequence="gru")
    model.compile(tf.keras.optimizers.Adam(0.01))
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    assert (feats["history"] == "").all(axis=1).any()  # first events: empty histories
    hist = model.fit(make_dataset(feats, 256, seed=0), epochs=4, verbose=0).history["mean_batch_loss"]
    assert hist[-1] < hist[0] and np.isfinite(hist).all()


@pytest.mark.slow
def test_bert_hybrid_trains_under_mirrored_strategy_on_two_logical_devices():
    out = run_on_two_cpus("""
        import numpy as np, tensorflow as tf
        from tfrec.config import ModelConfig
        from tfrec.data.pipeline import make_dataset
        from tfrec.data.splits import make_split
        from tfrec.data.synthetic import generate
        from tfrec.features.catalogue import Catalogue
        from tfrec.features.query_features import QueryFeatures
        from tfrec.models.factory import build_hybrid
        from tfrec.text.cache import encode_texts
        from tfrec.text.encoder import BertTextEncoder
        from tfrec.text.template import item_texts
        data = generate(n_users=60, n_items=40, n_interactions=1500, seed=1)
        split = make_split(data.interactions, "temporal")
        cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
        text = encode_texts(BertTextEncoder("tiny", sequence_length=16), item_texts(data.items), progress=False)
        qf = QueryFeatures.fit(split.train, data.users, 5)
        feats = qf.build(split.train, context=split.train)
        feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            model = build_hybrid(ModelConfig(embedding_dim=8, sequence="sasrec"), cat, data.items, text, qf)
            model.compile(tf.keras.optimizers.Adam(0.01))
            model.item_embeddings(tf.constant(cat.item_ids[:2].astype(str)))  # builds the item tower in scope
        w = model.item_tower.fuse.trainable_weights[0]
        before = w.numpy().copy()
        h = model.fit(make_dataset(feats, 128, seed=0), epochs=2, verbose=0).history["loss"]
        print("REPLICAS", strategy.num_replicas_in_sync, "MIRRORED", type(w).__name__,
              "CHANGED", not np.allclose(before, w.numpy()), "FINITE", bool(np.isfinite(h).all()))
    """)
    assert "REPLICAS 2 MIRRORED MirroredVariable CHANGED True FINITE True" in out


def test_history_negative_loss_matches_a_hand_computed_softmax():
    import tfrec.models.hybrid as hybrid

    m = hybrid.HybridRetrieval.__new__(hybrid.HybridRetrieval)
    m.temperature, m._repeat_raw = 0.5, None  # no repeat penalty (tests/models/test_repeat_penalty.py)
    q = np.array([[1.0, 0.0]], np.float32)
    pos = np.array([[0.8, 0.6]], np.float32)
    hist = np.array([[[0.0, 1.0], [1.0, 0.0], [0.6, 0.8]]], np.float32)
    ids = np.array([["a", "", "p"]], object)  # padding and the positive itself are skipped
    got = float(hybrid.HybridRetrieval._history_negative_loss(m, tf.constant(q), tf.constant(pos), tf.constant(hist),
                                                              tf.constant(ids), tf.constant(["p"])))
    # Only history item "a" counts: logits pos = 0.8 / 0.5 = 1.6, neg = 0 / 0.5 = 0.
    want = -np.log(np.exp(1.6) / (np.exp(1.6) + np.exp(0.0)))
    assert got == pytest.approx(want, rel=1e-5)


def test_a_query_tower_without_inputs_is_a_config_error(small):
    from tfrec.errors import ConfigError

    with pytest.raises(ConfigError, match="The query tower has no input"):
        _model(small, use_id=False, use_attributes=False, use_context=False, use_history=False)
