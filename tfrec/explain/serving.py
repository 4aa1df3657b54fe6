"""In-graph explanations for the exported SavedModel's `explain` signature.

`QueryExplainer` wraps any raw-feature query model (`query_model(features) ->
[batch, d]`) and the catalogue's item embeddings. For each request row and item id
it runs, in ONE batched call of the query model, the query itself, the query
without each history item (leave-one-out: the item removed, "" padding on the
left, as `tfrec.explain.attribution` does) and the query with
each user attribute / the timestamp made unknown (occlusion), and returns the score
changes. The arithmetic is `tfrec.explain.attribution`'s, so the served numbers
equal `Explainer.attribute`'s (the serving proofs check it).

    explain(Q, item_ids string [batch]) ->
        score                    float32 [batch]     dot(query, item embedding) (- the repeat
                                                     penalty when the item is in the history)
        history_contributions    float32 [batch, N]  score - score without history item j (0 at padding)
        history_item_ids         string  [batch, N]  the (padded) history the contributions align with
        attribute_contributions  float32 [batch, A]  score - score with feature a unknown
                                                     (names: `attribute_names`, in the export metadata)
        popularity_prior         float32 [batch]     the popularity prior's part of `score`, T * w *
                                                     log(1 + recent count) (0 without a prior)
        text_profile             float32 [batch]     the text profile's part of `score` (items without
                                                     a trained id, `tfrec.models.text_profile`; 0 without)
        cooccurrence             float32 [batch]     the co-occurrence block's part of `score` (EASE's
                                                     item-item scores, `tfrec.models.cooccurrence`; 0 without)
        text_profile_words       string  [batch, W]  the words that add most to the text profile's lexical
                                                     term, largest first ("" past the positive ones; all ""
                                                     without the term; `Explanation.text_profile_words`)
        text_profile_word_parts  float32 [batch, W]  each word's exact part of `score` (0 at "")

An unknown item id scores 0 against every query (a zero embedding).
"""
import numpy as np
import tensorflow as tf

from tfrec.errors import ConfigError
from tfrec.explain.attribution import UNKNOWN_NUMBER, UNKNOWN_USER
from tfrec.models.repeat import in_history
from tfrec.models.text_profile import PROFILE_FEATURE


