import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tests.two_devices import run_on_two_cpus
from tfrec.errors import ConfigError
from tfrec.text import presets
from tfrec.text.cache import TextEmbeddingCache
from tfrec.text.encoder import BertTextEncoder

TEXTS = ["Toy Story (1995). Genres: Animation, Children's, Comedy.", "GoldenEye (1995)", "Café Crème: naïve ÉLAN"]


@pytest.fixture(scope="module")
def tiny():
    return BertTextEncoder("tiny", sequence_length=16)


def test_tokenizer_matches_hugging_face_tokenizers():
    """keras-hub's in-graph WordPiece agrees with the Rust `tokenizers` library on MiniLM's tokenizer.json."""
    from tokenizers import Tokenizer

    enc = BertTextEncoder("tiny", sequence_length=24)
    ref = Tokenizer.from_file(str(presets.minilm_path() / "tokenizer.json"))
    ref.no_padding()
    ref.enable_truncation(24)
    ids, mask = enc.tokenize(tf.constant(TEXTS))
    for row, text in enumerate(TEXTS):
        want = ref.encode(text).ids
        got = ids.numpy()[row][mask.numpy()[row]].tolist()
        assert got == want, text


def test_pooling_is_masked_mean_then_l2(tiny):
    # Reference: run the backbone, then average only the unpadded positions by hand.
    ids, mask = tiny.tokenize(tf.constant(TEXTS[:2]))
    seq = tiny.bert.inner({"token_ids": ids, "padding_mask": mask, "segment_ids": tf.zeros_like(ids)})["sequence_output"].numpy()
    m = mask.numpy()
    for r in range(2):
        mean = seq[r][m[r]].mean(axis=0)
        want = mean / np.linalg.norm(mean)
        np.testing.assert_allclose(tiny(tf.constant(TEXTS[:2])).numpy()[r], want, rtol=1e-5, atol=1e-6)


def test_trainable_layers_modes():
    frozen = BertTextEncoder("tiny", sequence_length=8, trainable_layers=0)
    top1 = BertTextEncoder("tiny", sequence_length=8, trainable_layers=1)
    full = BertTextEncoder("tiny", sequence_length=8, trainable_layers=-1)
    assert frozen.trainable_weights == []
    names = {w.name for w in top1.trainable_weights}
    assert names and all("transformer_layer_1" in w.path for w in top1.bert.inner.trainable_weights)
    # Full mode trains the embeddings too, and more weights than top-1.
    assert len(full.trainable_weights) > len(top1.trainable_weights)
    assert any("token_embedding" in w.path for w in full.bert.inner.trainable_weights)
    with pytest.raises(ConfigError, match="`trainable_layers` 5 exceeds the backbone's 2 layers"):
        BertTextEncoder("tiny", sequence_length=8, trainable_layers=5)
    with pytest.raises(ConfigError, match="`pooling` must be one of"):
        BertTextEncoder("tiny", pooling="max")


def test_keras_json_round_trip(tiny):
    config = json.loads(json.dumps(tf.keras.layers.serialize(tiny)))
    clone = tf.keras.layers.deserialize(config, custom_objects={"BertTextEncoder": BertTextEncoder})
    assert clone.get_config() == tiny.get_config()
    # Same seed, same random init: identical outputs.
    np.testing.assert_allclose(clone(tf.constant(TEXTS)).numpy(), tiny(tf.constant(TEXTS)).numpy(), atol=1e-6)


def test_cache_hits_and_invalidates(tmp_path, tiny):
    cache = TextEmbeddingCache(tmp_path)
    a = cache.encode(tiny, TEXTS, progress=False)
    b = cache.encode(tiny, TEXTS, progress=False)
    assert (cache.hits, cache.misses) == (1, 1)
    np.testing.assert_array_equal(a, b)
    cache.encode(tiny, TEXTS[:2] + ["GoldenEye (1996)"], progress=False)  # one text edited
    assert cache.misses == 2
    w = tiny.bert.inner.weights[3]
    w.assign(w.numpy() + 1.0)  # fine-tuned weights
    c = cache.encode(tiny, TEXTS, progress=False)
    assert cache.misses == 3 and not np.allclose(a, c)
    assert len(list((tmp_path / "text").glob("*.npy"))) == 3
    assert not list((tmp_path / "text").glob(".tmp-*"))


