"""What a hybrid model exports: raw-feature callables and their input specs.

`hybrid_serving_parts` returns the query model (raw user id, attributes, request
time and recent item ids -> query embedding) and the item encoder (raw item id,
text fields and attributes -> item embedding, BERT included) that
`tfrec.export.retrieval.export_retrieval` turns into SavedModel signatures. All
preprocessing (lookups, zip prefixes, time features, history padding, the item
text template, the tokenizer, attribute normalisation) runs in the graph.
"""
import tensorflow as tf

from tfrec.models.text_profile import PROFILE_FEATURE
from tfrec.text.template import item_texts_graph, template_fields

_DTYPES = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}


def query_spec(query_features) -> dict:
    """Raw query inputs: name -> TensorSpec (history: [batch, any length])."""
    spec = {}
    for name, (dtype, suffix) in query_features.spec().items():
        spec[name] = tf.TensorSpec([None, *suffix], _DTYPES[dtype], name=name)
    return spec


class HybridQueryModel(tf.Module):
    """Raw query features -> query embedding. A tf.Module, so the export reaches
    every variable and table of the model it holds."""

    def __init__(self, model, history_length):
        super().__init__(name="hybrid_query_model")
        self.model = model
        self.history_length = int(history_length)

    def __call__(self, features):
        n = self.history_length
        history = features["history"]  # (batch, any): keep the newest n, "" padded on the left
        batch = tf.shape(history)[0]
        feats = dict(features, history=tf.concat([tf.fill([batch, n], ""), history], axis=1)[:, -n:])
        if self.model.profile_length is not None:  # blocks that read more of it (models/space.py), or their own
            feats[PROFILE_FEATURE] = features.get(PROFILE_FEATURE, history)[:, -self.model.profile_length:]
        return self.model.query_embedding(feats, training=False)


class HybridItemEncoder(tf.Module):
    """Raw item fields -> item embedding: template text -> BERT -> item tower (a new item
    mixed with its nearest trained items, as `index_items` places it, when `cold` is the
    model's `ColdNeighbours`; then, with the retrieval model's popularity prior, its
    column: the catalogue's as in the index; for a new item, which has no interactions yet,
    0, or with the model's content prior the value its content predicts, as `index_items`; then, with the
    model's co-occurrence block, the item's column (zeros for a new item), then, with the
    model's text profile, its block, from the text just encoded)."""

    def __init__(self, item_tower, text_encoder, stats, template, columns, prior_model=None, cold=None,
                 text_profile=None, cooccurrence=None):
        super().__init__(name="hybrid_item_encoder")
        self.cooccurrence = cooccurrence  # the model's `Cooccurrence` (its item block), or None
        self.text_profile = text_profile  # the model's `TextProfile` (its item block), or None
        self.item_tower = item_tower
        self.cold = cold
        self.prior_model = prior_model  # the `HybridRetrieval`, when it has the prior
        self.text_encoder = text_encoder
        self.stats = {k: (float(v[0]), float(v[1])) for k, v in (stats or {}).items()}
        self.template = template
        self.columns = list(columns)

    def __call__(self, features):
        tower = self.item_tower
        text = item_texts_graph(features, self.template, self.columns)
        if getattr(tower, "text_encoder", None) is not None:  # fine-tuned: the tower encodes the text itself
            feats = {"item_id": features["item_id"], "text": text}
        else:
            feats = {"item_id": features["item_id"], "text_embedding": self.text_encoder(text, training=False)}
        for c in tower.categorical:
            feats[c] = features[c]
        for c in tower.numeric:
            mean, std = self.stats.get(c, (0.0, 1.0))
            v = tf.cast(features[c], tf.float32)
            # Unknown (NaN, or a negative year) -> the catalogue mean, as when fitting.
            ok = tf.math.is_finite(v) & ((v >= 0) if c == "year" else tf.ones_like(v, tf.bool))
            feats[c] = tf.where(ok, (v - mean) / std, 0.0)
        v = tower(feats, training=False)
        if self.cold is not None:
            v = self.cold(tower, features["item_id"], feats, v)
        parts = [v]
        m = self.prior_model
        if m is not None:
            prior = m.prior_column(features["item_id"])
            if getattr(m, "content_prior", None) is not None and m.content_prior.fitted:
                new = tf.equal(m.lookup.table.lookup(features["item_id"]), len(m.lookup.item_ids))  # not catalogued
                predicted = m.temperature * m.popularity_prior[0] * m.content_prior.predict_graph(feats)
                prior = tf.where(new, predicted, prior)
            parts.append(prior[:, None])
        if self.cooccurrence is not None:  # catalogue items: their column; new items: zeros
            parts.append(self.cooccurrence.item_columns(features["item_id"]))
        if self.text_profile is not None:  # from the text just encoded: new items have no lookup row
            parts.append(self.text_profile.item_columns(None, features["item_id"], feats["text_embedding"], text))
        return tf.concat(parts, axis=-1) if len(parts) > 1 else v


def hybrid_serving_parts(model, query_features, items=None, text_encoder=None, text_template=None):
    """Returns (query_model, query_spec, item_encoder or None, item_encoder_spec or None)."""
    query_model = HybridQueryModel(model, query_features.history_length)
    item_encoder = item_spec = None
    if (text_encoder is not None or getattr(model.item_tower, "text_encoder", None) is not None) and items is not None:
        tower = model.item_tower
        fields = template_fields(text_template, items.columns)
        item_spec = {"item_id": tf.TensorSpec([None], tf.string, name="item_id")}
        item_spec.update({f: tf.TensorSpec([None], tf.string, name=f) for f in fields})
        item_spec.update({c: tf.TensorSpec([None], tf.string, name=c) for c in tower.categorical})
        item_spec.update({c: tf.TensorSpec([None], tf.float32, name=c) for c in tower.numeric})
        item_encoder = HybridItemEncoder(tower, text_encoder, getattr(model.lookup, "item_stats", None),
                                         text_template, items.columns,
                                         prior_model=model if model.has_popularity_prior else None,
                                         cold=model.cold_neighbours, text_profile=model.text_profile,
                                         cooccurrence=model.cooccurrence)
    return query_model, query_spec(query_features), item_encoder, item_spec


class HybridRankerModel(tf.Module):
    """Raw query features + candidate item ids [batch, n] -> ranker relevance [batch, n]
    (the `rank` signature; with `two_stage` exports, also the order of `serving_default`)."""

    def __init__(self, ranker, history_length):
        super().__init__(name="hybrid_ranker_model")
        self.ranker = ranker
        self.history_length = int(history_length)

    def __call__(self, features, candidate_item_ids):
        n = self.history_length
        history = features["history"]
        batch = tf.shape(history)[0]
        history = tf.concat([tf.fill([batch, n], ""), history], axis=1)[:, -n:]
        out = self.ranker.score(dict(features, history=history), candidate_item_ids, training=False)
        return out["relevance"]
