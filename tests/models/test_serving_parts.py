import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.data.pipeline import make_dataset
from tfrec.data.splits import make_split
from tfrec.data.synthetic import generate
from tfrec.features.catalogue import Catalogue
from tfrec.features.query_features import QueryFeatures
from tfrec.models.factory import build_hybrid
from tfrec.models.serving import hybrid_serving_parts
from tfrec.text.cache import encode_texts
from tfrec.text.encoder import BertTextEncoder
from tfrec.text.template import item_texts, template_fields


@pytest.fixture(scope="module")
def parts():
    data = generate(n_users=50, n_items=40, n_interactions=1500, seed=7)
    users = data.users.copy()
    users["zip_code"] = [f"{10000 + 37 * i}" for i in range(len(users))]  # raw 5-digit zips
    split = make_split(data.interactions, "temporal")
    cat = Catalogue.fit(data.items, split.train, data.interactions, users)
    enc = BertTextEncoder("tiny", sequence_length=16)
    text = encode_texts(enc, item_texts(data.items), progress=False)
    qf = QueryFeatures.fit(split.train, users, 4)
    tf.keras.utils.set_random_seed(0)
    model = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, text, qf)
    model.compile(tf.keras.optimizers.Adam(0.01))
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    model.fit(make_dataset(feats, 128), epochs=1, verbose=0)
    return data, users, split, qf, model, enc, hybrid_serving_parts(model, qf, data.items, enc)


def test_encode_items_from_raw_fields_equals_the_catalogue_embedding(parts):
    data, _, _, _, model, _, (_, _, item_encoder, item_spec) = parts
    items = data.items.iloc[:6]
    raw = {}
    for name, spec in item_spec.items():
        col = items[name]
        raw[name] = tf.constant(col.astype(str).tolist() if spec.dtype == tf.string else col.astype(np.float32).to_numpy())
    got = item_encoder(raw).numpy()
    want = model.item_embeddings(tf.constant(items["item_id"].astype(str).tolist())).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert set(template_fields(None, data.items.columns)) <= set(item_spec)


def test_query_model_takes_raw_values_and_any_history_length(parts):
    data, users, split, qf, model, _, (query_model, spec, _, _) = parts
    ev = split.test.head(5).reset_index(drop=True)
    built = qf.build(ev, context=split.train)  # padded to 4, raw zip codes from the users table
    want = model.query_embedding({k: tf.constant(v) for k, v in built.items()}, training=False).numpy()
    # A request may send more history than the model reads (older items are dropped) ...
    longer = np.concatenate([np.full((5, 3), "i0", dtype=object), built["history"]], axis=1)
    got = query_model({**{k: tf.constant(v) for k, v in built.items()}, "history": tf.constant(longer)}).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert set(spec) == set(built) and spec["history"].shape.as_list() == [None, None]
    # ... and the zip prefix is cut in-graph: zips sharing their first 2 digits look the same.
    a = dict(built, zip_code=np.array(["10037"] * 5, dtype=object))
    b = dict(built, zip_code=np.array(["10999"] * 5, dtype=object))
    ea = query_model({k: tf.constant(v) for k, v in a.items()}).numpy()
    eb = query_model({k: tf.constant(v) for k, v in b.items()}).numpy()
    np.testing.assert_allclose(ea, eb, atol=1e-6)


def test_scorer_uses_a_given_history_exactly_like_a_built_one(parts):
    from tfrec.models.scoring import HybridScorer

    data, users, split, qf, model, _, _ = parts
    scorer = HybridScorer(model, qf, split.train, data.items["item_id"])
    ev = split.test.head(6).reset_index(drop=True)[["user_id", "timestamp"]]
    built = scorer.query_embeddings(ev)
    hist = qf.build(ev, context=split.train)["history"]
    given = ev.assign(history=[[h for h in row if h] for row in hist])  # unpadded, as protocols give it
    np.testing.assert_allclose(scorer.query_embeddings(given), built, atol=1e-6)
    assert scorer.score_queries(given).shape == (6, len(data.items))