@pytest.mark.slow
def test_bert_trains_inside_tfrs_under_mirrored_strategy_and_exports(tmp_path):
    """Two logical CPU devices (set before TF initialises, hence a fresh process)."""
    out = run_on_two_cpus(f"""
        import numpy as np, tensorflow as tf, tensorflow_recommenders as tfrs
        from tfrec.text.encoder import BertTextEncoder
        strategy = tf.distribute.MirroredStrategy(devices)
        titles = [f"movie {{i}} about " + w for i, w in enumerate("space love war cats dogs robots ghosts pirates".split())]
        with strategy.scope():
            enc = BertTextEncoder("tiny", sequence_length=12, trainable_layers=-1)
            users = tf.keras.Sequential([tf.keras.layers.StringLookup(vocabulary=[str(i) for i in range(8)]),
                                         tf.keras.layers.Embedding(9, 8)])
            class M(tfrs.Model):
                def __init__(self):
                    super().__init__()
                    self.enc, self.users = enc, users
                    self.task = tfrs.tasks.Retrieval()
                def compute_loss(self, f, training=False):
                    return self.task(self.users(f["user"]), self.enc(f["title"], training=training))
            m = M()
            m.compile(tf.keras.optimizers.Adagrad(0.5))
        w0 = enc.bert.inner.trainable_weights[0]
        before = w0.numpy().copy()
        ds = tf.data.Dataset.from_tensor_slices({{"user": [str(i) for i in range(8)] * 4, "title": titles * 4}}).batch(8)
        m.fit(ds, epochs=2, verbose=0)
        print("REPLICAS", strategy.num_replicas_in_sync)
        print("CHANGED", not np.allclose(before, w0.numpy()))
        print("MIRRORED", type(w0.value).__name__)
        mod = tf.Module(); mod.enc = enc
        mod.f = tf.function(lambda t: enc(t), input_signature=[tf.TensorSpec([None], tf.string)])
        tf.saved_model.save(mod, {str(tmp_path / 'sm')!r}, signatures={{"serving_default": mod.f}})
        np.save({str(tmp_path / 'want.npy')!r}, enc(tf.constant(titles[:3])).numpy())
    """)
    assert "REPLICAS 2" in out and "CHANGED True" in out and "MIRRORED MirroredVariable" in out
    # Reload in a fresh process that imports only tensorflow and tensorflow_text.
    load = textwrap.dedent(f"""
        import numpy as np, tensorflow as tf, tensorflow_text
        m = tf.saved_model.load({str(tmp_path / 'sm')!r})
        titles = ["movie 0 about space", "movie 1 about love", "movie 2 about war"]
        out = list(m.signatures["serving_default"](tf.constant(titles)).values())[0].numpy()
        print("MAXDIFF", float(np.abs(out - np.load({str(tmp_path / 'want.npy')!r})).max()))
    """)
    r = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert float(r.stdout.split("MAXDIFF")[1]) < 1e-5


def test_a_second_identical_encoder_in_the_same_process_hits_the_cache(tmp_path):
    # Keras names the second instance "bert_text_encoder_1"; the key must not care.
    cache = TextEmbeddingCache(tmp_path)
    a = BertTextEncoder("tiny", sequence_length=16, seed=3)
    b = BertTextEncoder("tiny", sequence_length=16, seed=3)
    assert a.name != b.name
    cache.encode(a, TEXTS, progress=False)
    cache.encode(b, TEXTS, progress=False)
    assert (cache.hits, cache.misses) == (1, 1)
    c = BertTextEncoder("tiny", sequence_length=12, seed=3)  # another setting: another entry
    cache.encode(c, TEXTS, progress=False)
    assert cache.misses == 2
