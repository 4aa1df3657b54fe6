import functools

import numpy as np
import pandas as pd
import pytest

import tfrec  # noqa: F401  (before tensorflow)
import tensorflow as tf  # noqa: E402


@functools.lru_cache(maxsize=None)
def _base(seed=5):
    """Synthetic data (80 users, 60 items), its temporal split, tiny-BERT text embeddings."""
    from tfrec.data.splits import make_split
    from tfrec.data.synthetic import generate
    from tfrec.text.cache import encode_texts
    from tfrec.text.encoder import BertTextEncoder
    from tfrec.text.template import item_texts

    data = generate(n_users=80, n_items=60, n_interactions=3000, seed=seed)
    split = make_split(data.interactions, "temporal")
    encoder = BertTextEncoder("tiny", sequence_length=16)
    text = encode_texts(encoder, item_texts(data.items), progress=False)
    return data, split, encoder, text


def build_recommender(sequence="mean", epochs=1, fit=True, seed=5, repeat_penalty=None):
    """A tiny hybrid Recommender (embedding dim 8, history 5). Returns (recommender, data, split).
    `fit=False`: random weights, enough where only the arithmetic of an attribution is checked.
    `repeat_penalty`: a model with a repeat penalty, set to this value."""
    from tfrec.config import ModelConfig
    from tfrec.data.pipeline import make_dataset
    from tfrec.features.catalogue import Catalogue
    from tfrec.features.query_features import QueryFeatures
    from tfrec.models.factory import build_hybrid
    from tfrec.models.recommender import Recommender

    data, split, encoder, text = _base(seed)
    cat = Catalogue.fit(data.items, split.train, data.interactions, data.users)
    qf = QueryFeatures.fit(split.train, data.users, 5)
    tf.keras.utils.set_random_seed(0)
    model = build_hybrid(ModelConfig(embedding_dim=8, sequence=sequence, repeat_penalty=repeat_penalty is not None),
                         cat, data.items, text, qf)
    if repeat_penalty is not None:  # p = softplus(raw)
        model._repeat_raw.assign(float(np.log(np.expm1(repeat_penalty))))
    feats = qf.build(split.train, context=split.train)
    if fit:
        model.compile(tf.keras.optimizers.Adam(0.01))
        feats["item_id"] = split.train["item_id"].astype(str).to_numpy(dtype=object)
        model.fit(make_dataset(feats, 256), epochs=epochs, verbose=0)
    else:  # builds the weights
        model.query_embedding({k: tf.constant(v[:2]) for k, v in feats.items()})
    known = pd.concat([split.train, split.val])
    return Recommender(model, qf, data.items, text, known, text_encoder=encoder), data, split


@pytest.fixture(scope="session")
def tiny():
    """A trained tiny hybrid model (mean history encoder) with its Explainer."""
    from tfrec.explain.explainer import Explainer

    rec, data, split = build_recommender("mean", epochs=2)
    return rec, data, split, Explainer(rec, split.train)