class QueryExplainer(tf.Module):
    """Args:
        query_model: callable, dict of raw query features -> float [batch, d].
        item_ids: catalogue ids [n_items].
        item_embeddings: float [n_items, d], the retrieval index's vectors.
        history_length: pad (left, with "") / truncate (keep the newest) the
            request's history to this length first, as the query model does; None:
            use the history as sent.
        occlusions: feature name -> value standing for "unknown" ("" for strings,
            -1 for numbers, an out-of-vocabulary id for `user_id`, the end of the train
            period for `timestamp`), in the
            order of `attribute_contributions`.
        repeat_penalty: the model's learned repeat penalty p (None / 0: none): a catalogue
            item in the (padded) history scores p lower, as the `recommend` signatures
            rank it; removing its own history entry then adds p back.
        prior_column: the embeddings' coordinate that is the popularity prior's (the query's
            is 1, `HybridRetrieval.item_embeddings`: the one after the tower's, so the last
            unless the co-occurrence or text profile block follows), reported as `popularity_prior`; True:
            the last; None / False: no prior.
        profile_history: also send each query's history as sent, unpadded, as the query model's
            `profile_history` (a hybrid model's text profile and co-occurrence block read more
            of it than the tower's N; every leave-one-out row keeps it whole, as `Explainer` does).
        blocks: name -> (start, stop), the columns of a block of both vectors
            (`HybridRetrieval.block_columns`): "text_profile", "cooccurrence"; each one's dot
            product is reported under its name (0 for a block not given).
        lexical: (start, stop, terms), the text profile's lexical columns and their words
            (`HybridRetrieval.lexical_columns`): the W = `k_words` largest positive products of the
            query's and the item's columns are reported with their words (W = the vocabulary's size
            if it is smaller; None: W words "").
    """

    def __init__(self, query_model, item_ids, item_embeddings, history_length=None, occlusions=None,
                 repeat_penalty=None, prior_column=None, profile_history=False, blocks=None, lexical=None,
                 k_words=5):
        super().__init__(name="query_explainer")
        self.k_words = int(k_words)
        self.lexical = None
        if lexical is not None:
            a, z, terms = lexical
            self.lexical = (int(a), int(z), tf.constant([str(t) for t in terms], tf.string))
        self.profile_history = bool(profile_history)
        self.blocks = {name: (int(a), int(b)) for name, (a, b) in (blocks or {}).items()}
        self.repeat_penalty = float(repeat_penalty or 0.0)
        self.prior_column = -1 if prior_column is True else (None if prior_column is False else prior_column)
        self.query_model = query_model
        self.history_length = None if history_length is None else int(history_length)
        self.occlusions = dict(occlusions or {})
        self.attribute_names = list(self.occlusions)
        ids = np.asarray(item_ids, dtype=object).astype(str).reshape(-1)
        emb = np.asarray(item_embeddings, np.float32)
        self.n_items = len(ids)
        self.table = _row_table(ids)
        # The last row (index n_items) is the unknown item: zeros.
        self.embeddings = tf.Variable(np.concatenate([emb, np.zeros((1, emb.shape[1]), np.float32)]),
                                      trainable=False, name="item_embeddings")
        self.shared = None  # the export index's [n_items, d] variable instead (`read_from_index`)

    def read_from_index(self, embeddings, item_ids):
        """From now on reads the item vectors from `embeddings` (the export's index variable [n_items, d],
        rows for `item_ids` in its order) instead of its own copy, so a SavedModel holds the catalogue's
        matrix once (`RetrievalModule` calls it). The vectors must be the ones this explainer has. Returns it."""
        ids = np.asarray(item_ids, dtype=object).astype(str).reshape(-1)
        mine = self.table.lookup(tf.constant(ids))
        if len(ids) != self.n_items or bool(tf.reduce_any(mine >= self.n_items)) or not np.array_equal(
                self._vectors(mine).numpy(), embeddings.numpy()):
            raise ConfigError("The explainer's item vectors are not the index's: build both from the same "
                              "`item_ids` and `item_embeddings`.")
        del self.embeddings, self.table  # untracked too (a tracked attribute set to None stays a dependency)
        self.table, self.embeddings, self.shared = _row_table(ids), None, embeddings
        return self

    def _vectors(self, rows):
        """The item vectors of table rows [b] (the unknown row, n_items: zeros)."""
        if self.shared is None:
            return tf.gather(self.embeddings, rows)
        known = rows < self.n_items
        return tf.where(known[:, None], tf.gather(self.shared, tf.where(known, rows, 0)), 0.0)

    def _pad(self, history):
        if self.history_length is None:
            return history
        n = self.history_length
        batch = tf.shape(history)[0]
        return tf.concat([tf.fill([batch, n], ""), history], axis=1)[:, -n:]  # (batch, n)

    def __call__(self, features, item_ids):
        features = dict(features)
        hist = self._pad(features["history"])  # (b, N)
        b, n = tf.shape(hist)[0], tf.shape(hist)[1]
        others = {k: v for k, v in features.items() if k != "history"}
        if self.profile_history:
            others[PROFILE_FEATURE] = features["history"]
        # Leave-one-out rows: row 0 the query, row 1 + j without history item j:
        # the items before j move one step right, "" pads on the left.
        k = tf.range(n - 1)[None, :]  # (1, N - 1)
        keep = k + tf.cast(k >= tf.range(n)[:, None], tf.int32)  # (N, N - 1): row j = 0..N-1 without j
        removed = tf.concat([tf.fill([b, n, 1], ""), tf.gather(hist, keep, axis=1)], axis=2)  # (b, N, N)
        variants = tf.concat([hist[:, None, :], removed], axis=1)  # (b, N + 1, N)
        parts = [{"history": tf.reshape(variants, [b * (n + 1), n]),
                  **{k: tf.repeat(v, n + 1, axis=0) for k, v in others.items()}}]
        for name, value in self.occlusions.items():  # one block of b rows per occluded feature
            x = features[name]
            parts.append({"history": hist, **others, name: tf.fill(tf.shape(x), tf.cast(value, x.dtype))})
        batch = {k: tf.concat([p[k] for p in parts], axis=0) for k in parts[0]}
        q = tf.cast(self.query_model(batch), tf.float32)  # (b * (N + 1) + A * b, d)
        rows = self.table.lookup(item_ids)
        v = self._vectors(rows)  # (b, d)
        d = tf.shape(q)[1]
        q_loo = tf.reshape(q[:b * (n + 1)], [b, n + 1, d])  # row 0 of each example: the query itself
        s = tf.einsum("bkd,bd->bk", q_loo, v)  # (b, N + 1)
        blocks = {name: tf.zeros_like(s[:, 0]) for name in ("text_profile", "cooccurrence")}
        for name, (a, z) in self.blocks.items():  # the query's own block against the item's
            blocks[name] = tf.reduce_sum(q_loo[:, 0, a:z] * v[:, a:z], axis=1)
        blocks.update(self._words(q_loo[:, 0], v, b))
        penalty = tf.zeros_like(s)
        if self.repeat_penalty:  # (b, N + 1): the item is in that variant's history (unknown items never)
            hit = tf.reshape(in_history(tf.repeat(item_ids, n + 1)[:, None], tf.reshape(variants, [-1, n])),
                             [b, n + 1])
            penalty = self.repeat_penalty * tf.cast(hit & (rows < self.n_items)[:, None], tf.float32)
        s -= penalty
        score = s[:, 0]
        contributions = tf.where(hist == "", 0.0, score[:, None] - s[:, 1:])  # (b, N)
        a = len(self.occlusions)
        # Occluded rows keep the history: the same penalty as the query's.
        s_occ = tf.einsum("abd,bd->ba", tf.reshape(q[b * (n + 1):], [a, b, d]), v) - penalty[:, :1]  # (b, A)
        return {"score": score, "history_contributions": contributions, "history_item_ids": hist,
                "attribute_contributions": score[:, None] - s_occ,
                "popularity_prior": v[:, self.prior_column] if self.prior_column is not None else tf.zeros_like(score),
                **blocks}

    def _words(self, q, v, b):
        """The lexical term's largest positive word parts (`tfrec.explain.evidence.shared_words`)."""
        if self.lexical is None:
            return {"text_profile_words": tf.fill([b, self.k_words], ""),
                    "text_profile_word_parts": tf.zeros([b, self.k_words])}
        a, z, terms = self.lexical
        parts, cols = tf.math.top_k(q[:, a:z] * v[:, a:z], k=min(self.k_words, z - a))  # ties: the lower column
        keep = parts > 0
        return {"text_profile_words": tf.where(keep, tf.gather(terms, cols), ""),
                "text_profile_word_parts": tf.where(keep, parts, 0.0)}