def test_encode_items_places_new_items_through_their_nearest_trained_items(parts):
    """With `set_cold_neighbours`, a new item sent to `encode_items` gets the mixed vector
    the model gives an untrained catalogue item with the same text and attributes."""
    data, _, _, qf, model, enc, _ = parts
    items = data.items.iloc[:4]
    new_ids = [f"new-{i}" for i in range(len(items))]
    plain = hybrid_serving_parts(model, qf, data.items, enc)[2]
    model.set_cold_neighbours(k=5, temperature=0.1, category_weight=0.5, content_weight=0.0)
    try:
        _, _, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, enc)
        raw = {}
        for name, spec in item_spec.items():
            col = pd.Series(new_ids) if name == "item_id" else items[name]
            raw[name] = tf.constant(col.astype(str).tolist() if spec.dtype == tf.string
                                    else col.astype(np.float32).to_numpy())
        got = item_encoder(raw).numpy()[:, :model.item_tower.output_dim]  # (the prior's column: 0 for new items)
        # The same items through the catalogue lookup, ids unknown to the tower (OOV).
        ids = tf.constant(items["item_id"].astype(str).tolist())
        feats = {**model.lookup(ids), "item_id": tf.constant(new_ids)}
        own = model.item_tower(feats)
        want = model.cold_neighbours(model.item_tower, tf.constant(new_ids), feats, own).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        assert not np.allclose(got, plain(raw).numpy()[:, :got.shape[1]], atol=1e-3)  # the mix is applied
        trained = model.item_vectors(ids).numpy()  # catalogue items keep their own vectors
        np.testing.assert_allclose(trained, model.item_tower({**model.lookup(ids), "item_id": ids}).numpy(),
                                   atol=1e-6)
    finally:
        model.set_cold_neighbours()


def test_with_cold_neighbours_follows_the_config_and_skips_what_it_cannot_place(parts):
    from tfrec.cli.retrieval_stage import with_cold_neighbours

    model = parts[4]
    lines = []
    try:
        with_cold_neighbours(model, ModelConfig(), lines.append)  # default: off
        assert model.cold_neighbours is None and not lines
        with_cold_neighbours(model, ModelConfig(cold_neighbours=7), lines.append)
        assert model.cold_neighbours.k == 7 and "nearest trained items" in lines[-1]
    finally:
        model.set_cold_neighbours()


def test_a_saved_model_with_cold_neighbours_serves_the_placement_after_reloading(parts, tmp_path):
    from tfrec.export.retrieval import export_retrieval

    data, _, _, qf, model, enc, _ = parts
    model.set_cold_neighbours(k=5, temperature=0.1, category_weight=0.5, content_weight=0.0)
    try:
        query_model, spec, item_encoder, item_spec = hybrid_serving_parts(model, qf, data.items, enc)
        ids = data.items["item_id"].astype(str).tolist()
        path = export_retrieval(query_model, spec, ids, model.item_embeddings(tf.constant(ids)).numpy(),
                                item_encoder=item_encoder, item_encoder_spec=item_spec, root=tmp_path, name="cold",
                                k=5)
        items = data.items.iloc[:3]
        raw = {}
        for name, s in item_spec.items():
            col = pd.Series([f"new-{i}" for i in range(3)]) if name == "item_id" else items[name]
            raw[name] = tf.constant(col.astype(str).tolist() if s.dtype == tf.string
                                    else col.astype(np.float32).to_numpy())
        want = item_encoder(raw).numpy()
        got = tf.saved_model.load(path).signatures["encode_items"](**raw)["embedding"].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
        model.set_cold_neighbours()
        tower_only = hybrid_serving_parts(model, qf, data.items, enc)[2](raw).numpy()
        assert np.abs(got - tower_only).max() > 1e-3  # the placement, not the bare tower, was exported
    finally:
        model.set_cold_neighbours()
