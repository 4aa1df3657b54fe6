"""Ranking stage: scores (user, context, history, candidate) with feature crosses.

Retrieval has to be a dot product to search the whole catalogue; a ranker only
sees a few hundred candidates per request, so it can afford richer interactions.
`HybridRanker` builds a user representation (id, attributes, request time,
history) and an item representation (id, BERT text embedding, genres, year) with
its own towers, then feeds

    [user, item, user * item, retrieval score, recent and total item popularity]

through DCN-v2 cross layers (`tfrs.layers.dcn.Cross`) and a deep MLP to two heads:
a relevance logit (what the final list is sorted by) and a rating.

Losses (on the TFRS `Ranking` task):
- "listwise": softmax cross-entropy over [positive, negatives] per example; the
  negatives are drawn from the retriever's own top candidates for that query
  (hard negatives, `negatives` feature) plus uniform train items sampled in-graph;
- "bce": binary cross-entropy on the same lists (pointwise implicit feedback);
- a rating regression head (MSE), weighted by `rating_weight`, on data with ratings.

The rating head predicts mu + b_i (+ b_u) + head(crossed features); with
`history_ratings=True` it adds w . s, where s summarises the ratings the user gave
the history items (the optional `history_ratings` feature, float [b, N] aligned
with `history`; 0 or NaN = unknown, a missing feature = all unknown), with d_j =
r_j - mu - b_j over the n rated history items. With `rating_base="bias"` it reads
only ratings the frozen base was not fitted on (`set_rating_base(fitted_on=...)`),
d_j = r_j - mu - b_j - b_u: what b_u holds is not counted twice (on ML-100K
validation, counting them again took known users' RMSE from 0.970 to 1.029):

    s = [sum d / (shrinkage + n), sum d / max(n, 1), std(r), log(1 + n)]

and w starts at [1, 0, 0, 0], i.e. at the bias model's own user-bias estimate from
those ratings. It gives the ranker a user's rating scale without a trained user id
(new users, users whose rating habits changed). The relevance logit does not read
`history_ratings`, so the two-stage order and the `rank` signature do not need it.

Joint (multi-task) training as in the TFRS multitask tutorial: with `retrieval_weight > 0` the retrieval
model is trained with the ranker, loss = retrieval_weight * retrieval + relevance_weight * ranking +
rating_weight * rating; with 0 (stages trained separately) it is frozen and only provides its score.
"""
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrec.config import check_ranking_values
from tfrec.errors import ConfigError
from tfrec.models.repeat import repeat_logits

NEG = -1e9  # logit of a masked candidate
PAIR_SEP = "\x1f"  # joins user and item ids into one key (unit separator: not in ids)