def _row_table(ids):
    """Item id -> its row, unknown ids -> len(ids)."""
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
        default_value=len(ids))


def hybrid_occlusions(query_features, model=None) -> dict:
    """The "unknown" values `Explainer` uses, for a hybrid model's raw query features."""
    occ = {"user_id": UNKNOWN_USER}
    occ.update({c: "" for c in query_features.categorical})
    occ.update({c: UNKNOWN_NUMBER for c in query_features.numeric})
    occ["timestamp"] = int(query_features.reference_time)
    return occ


def hybrid_explainer(model, query_features, item_ids, item_embeddings) -> QueryExplainer:
    """The `explainer` to export beside a `HybridRetrieval` (pass to `export_retrieval(...,
    explainer=)`); its numbers equal `Explainer(recommender, ...).attribute(...)`."""
    from tfrec.models.serving import HybridQueryModel

    n = query_features.history_length
    p = model.repeat_penalty
    return QueryExplainer(HybridQueryModel(model, n), item_ids, item_embeddings, history_length=n,
                          occlusions=hybrid_occlusions(query_features), repeat_penalty=None if p is None else float(p),
                          prior_column=model.item_tower.output_dim if model.has_popularity_prior else None,
                          profile_history=model.profile_length is not None,
                          blocks={name: model.block_columns(name) for name in ("text_profile", "cooccurrence")
                                  if model.block_columns(name) is not None},
                          lexical=model.lexical_columns())
