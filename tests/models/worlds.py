"""Small synthetic worlds shared by the model tests: data, a split, the catalogue,
random text embeddings and fitted query features, and a seeded hybrid on them."""
import numpy as np
import tensorflow as tf

from tfrec.config import ModelConfig
from tfrec.data.splits import make_split
from tfrec.data.synthetic import generate
from tfrec.features.catalogue import Catalogue
from tfrec.features.query_features import QueryFeatures
from tfrec.models.factory import build_hybrid


def synthetic_world(n_users, n_items, n_interactions, data_seed, split, text_dim, history_length, **split_kw):
    """(data, split, catalogue, text [n_items, text_dim] ~ N(0, 1) from seed 0, query features)."""
    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=data_seed)
    parts = make_split(data.interactions, split, **split_kw)
    cat = Catalogue.fit(data.items, parts.train, data.interactions, data.users)
    text = np.random.default_rng(0).normal(size=(cat.n_items, text_dim)).astype(np.float32)
    qf = QueryFeatures.fit(parts.train, data.users, history_length=history_length)
    return data, parts, cat, text, qf


def tiny_bert_world(n_users, n_items, n_interactions, data_seed, history_length):
    """(data, temporal split, catalogue, the tiny BERT encoder, its item text embeddings, query
    features): a synthetic world whose text goes through a real (tiny, random) BERT, for tests
    that index new items or export `encode_items`."""
    from tfrec.text.cache import encode_texts
    from tfrec.text.encoder import BertTextEncoder
    from tfrec.text.template import item_texts

    data = generate(n_users=n_users, n_items=n_items, n_interactions=n_interactions, seed=data_seed)
    split = make_split(data.interactions, "temporal")
    cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
    encoder = BertTextEncoder("tiny", sequence_length=16)
    text = encode_texts(encoder, item_texts(data.items), progress=False)
    qf = QueryFeatures.fit(split.train, data.users, history_length)
    return data, split, cat, encoder, text, qf


def seeded_hybrid(world, **model_kw):
    """`build_hybrid` on a `synthetic_world` (embedding size 8, Keras seed 0; the
    popularity prior's extra dimension off unless asked for)."""
    data, _, cat, text, qf = world
    model_kw.setdefault("popularity_prior", (0.0,))
    tf.keras.utils.set_random_seed(0)
    return build_hybrid(ModelConfig(embedding_dim=8, **model_kw), cat, data.items, text, qf)


def cold_items_world():
    """The small `cold_items` world of the cold-item placement tests (20% of 40 items held out)."""
    return synthetic_world(60, 40, 1500, data_seed=5, split="cold_items", text_dim=6, history_length=4,
                           cold_item_fraction=0.2, seed=1)


def unit(x):
    """Rows of x scaled to length 1 (zero rows stay zero)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