class HybridRanker(tfrs.Model):
    """Args:
        lookup: `CatalogueLookup` (item id -> text embedding and attributes).
        item_tower: `ItemTower` (normalize=False) of the ranker.
        query_tower: `QueryTower` (normalize=False) of the ranker.
        retrieval: a `HybridRetrieval` whose score is an input feature, or None.
        loss: "listwise" | "bce" | "rating" (the relevance loss; "rating" trains the
            rating head only and ranks by predicted rating).
        cross_layers: number of DCN-v2 cross layers.
        projection_dim: low-rank size of each cross layer (None = full rank).
        deep_units: sizes of the deep MLP after the crosses.
        num_random_negatives: uniform train-item negatives per example, drawn in-graph.
        rating_weight, relevance_weight, retrieval_weight: loss weights.
        rating_mean: the rating head predicts around this (train mean rating).
        bias_l2: L2 weight of the rating head's user and item biases.
        history_ratings: add the prior-rating summary term (see the module docstring).
        history_rating_shrinkage: the `shrinkage` of its first feature (prior ratings
            a user's bias is shrunk towards zero by, as the bias baseline's reg_user).
        rating_user_bias: keep the per-user-id bias b_u in the rating head.
        rating_base: "learned" (the biases are trained with the rest, L2 `bias_l2`) or
            "bias": mu, b_u and b_i are the closed-form regularised bias model's
            (`tfrec.evaluation.rating.BiasBaseline`), written in by `set_rating_base`
            and frozen; the rest of the rating head (crossed features from a zero
            start, history ratings) learns the residual r - (mu + b_u + b_i).
        bias_vocabularies: (user ids, item ids) of the rating head's bias tables; None =
            the towers' (train) vocabularies. A frozen base refitted on more data than
            train needs every id it may know (`build_ranker` passes the catalogue's).
        cold_user_fraction: in training, this fraction of examples is shown as a new user's (user id "", empty
            history and history ratings), so the model also learns to score users it knows nothing about.
    """

    def __init__(self, lookup, item_tower, query_tower, retrieval=None, loss="listwise", cross_layers=2,
                 projection_dim=None, deep_units=(256, 64), num_random_negatives=8, rating_weight=0.0,
                 relevance_weight=1.0, retrieval_weight=0.0, rating_mean=0.0, bias_l2=1e-4, history_ratings=False,
                 history_rating_shrinkage=5.0, rating_user_bias=True, cold_user_fraction=0.0, seed=0,
                 rating_base="learned", bias_vocabularies=None, popularity=None, **kwargs):
        super().__init__(**kwargs)
        check_ranking_values(loss=loss, rating_base=rating_base, cold_user_fraction=cold_user_fraction,
                             history_rating_shrinkage=history_rating_shrinkage)
        if retrieval_weight > 0 and retrieval is None:
            raise ConfigError("Joint training (`ranking.retrieval_weight` > 0) needs the retrieval model.")
        self.lookup = lookup
        self.item_tower = item_tower
        self.query_tower = query_tower
        self.retrieval = retrieval
        self.popularity = popularity
        # relevance = head + blend * the retriever's full score (cosine / T + prior - repeat penalty); 0 while
        # training, chosen on validation after it (`tfrec.cli.ranking_stage.TwoStageValidation.tune_blend`);
        # `blend_new` for a query with an empty history (a new user's; the same value unless chosen apart).
        self.blend = tf.Variable(0.0, trainable=False, name="retrieval_blend")
        self.blend_new = tf.Variable(0.0, trainable=False, name="retrieval_blend_new")
        self.loss_kind = loss
        self.num_random_negatives = int(num_random_negatives)
        self.rating_weight = float(rating_weight)
        self.relevance_weight = float(relevance_weight) if loss != "rating" else 0.0
        self.retrieval_weight = float(retrieval_weight)
        self.rating_mean = float(rating_mean)
        self.history_ratings = bool(history_ratings)
        self.history_rating_shrinkage = float(history_rating_shrinkage)
        self.rating_user_bias = bool(rating_user_bias)
        self.cold_user_fraction = float(cold_user_fraction)
        self.rating_base = rating_base
        self.seed = int(seed)
        if loss == "rating":
            self.rating_weight = max(self.rating_weight, 1.0)
        self.cross = [tfrs.layers.dcn.Cross(projection_dim=projection_dim, kernel_initializer="glorot_uniform",
                                            name=f"cross_{i}") for i in range(int(cross_layers))]
        self.deep = tf.keras.Sequential([tf.keras.layers.Dense(int(u), activation="relu") for u in deep_units],
                                        name="deep")
        self.relevance_head = tf.keras.layers.Dense(1, name="relevance")
        fixed = rating_base == "bias"
        self.rating_head = tf.keras.layers.Dense(1, kernel_initializer="zeros" if fixed else "glorot_uniform",
                                                 name="rating")
        # The rating head adds user and item biases (the classic mu + b_u + b_i
        # baseline) to the crossed features' prediction: L2-regularised and trained,
        # or the closed-form bias model's, frozen (`rating_base`).
        reg = None if fixed else tf.keras.regularizers.l2(float(bias_l2))

        def bias(vocab, name):
            layer = tf.keras.Sequential([
                tf.keras.layers.StringLookup(vocabulary=[str(v) for v in vocab], mask_token=None, num_oov_indices=1),
                tf.keras.layers.Embedding(len(vocab) + 1, 1, embeddings_initializer="zeros",
                                          embeddings_regularizer=reg)], name=name)
            layer.trainable = not fixed
            return layer

        users, items = bias_vocabularies or (query_tower.user_vocabulary, item_tower.item_vocabulary)
        self.user_bias = bias(users, "user_bias") if self.rating_user_bias else None
        self.item_bias = bias(items, "item_bias")
        self.history_rating_head = None
        # (user, item) pairs of the ratings the frozen base was fitted on: the history term skips them.
        self.rating_base_pairs = None
        if fixed and self.history_ratings:
            self.rating_base_pairs = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, 0.0,
                                                                             name="rating_base_pairs")
        if self.history_ratings:
            self.history_rating_head = tf.keras.layers.Dense(
                1, use_bias=False, kernel_initializer=tf.keras.initializers.Constant([[1.0], [0.0], [0.0], [0.0]]),
                name="history_rating")
        self._negative_pool = tf.constant(list(item_tower.item_vocabulary) or lookup.item_ids)
        self.relevance_task = tfrs.tasks.Ranking(
            loss=(tf.keras.losses.CategoricalCrossentropy(from_logits=True, reduction="sum") if loss == "listwise"
                  else tf.keras.losses.BinaryCrossentropy(from_logits=True, reduction="sum")),
            loss_metrics=[tf.keras.metrics.Mean(name="relevance_loss")], name="relevance_task")
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction="sum"),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rating_rmse")], name="rating_task")

    @property
    def trainable_weights(self):
        # Separate stages: the retrieval model is fixed (its score is only an input);
        # it is left trainable as a model of its own, just not trained from here.
        weights = super().trainable_weights
        if self.retrieval is not None and self.retrieval_weight == 0:
            frozen = {w.ref() for w in self.retrieval.weights}
            weights = [w for w in weights if w.ref() not in frozen]
        return weights

    def set_rating_base(self, base, fitted_on=None):
        """Writes a fitted `BiasBaseline` into the rating head's biases: predictions
        become base.mu + b_u + b_i + (learned residual). The head's own `rating_mean`
        is a constant of the traced graph, so base.mu - rating_mean is folded into
        every item bias (the out-of-vocabulary row included). Users and items the
        base does not know get its zero bias. `fitted_on` (the base's interactions):
        the history-ratings term skips these ratings (None: skips none)."""
        if self.rating_base != "bias":
            raise ConfigError("`set_rating_base` needs a ranker built with `ranking.rating_base=bias`.")
        delta = float(base.mu) - self.rating_mean
        pairs = [(self.item_bias, base.item_bias, delta)]
        if self.user_bias is not None:
            pairs.append((self.user_bias, base.user_bias, 0.0))
        for layer, values, shift in pairs:
            lookup, table = layer.layers
            if not table.built:  # only the table: the Sequential builds at its first real call
                table.build((None,))
            vocab = lookup.get_vocabulary()  # index 0 = out of vocabulary
            rows = np.array([0.0] + [values.get(str(v), 0.0) for v in vocab[1:]], np.float32) + shift
            table.embeddings.assign(rows[:, None])
        if self.rating_base_pairs is not None:
            pairs = self.rating_base_pairs
            pairs.remove(pairs.export()[0])
            if fitted_on is not None and len(fitted_on):
                keys = fitted_on["user_id"].astype(str) + PAIR_SEP + fitted_on["item_id"].astype(str)
                pairs.insert(tf.constant(keys.to_numpy(dtype=object)), tf.ones(len(keys)))

    def set_popularity(self, interactions):
        """The interactions the popularity features count from now on (train for
        training, everything known before the test period after it)."""
        if self.popularity is None:
            raise ConfigError("`set_popularity` needs a ranker built with `ranking.popularity_days` > 0.")
        self.popularity.set_counts(interactions)

    # -- representations -----------------------------------------------------------
    def _item_vectors(self, ids, training):
        """Item tower over the distinct ids of `ids` [...], gathered back -> [..., d]."""
        flat = tf.reshape(ids, [-1])
        uniq, idx = tf.unique(flat)
        feats = self.lookup(uniq)
        feats["item_id"] = uniq
        emb = tf.gather(self.item_tower(feats, training=training), idx)
        d = self.item_tower.output_dim
        return tf.reshape(emb, tf.concat([tf.shape(ids), [d]], axis=0))

    def _query_vector(self, features, training):
        history = features["history"]
        hist = self._item_vectors(history, training)
        return self.query_tower(features, hist, tf.not_equal(history, ""), training=training)

    def history_rating_summary(self, features):
        """float [b, 4] summary of the prior ratings in `features["history_ratings"]`
        (see the module docstring); zeros where none is known or the feature is absent."""
        history = features["history"]  # (b, N)
        ratings = features.get("history_ratings")
        if ratings is None:
            ratings = tf.zeros(tf.shape(history), tf.float32)
        ratings = tf.cast(ratings, tf.float32)
        known = tf.not_equal(history, "") & tf.math.is_finite(ratings) & tf.not_equal(ratings, 0.0)
        if self.rating_base_pairs is not None:  # ratings the frozen base already counted
            user = tf.broadcast_to(features["user_id"][:, None], tf.shape(history))
            seen = self.rating_base_pairs.lookup(tf.strings.join([user, history], separator=PAIR_SEP))
            known &= tf.ensure_shape(seen, history.shape) == 0.0  # (a mutable table's lookup has no static shape)
        k = tf.cast(known, tf.float32)
        r = tf.where(known, ratings, 0.0)
        # The history items' biases are a fixed reference here, not trained through it.
        bj = tf.stop_gradient(self.item_bias(history)[..., 0])  # (b, N)
        dev = k * (r - self.rating_mean - bj)
        if self.rating_base == "bias" and self.user_bias is not None:
            # Deviations from the frozen base's own user bias: what b_u already holds is not
            # counted twice; a user the base does not know (b_u = 0) keeps the raw deviations.
            dev -= k * tf.stop_gradient(self.user_bias(features["user_id"]))  # (b, N) - (b, 1)
        n = tf.reduce_sum(k, axis=1)
        total = tf.reduce_sum(dev, axis=1)
        n1 = tf.maximum(n, 1.0)
        mean_r = tf.reduce_sum(r, axis=1) / n1
        var = tf.reduce_sum(k * tf.square(r - mean_r[:, None]), axis=1) / n1
        return tf.stack([total / (self.history_rating_shrinkage + n), total / n1, tf.sqrt(var),
                         tf.math.log1p(n)], axis=1)

    def score(self, features, candidate_ids, training=False):
        """Scores candidates: `features` as the retrieval query features (batch b),
        `candidate_ids` string [b, c] -> {"relevance": [b, c], "rating": [b, c]}."""
        q = self._query_vector(features, training)  # (b, d)
        v = self._item_vectors(candidate_ids, training)  # (b, c, d)
        c = tf.shape(candidate_ids)[1]
        qt = tf.tile(q[:, None, :], tf.stack([1, c, 1]))  # (b, c, d)
        parts = [qt, v, qt * v]
        if self.retrieval is not None:
            train_retrieval = training and self.retrieval_weight > 0
            # The towers' own vectors: the retrieval model's popularity prior (counts as of the last known
            # day) is not a feature; the ranker has its own, as of each request (`popularity`).
            rq = self.retrieval.query_vector(features, training=train_retrieval)  # (b, r)
            rv = self.retrieval.item_vectors(candidate_ids, training=train_retrieval)  # (b, c, r)
            score = tf.einsum("br,bcr->bc", rq, rv)[..., None] / self.retrieval.temperature
            parts.append(score if train_retrieval else tf.stop_gradient(score))
        if self.popularity is not None:
            parts.append(self.popularity(candidate_ids, features["timestamp"]))  # (b, c, 2)
        x0 = tf.concat(parts, axis=-1)
        width = x0.shape[-1]
        x0 = tf.reshape(x0, [-1, width])  # (b*c, D)
        x = x0
        for layer in self.cross:
            x = layer(x0, x)
        h = self.deep(x, training=training)
        shape = tf.shape(candidate_ids)
        relevance = tf.reshape(self.relevance_head(h), shape)
        if self.retrieval is not None and not training:  # + blend x (cosine / T + prior - repeat penalty / T)
            new = tf.reduce_all(tf.equal(features["history"], ""), axis=1) if "history" in features else False
            relevance += tf.where(new, self.blend_new, self.blend)[..., None] * (
                score[..., 0] + self.retrieval.prior_scores(candidate_ids)
                - repeat_logits(self.retrieval, features, candidate_ids))
        biases = self.item_bias(candidate_ids)[..., 0]  # (b, c)
        if self.rating_user_bias:
            biases += self.user_bias(features["user_id"])[:, None, 0]
        if self.history_rating_head is not None:
            biases += self.history_rating_head(self.history_rating_summary(features))  # (b, 1) + (b, c)
        rating = tf.reshape(self.rating_head(h), shape) + biases + self.rating_mean
        if self.loss_kind == "rating":
            relevance = rating
        return {"relevance": relevance, "rating": rating}

    def call(self, features, training=False):
        """Relevance of `features["candidate_item_ids"]` [b, c] for each query."""
        return self.score(features, features["candidate_item_ids"], training=training)["relevance"]

    # -- training ------------------------------------------------------------------
    def _candidates(self, features):
        pos = features["item_id"][:, None]  # (b, 1)
        parts = [pos]
        if "negatives" in features:  # hard negatives from the retriever, precomputed per example
            parts.append(features["negatives"])
        if self.num_random_negatives:
            b = tf.shape(pos)[0]
            idx = tf.random.uniform([b, self.num_random_negatives], 0, tf.shape(self._negative_pool)[0],
                                    dtype=tf.int32, seed=self.seed)
            parts.append(tf.gather(self._negative_pool, idx))
        return tf.concat(parts, axis=1)  # (b, 1 + m)

    def _as_cold_users(self, features):
        """`features` with a random `cold_user_fraction` of rows made a new user's."""
        cold = tf.random.uniform(tf.shape(features["user_id"]), seed=self.seed + 1) < self.cold_user_fraction  # (b,)
        out = dict(features, user_id=tf.where(cold, "", features["user_id"]),
                   history=tf.where(cold[:, None], "", features["history"]))
        if "history_ratings" in features:
            out["history_ratings"] = tf.where(cold[:, None], 0.0, tf.cast(features["history_ratings"], tf.float32))
        return out

    def compute_loss(self, features, training=False):
        if training and self.cold_user_fraction > 0:
            features = self._as_cold_users(features)
        cands = self._candidates(features)
        out = self.score(features, cands, training=training)
        loss = 0.0
        if self.relevance_weight > 0:
            logits = out["relevance"]
            # A negative equal to the positive (or padding "") is not a negative.
            invalid = tf.equal(cands, cands[:, :1]) | tf.equal(cands, "")
            invalid = tf.concat([tf.zeros_like(invalid[:, :1]), invalid[:, 1:]], axis=1)
            labels = tf.one_hot(tf.zeros(tf.shape(cands)[0], tf.int32), tf.shape(cands)[1])
            if self.loss_kind == "listwise":
                logits = tf.where(invalid, NEG, logits)
                loss += self.relevance_weight * self.relevance_task(labels=labels, predictions=logits)
            else:
                w = tf.cast(~invalid, tf.float32)
                loss += self.relevance_weight * self.relevance_task(
                    labels=tf.reshape(labels, [-1, 1]), predictions=tf.reshape(logits, [-1, 1]),
                    sample_weight=tf.reshape(w, [-1, 1]))
        if self.rating_weight > 0:
            if "rating" not in features:
                raise ConfigError("The rating loss needs a `rating` column in the interactions; set "
                                  "`ranking.rating_weight=0` or use data with ratings.")
            loss += self.rating_weight * self.rating_task(labels=features["rating"][:, None],
                                                          predictions=out["rating"][:, :1])
        if self.retrieval_weight > 0:
            loss += self.retrieval_weight * self.retrieval.compute_loss(features, training=training)
        return loss


