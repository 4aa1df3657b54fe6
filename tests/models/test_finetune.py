"""Fine-tuning modes of the hybrid model's text tower, and the exactness of the
training-loss rewrites (checked against TFRS and the previous formulation)."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tests.two_devices import run_on_two_cpus
from tfrec.config import ModelConfig, TextConfig
from tfrec.data.pipeline import make_dataset
from tfrec.data.splits import make_split
from tfrec.data.synthetic import generate
from tfrec.errors import ConfigError
from tfrec.features.catalogue import Catalogue
from tfrec.features.query_features import QueryFeatures
from tfrec.models.factory import build_hybrid
from tfrec.models.losses import in_batch_softmax_loss, softmax_cross_entropy_sum
from tfrec.models.sequence_encoder import SequenceEncoder
from tfrec.text.encoder import BertTextEncoder

SEQ = 16


@pytest.fixture(scope="module")
def small():
    data = generate(n_users=40, n_items=30, n_interactions=900, seed=5)
    split = make_split(data.interactions, "temporal")
    cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
    qf = QueryFeatures.fit(split.train, data.users, 4)
    feats = qf.build(split.train, context=split.train)
    feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
    text = np.random.default_rng(0).normal(size=(cat.n_items, 8)).astype(np.float32)  # tiny BERT is 8-d
    return data, cat, qf, feats, text


def _build(small, finetune=None, layers=1, **model_kw):
    data, cat, qf, feats, text = small
    tf.keras.utils.set_random_seed(0)
    text_cfg = None if finetune is None else TextConfig(preset="tiny", sequence_length=SEQ, finetune=finetune,
                                                        trainable_layers=layers)
    model_kw.setdefault("popularity_prior", (0.0,))  # the towers' own space (the prior is tested in test_hybrid)
    return build_hybrid(ModelConfig(embedding_dim=8, **model_kw), cat, data.items, text, qf, text_cfg=text_cfg)


def _bert_weights(model):
    return {v.path: v.numpy().copy() for v in model.item_tower.text_encoder.bert.inner.weights}


def _train(model, feats, steps=3):
    model.compile(tf.keras.optimizers.Adam(0.05))
    ds = make_dataset(feats, 64, seed=0, drop_remainder=True).take(steps)
    model.fit(ds, epochs=1, verbose=0)


@pytest.fixture(scope="module")
def tuned(small):
    """finetune mode -> (trained model, BERT weights before, after); built on first use."""
    cache = {}

    def get(finetune):
        if finetune not in cache:
            model = _build(small, finetune)
            before = _bert_weights(model)
            _train(model, small[3])
            cache[finetune] = (model, before, _bert_weights(model))
        return cache[finetune]

    return get


@pytest.mark.parametrize("finetune,changed_layers", [("top_n", {"transformer_layer_1"}),
                                                      ("full", {"transformer_layer_0", "transformer_layer_1",
                                                                "token_embedding", "position_embedding",
                                                                "segment_embedding", "embeddings_layer_norm"})])
def test_finetuning_changes_exactly_the_trainable_bert_layers(tuned, finetune, changed_layers):
    _, before, after = tuned(finetune)
    changed = {p.split("/")[0] for p in before if not np.array_equal(before[p], after[p])}
    # The pooled dense layer is not part of mean pooling (no gradient), so it never moves.
    assert changed == changed_layers
    assert all(np.array_equal(before[p], after[p]) for p in before if p.startswith("pooled_dense"))


def test_frozen_mode_is_the_cached_embedding_model(small):
    data, cat, qf, feats, text = small
    batch = {k: tf.constant(v[:64]) for k, v in feats.items()}
    losses = []
    for finetune in (None, "frozen"):  # weights are created lazily: build and call one after the other
        model = _build(small, finetune)
        assert model.item_tower.text_encoder is None
        assert "text_embedding" in model.lookup.column_names and "text" not in model.lookup.column_names
        assert model._history_table is not None  # cached text: the history reads the table (history_refresh)
        losses.append(float(model.compute_loss(batch)))
    assert losses[0] == losses[1]


def test_the_per_batch_bert_runs_on_distinct_items_only(small, monkeypatch):
    data, cat, qf, feats, text = small
    model = _build(small, "top_n")
    assert model._history_table is None  # a table refresh would run BERT over the whole catalogue
    rows = []
    original = BertTextEncoder.call

    def spy(self, texts, training=False):
        rows.append(int(tf.shape(texts)[0]))
        return original(self, texts, training=training)

    monkeypatch.setattr(BertTextEncoder, "call", spy)
    batch = {k: v[:64] for k, v in feats.items()}
    model.compute_loss({k: tf.constant(v) for k, v in batch.items()}, training=True)  # eager: one call
    distinct = len(set(batch["item_id"]) | set(batch["history"].ravel()))  # "" padding is one more row
    assert rows == [distinct]
    assert distinct < 64 * (1 + batch["history"].shape[1]) / 4  # far fewer than the interactions' rows


def test_finetuned_items_are_scored_and_exported_with_the_finetuned_encoder(small, tuned, tmp_path):
    from tfrec.models.scoring import HybridScorer
    from tfrec.models.serving import hybrid_serving_parts
    from tfrec.text.template import item_texts

    data, cat, qf, feats, text = small
    model = tuned("top_n")[0]
    ids = data.items["item_id"].astype(str).to_numpy()
    tower = model.item_embeddings(tf.constant(ids)).numpy()
    # The scorer (validation, Recommender) sees the fine-tuned tower.
    np.testing.assert_allclose(HybridScorer(model, qf, data.interactions, ids).item_embeddings, tower, atol=1e-6)
    # The same items with BERT's initial (frozen) weights give other embeddings.
    fresh = BertTextEncoder("tiny", sequence_length=SEQ)(tf.constant(item_texts(data.items))).numpy()
    tuned = model.item_tower.text_encoder(tf.constant(item_texts(data.items))).numpy()
    assert np.abs(fresh - tuned).max() > 1e-3
    _, _, item_encoder, spec = hybrid_serving_parts(model, qf, data.items, None, None)
    module = tf.Module()
    module.encoder = item_encoder
    module.f = tf.function(lambda f: item_encoder(f), input_signature=[spec])
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"encode_items": module.f})
    loaded = tf.saved_model.load(str(tmp_path / "sm")).signatures["encode_items"]
    raw = {name: tf.constant(data.items[name].astype(str).tolist() if s.dtype == tf.string
                             else data.items[name].astype(np.float32).to_numpy()) for name, s in spec.items()}
    got = list(loaded(**raw).values())[0].numpy()
    np.testing.assert_allclose(got, tower, atol=1e-5)


def test_bad_finetune_settings_are_config_errors(small):
    with pytest.raises(ConfigError, match="`text.finetune` must be one of frozen, top_n, full, got 'some'"):
        _build(small, "some")
    with pytest.raises(ConfigError, match="`text.trainable_layers` >= 1, got 0"):
        _build(small, "top_n", layers=0)


# -- exactness of the loss rewrites -------------------------------------------------


def test_in_batch_softmax_loss_equals_tfrs_retrieval_and_a_numpy_reference():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(6, 4)).astype(np.float32)
    c = rng.normal(size=(8, 4)).astype(np.float32)  # 6 positives + 2 extra negatives
    ids = np.array([0, 1, 0, 2, 3, 1, 4, 0])  # duplicates: accidental hits
    prob = rng.uniform(0.01, 0.5, size=8).astype(np.float32)
    got = float(in_batch_softmax_loss(tf.constant(q), tf.constant(c), 0.1, tf.constant(np.log(prob)),
                                      tf.constant(ids)))
    task = tfrs.tasks.Retrieval(temperature=0.1, remove_accidental_hits=True)
    want = float(task(tf.constant(q), tf.constant(c), candidate_sampling_probability=tf.constant(prob),
                      candidate_ids=tf.constant(ids), compute_metrics=False, compute_batch_metrics=False))
    # Naive: row i's softmax over candidates j with j == i or ids[j] != ids[i].
    s = q @ c.T / 0.1 - np.log(prob)[None, :]
    naive = 0.0
    for i in range(6):
        keep = [j for j in range(8) if j == i or ids[j] != ids[i]]
        naive += np.log(np.exp(s[i, keep]).sum()) - s[i, i]
    assert got == pytest.approx(want, rel=1e-5) and got == pytest.approx(naive, rel=1e-5)


def test_softmax_cross_entropy_sum_matches_a_numpy_reference_and_the_sparse_kernel():
    rng = np.random.default_rng(3)
    logits = (5 * rng.normal(size=(9, 7))).astype(np.float32)
    labels = rng.integers(0, 7, size=9).astype(np.int32)
    x = tf.constant(logits)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        got = softmax_cross_entropy_sum(tf.constant(labels), x)
        sparse = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=x))
    z = logits.astype(np.float64)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    naive = -np.log(p[np.arange(9), labels]).sum()
    naive_grad = p.copy()
    naive_grad[np.arange(9), labels] -= 1.0  # d loss / d logits = softmax - one-hot
    assert float(got) == pytest.approx(naive, rel=1e-6) and float(got) == pytest.approx(float(sparse), rel=1e-6)
    np.testing.assert_allclose(tape.gradient(got, x).numpy(), naive_grad, atol=1e-6)
    np.testing.assert_allclose(tape.gradient(got, x).numpy(), tape.gradient(sparse, x).numpy(), atol=1e-7)


class _ProjectThenMean(SequenceEncoder):
    """The previous "mean" encoder: project every history item, then the masked mean."""

    def call(self, items, mask, training=False):
        x = self.project(items)  # (batch, N, out)
        m = tf.cast(mask, x.dtype)[:, :, None]
        out = tf.reduce_sum(x * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
        return tf.where(tf.reduce_any(mask, axis=1, keepdims=True), out, tf.zeros_like(out))


def _previous_loss(model, f):
    """compute_loss as it was: one gather then slices, string-hash accidental-hit ids,
    TFRS `Retrieval`, project-then-mean history encoder."""
    cand_ids, history = f["item_id"], f["history"]
    b = int(cand_ids.shape[0])
    uniq, idx = tf.unique(tf.concat([cand_ids, tf.reshape(history, [-1])], axis=0))
    emb = tf.gather(model._tower_on_ids(uniq), idx)
    cand = emb[:b]
    hist = tf.reshape(emb[b:], [b, history.shape[1], -1])
    encoder = getattr(model.query_tower, "encoder", None)
    if encoder is not None and encoder.kind == "mean":
        encoder.__class__ = _ProjectThenMean
    try:
        query = model.query_embedding(f, history_vectors=hist)
    finally:
        if encoder is not None:
            encoder.__class__ = SequenceEncoder
    remove = model.remove_accidental_hits
    task = tfrs.tasks.Retrieval(temperature=model.temperature, remove_accidental_hits=remove)
    return float(task(query, cand, candidate_sampling_probability=tf.exp(model._logq_table.lookup(cand_ids)),
                      candidate_ids=tf.strings.to_hash_bucket_fast(cand_ids, 2**63 - 1) if remove else None,
                      compute_metrics=False, compute_batch_metrics=False))


@pytest.mark.parametrize("kw", [{}, {"remove_accidental_hits": False}, {"use_history": False},
                                {"sequence": "gru"}])
def test_training_loss_equals_the_previous_formulation_on_a_fixed_batch(small, kw):
    model = _build(small, **kw)  # random initial weights: any weights must give the same loss
    batch = {k: tf.constant(v[:128]) for k, v in small[3].items()}
    want = _previous_loss(model, batch)
    assert float(model.compute_loss(batch)) == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_top_n_finetuning_trains_under_mirrored_strategy_on_two_logical_devices():
    out = run_on_two_cpus("""
        import numpy as np, tensorflow as tf
        from tfrec.config import ModelConfig, TextConfig
        from tfrec.data.pipeline import make_dataset
        from tfrec.data.splits import make_split
        from tfrec.data.synthetic import generate
        from tfrec.features.catalogue import Catalogue
        from tfrec.features.query_features import QueryFeatures
        from tfrec.models.factory import build_hybrid
        data = generate(n_users=40, n_items=30, n_interactions=900, seed=5)
        split = make_split(data.interactions, "temporal")
        cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
        qf = QueryFeatures.fit(split.train, data.users, 4)
        feats = qf.build(split.train, context=split.train)
        feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            model = build_hybrid(ModelConfig(embedding_dim=8), cat, data.items, None, qf,
                                 text_cfg=TextConfig(preset="tiny", sequence_length=16, finetune="top_n"))
            model.compile(tf.keras.optimizers.Adam(0.05))
        bert = model.item_tower.text_encoder.bert.inner
        top = bert.get_layer("transformer_layer_1").trainable_weights[0]
        low = bert.get_layer("transformer_layer_0").weights[0]
        top0, low0 = top.numpy().copy(), low.numpy().copy()
        h = model.fit(make_dataset(feats, 64, seed=0, drop_remainder=True).take(4), epochs=1, verbose=0).history
        print("REPLICAS", strategy.num_replicas_in_sync, "MIRRORED", type(top.value).__name__,
              "TOP", not np.allclose(top0, top.numpy()), "LOW", not np.array_equal(low0, low.numpy()),
              "FINITE", bool(np.isfinite(h["loss"]).all()))
    """)
    assert "REPLICAS 2 MIRRORED MirroredVariable TOP True LOW False FINITE True" in out


@pytest.mark.parametrize("kw", [{}, {"remove_accidental_hits": False}, {"use_history": False}, {"sequence": "gru"},
                                {"sequence": "sasrec"}, {"history_negatives": 1.0},
                                {"num_random_negatives": 16, "content_loss_weight": 0.5}])
def test_catalogue_rows_give_the_string_batches_loss(small, kw):
    """`catalogue_rows` batches (int rows of the lookup) must train the same loss as the
    string-id batches: same distinct items, same order, same masks."""
    from tfrec.models.hybrid import catalogue_rows

    data, cat, qf, feats, text = small
    model = _build(small, **kw)
    strings = {k: v[:128] for k, v in feats.items()}
    rows = catalogue_rows(strings, cat.item_ids)
    assert "item_id" not in rows and rows["history_row"].dtype == np.int32
    # Independent mapping: padding -> the unknown row (one past the catalogue), ids -> their position.
    position = {str(x): i for i, x in enumerate(cat.item_ids)}
    want_rows = [[position.get(x, len(position)) if x else len(position) for x in h] for h in strings["history"]]
    assert rows["history_row"].tolist() == want_rows
    assert (strings["history"] == "").any()  # padding is exercised
    losses = []
    for batch in (strings, rows):
        tf.keras.utils.set_random_seed(3)  # the same random negatives for both
        losses.append(float(model.compute_loss({k: tf.constant(v) for k, v in batch.items()})))
    assert losses[1] == pytest.approx(losses[0], rel=1e-6)


def test_catalogue_rows_leave_batches_with_unknown_ids_as_strings(small):
    from tfrec.models.hybrid import catalogue_rows

    feats = {k: v[:4].copy() for k, v in small[3].items()}
    feats["history"][0, 0] = "not-in-the-catalogue"
    assert catalogue_rows(feats, small[1].item_ids) is feats