def build_ranker(ranking_cfg, model_cfg, catalogue, items, text_embeddings, query_features, retrieval=None,
                 rating_mean=0.0, seed=0, timestamps=None):
    """Returns an uncompiled `HybridRanker` (call inside a strategy scope).

    The ranker has its own catalogue lookup (cached BERT text embeddings, attributes)
    and towers; `retrieval` contributes its score (frozen unless mode is "joint").
    `timestamps` (the data's, or its min and max) size the popularity table
    (`ranking.popularity_days` > 0), filled by `set_popularity`.
    """
    from tfrec.models.catalogue_lookup import CatalogueLookup
    from tfrec.models.factory import item_columns
    from tfrec.models.item_tower import ItemTower
    from tfrec.models.popularity import popularity_layer
    from tfrec.models.query_tower import QueryTower

    stats = {}
    cols, categorical, numeric = item_columns(items, text_embeddings, stats)
    lookup = CatalogueLookup(catalogue.item_ids, cols, name="ranker_catalogue")
    lookup.item_stats = stats
    d = int(ranking_cfg.embedding_dim)
    qf = query_features
    item_tower = ItemTower(catalogue.item_vocab.values, output_dim=d, id_dim=d, categorical=categorical,
                           numeric=numeric, use_id=model_cfg.use_id, use_text=model_cfg.use_text,
                           id_dropout=model_cfg.id_dropout, normalize=False, seed=seed + 7, name="ranker_item_tower")
    query_tower = QueryTower(catalogue.user_vocab.values, output_dim=d, id_dim=d, categorical=qf.categorical,
                             numeric=qf.numeric, use_id=model_cfg.use_id, use_attributes=model_cfg.use_attributes,
                             use_context=model_cfg.use_context, use_history=model_cfg.use_history,
                             sequence=model_cfg.sequence, reference_time=qf.reference_time,
                             user_id_dropout=model_cfg.user_id_dropout, normalize=False, seed=seed + 7,
                             prefixes=qf.prefixes, name="ranker_query_tower")
    popularity = None
    if ranking_cfg.popularity_days:
        if timestamps is None:
            raise ConfigError("`ranking.popularity_days` > 0: build_ranker needs the interactions' `timestamps`.")
        popularity = popularity_layer(ranking_cfg.popularity_days, catalogue.item_ids, timestamps)
    joint = ranking_cfg.mode == "joint"
    return HybridRanker(lookup, item_tower, query_tower, retrieval=retrieval, loss=ranking_cfg.loss,
                        cross_layers=ranking_cfg.cross_layers, projection_dim=ranking_cfg.projection_dim,
                        deep_units=ranking_cfg.deep_units, num_random_negatives=ranking_cfg.num_random_negatives,
                        rating_weight=ranking_cfg.rating_weight, relevance_weight=ranking_cfg.relevance_weight,
                        retrieval_weight=ranking_cfg.retrieval_weight if joint else 0.0, rating_mean=rating_mean,
                        history_ratings=ranking_cfg.history_ratings,
                        history_rating_shrinkage=ranking_cfg.history_rating_shrinkage,
                        rating_user_bias=ranking_cfg.rating_user_bias,
                        cold_user_fraction=ranking_cfg.cold_user_fraction, rating_base=ranking_cfg.rating_base,
                        # The frozen base is refitted on train + validation: its tables cover every
                        # known id, not only train's (validation-only users would lose their b_u).
                        bias_vocabularies=((catalogue.user_ids, catalogue.item_ids)
                                           if ranking_cfg.rating_base == "bias" else None),
                        popularity=popularity, seed=seed, name="hybrid_ranker")
