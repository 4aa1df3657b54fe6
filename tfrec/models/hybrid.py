"""Hybrid two-tower retrieval: content (BERT text, attributes) + collaborative
(ids) items, and users described by id, attributes, request time and history.

Retrieving O(thousands) of candidates from the whole catalogue needs one dot
product per item, so both towers map into one space. The item tower runs once
per *distinct* candidate of a batch and the results are gathered back. In training
the history encoder reads the same tower's vectors from a table refreshed every
`history_refresh` steps, without gradient (`tfrec.models.history_table`); with 0 the
history items join the candidates' pass (as history negatives and the repeat penalty need).

Text: frozen (default) reads each item's cached BERT embedding from the
catalogue lookup; with a fine-tuned encoder in the item tower (`text.finetune`
top_n or full, see `tfrec.models.factory.build_hybrid`) the lookup holds each
item's template text and BERT runs inside the tower, so also only once per
distinct item of a batch.

Training: the in-batch softmax of TFRS `Retrieval` over L2-normalised embeddings
and a temperature, logQ correction of the in-batch sampling bias, removal of
accidental hits, and optionally extra uniformly sampled negatives (mixed
negative sampling). The loss is computed per distinct candidate item (see
`_distinct_candidate_loss`); it equals TFRS's on the same batch (tested).

Popularity prior (`popularity_prior=True`): at query time the score of item i is
cos(q, v_i) / T + w * log(1 + n_i), n_i = the item's interactions in the N days before
the last known one (N = 0: all) (`set_popularity_prior(interactions, w, N)`; w = 0 until
set, so training and early stopping do not see it; the logQ correction removes popularity
from the learned scores, the prior adds back what is popular now). It is one more
dimension of the retrieval space (`item_embeddings` end with T * w * log(1 + n_i),
`query_embedding` with 1), so dot products, exported indexes and TF Serving score with
it; `item_vectors` / `query_vector` are the towers' own outputs. ML-100K validation
NDCG@10: 0.319 -> 0.36 (README). `content_prior`: items without interactions get a
log(1 + n_i) predicted from their content instead of 0 (`tfrec.models.content_prior`).

Cold items (no trained id) are embedded from their content with the shared OOV id
vector (`content_loss_weight`: the retrieval loss also with every candidate's id
replaced by OOV); `set_text_profile` adds their text's match with the user's history.
`set_cooccurrence` adds EASE's item-item scores (`tfrec.models.space` lists the blocks).
"""
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from tfrec.models.catalogue_lookup import catalogue_rows, column_values  # noqa: F401  (catalogue_rows: callers)
from tfrec.models.content_prior import ContentPrior, recent_counts  # noqa: F401  (recent_counts: likewise)
from tfrec.models.history_table import HistoryTable
from tfrec.models.losses import LOG_MIN_PROB, in_batch_softmax_loss, softmax_cross_entropy_sum
from tfrec.models.repeat import penalty_from_raw, seen_indicator
from tfrec.models.space import RetrievalSpace


class HybridRetrieval(RetrievalSpace, tfrs.Model):
    """Args:
        lookup: `CatalogueLookup` (item id -> text embedding and attributes).
        item_tower: `ItemTower`.
        query_tower: `QueryTower`.
        item_log_probability: (ids, log train frequency) for the logQ correction, or None.
        temperature: softmax temperature over cosine similarities.
        remove_accidental_hits: drop in-batch negatives that equal the positive.
        num_random_negatives: extra negatives per batch, uniform over the train items.
        history_negatives: weight of an auxiliary loss that contrasts each positive
            with the query's own history items (a softmax over [positive, history]).
            In-batch negatives almost never include a user's own past items, so
            without it the model happily re-recommends what the user just consumed.
        content_loss_weight: weight of the content-only retrieval loss (the same loss with
            every candidate embedded as a cold item: id replaced by OOV). 0 = off.
        popularity_prior: give the retrieval space the popularity prior's dimension
            (module docstring); its weight and window are set by `set_popularity_prior`.
        repeat_penalty: learn a score offset p >= 0 for items in the query's own
            history (`tfrec.models.repeat`).
        content_prior: the prior of items without interactions is predicted from their
            content (`tfrec.models.content_prior`); without it, 0.
        history_refresh: K > 0: in training the history encoder reads the item tower's
            vectors from a table refreshed every K steps, without gradient
            (`tfrec.models.history_table`); 0: the tower on each batch's history items.
    """

    def __init__(self, lookup, item_tower, query_tower, item_log_probability=None, temperature=0.05,
                 remove_accidental_hits=True, num_random_negatives=0, history_negatives=0.0, seed=0,
                 content_loss_weight=0.0, popularity_prior=False, repeat_penalty=False, content_prior=False,
                 history_refresh=0, **kwargs):
        super().__init__(**kwargs)
        self._repeat_raw = (self.add_weight(name="repeat_penalty", shape=(), initializer=tf.constant_initializer(-3.0))
                            if repeat_penalty else None)
        self.popularity_prior = (0.0, 14)  # (w, N days), see `set_popularity_prior`
        self.cold_neighbours = None  # `set_cold_neighbours`: how items without a trained id are placed
        self.text_profile = None  # `set_text_profile`: their text against the user's whole history
        self.cooccurrence = None  # `set_cooccurrence`: EASE's item-item scores from the user's known items
        self.space_version = 0  # +1 at each set_* that changes item vectors (scorers built before are stale)
        self._prior = None  # item id -> T * w * log(1 + recent count); unknown ids 0
        self.content_prior = ContentPrior() if content_prior and popularity_prior else None
        if popularity_prior:
            self._prior = tf.lookup.experimental.MutableHashTable(tf.string, tf.float32, 0.0,
                                                                  name="popularity_prior")
        self.lookup = lookup
        self.item_tower = item_tower
        self.query_tower = query_tower
        self.temperature = float(temperature)
        self.remove_accidental_hits = bool(remove_accidental_hits)
        self.num_random_negatives = int(num_random_negatives)
        self.history_negatives = float(history_negatives)
        self.seed = int(seed)
        self.content_loss_weight = float(content_loss_weight)
        if self.content_loss_weight < 0:
            raise ValueError(f"`content_loss_weight` must be >= 0, got {content_loss_weight}.")
        self.logq = item_log_probability is not None
        if self.logq:
            ids, logp = item_log_probability
            self._logq_table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(tf.constant([str(i) for i in ids]),
                                                    tf.constant(np.asarray(logp, np.float32))),
                default_value=float(np.min(logp)))
            self._logq_rows = self._logq_table.lookup(tf.constant(lookup.item_ids + [""]))  # by catalogue row
        # Random negatives come from train items only: held-out (cold) items must
        # not enter training in any role.
        self._negative_pool = tf.constant(list(item_tower.item_vocabulary) or lookup.item_ids)
        # Keras reports the LAST batch's loss as `loss`; this is the epoch mean.
        self.loss_tracker = tf.keras.metrics.Mean(name="mean_batch_loss")
        self.history_refresh = int(history_refresh)
        if self.history_refresh < 0:
            raise ValueError(f"`history_refresh` must be >= 0 (0 = off), got {history_refresh}.")
        # A cache, not a weight: set past Keras's attribute tracking, so neither checkpointed nor exported.
        self.__dict__["_history_table"] = (HistoryTable(self, self.history_refresh)
                                           if self.history_refresh and query_tower.use_history else None)

    @property
    def repeat_penalty(self):
        """The learned repeat penalty p >= 0 (a scalar tensor; `tfrec.models.repeat`), or None."""
        return None if self._repeat_raw is None else penalty_from_raw(self._repeat_raw)

    # -- popularity prior ----------------------------------------------------------
    @property
    def has_popularity_prior(self):
        """Whether the retrieval space has the prior's dimension (d + 1)."""
        return self._prior is not None

    def set_popularity_prior(self, interactions, weight=None, days=None):
        """The prior's weight w and window N (None: keep the current ones) and the
        interactions (`item_id`, `timestamp`) it counts: each item's in the N days
        before the latest one (train while training, everything known after it)."""
        if self._prior is None:
            raise ValueError("`set_popularity_prior` needs a model built with `popularity_prior=True`.")
        w, n = self.popularity_prior
        w, n = float(w if weight is None else weight), int(n if days is None else days)
        if w < 0 or n < 0:
            raise ValueError(f"The popularity prior needs a weight >= 0 and days >= 0 (0 = all time), got {w} and {n}.")
        self.popularity_prior = (w, n)
        ids, log_n = self.prior_log_counts(interactions, n)
        values = self.temperature * w * log_n
        self._prior.remove(self._prior.export()[0])
        if len(ids):
            self._prior.insert(tf.constant(ids.astype(object)), tf.constant(values.astype(np.float32)))
        self.space_version += 1

    def prior_log_counts(self, interactions, days):
        """(item ids, log(1 + n)) of the items the prior counts in `interactions` over `days`
        (0: all time); with `content_prior`, also every catalogue item without interactions, predicted."""
        if self.content_prior is not None:
            return self.content_prior.log_counts(self.lookup, interactions, days)
        ids, counts = recent_counts(interactions, days)
        return ids, np.log1p(counts)

    def prior_column(self, item_ids):
        """The items' last retrieval-space coordinate, T * w * log(1 + n), for item ids [...]
        (0 without the prior)."""
        if self._prior is None:
            return tf.zeros(tf.shape(item_ids), tf.float32)
        return tf.ensure_shape(self._prior.lookup(item_ids), item_ids.shape)  # (a mutable table's lookup: no shape)

    def prior_scores(self, item_ids):
        """The prior's term of the score / T, w * log(1 + n), for item ids [...] (0 without it)."""
        return self.prior_column(item_ids) / self.temperature

    # -- item side ---------------------------------------------------------------
    def item_vectors(self, item_ids, training=False):
        """The item tower's vectors of item ids of any shape [...] -> [..., d], one tower pass per distinct id
        (items without a trained id: mixed with their neighbours', see `set_cold_neighbours`)."""
        flat = tf.reshape(item_ids, [-1])
        uniq, idx = tf.unique(flat)
        emb = self._tower_on_ids(uniq, training)  # (n_unique, d)
        if self.cold_neighbours is not None:
            emb = self.cold_neighbours(self.item_tower, uniq, self.lookup(uniq), emb)
        out = tf.gather(emb, idx)
        d = self.item_tower.output_dim  # static, so downstream Dense layers know their input size
        return tf.reshape(out, tf.concat([tf.shape(item_ids), [d]], axis=0))

    def _tower_on_ids(self, ids, training=False, with_content=False, rows=None):
        """ids: distinct item ids [n] -> [n, d] (with `with_content`: and their
        content-only [n, d]). With a fine-tuned text encoder the tower runs BERT on
        these n texts, so callers pass distinct ids only. `rows`: the ids' rows of the
        catalogue lookup, if known (saves the hash-table lookup)."""
        if rows is None:
            feats = self.lookup(ids)
        else:  # the tower's string work on the catalogue's rows, done once (`_row_inputs`)
            row_inputs = self._row_inputs()
            feats = self.lookup.by_row(rows, exclude=self.item_tower.multi_hot)  # their strings: not needed
            feats.update({k: tf.gather(v, rows) for k, v in row_inputs.items()})
        feats["item_id"] = ids
        return self.item_tower(feats, training=training, with_content=with_content)

    def _row_inputs(self):
        """`ItemTower.row_inputs` of every row of the catalogue lookup (its unknown row
        last, embedded as the row's id "" is), computed once per lookup: numpy, so a traced
        step holds them as constants and gathers them by row instead of hashing strings."""
        cached = self.__dict__.get("_row_inputs_cache")  # (lookup, inputs); past Keras's tracking
        if cached is None or cached[0] is not self.lookup:
            with tf.init_scope():  # eager, also while a training step is traced
                columns = {k: column_values(self.lookup.columns[k]) for k in self.item_tower.multi_hot}
                cached = (self.lookup, self.item_tower.row_inputs(self.lookup.item_ids + [""], columns))
            self.__dict__["_row_inputs_cache"] = cached
        return cached[1]

    # -- query side --------------------------------------------------------------
    def query_vector(self, features, training=False, history_vectors=None, history_mask=None):
        """The query tower's vectors [b, d]; `history_vectors` [b, N, d] from `item_vectors`
        and their `history_mask` [b, N] (default: the `history` ids that are not "")."""
        if history_mask is None:
            history = features["history"]  # (batch, N) item ids, "" = padding
            history_mask = tf.not_equal(history, "")
            if history_vectors is None and self.query_tower.use_history:
                history_vectors = self.item_vectors(history, training=training)  # (batch, N, d)
        return self.query_tower(features, history_vectors, history_mask, training=training)

    def call(self, features, training=False):
        return self.query_embedding(features, training=training)

    # -- training ----------------------------------------------------------------
    def compute_loss(self, features, training=False):
        # Batches carry item ids as strings (`item_id`, `history`) or as rows of the
        # catalogue lookup (`item_row`, `history_row`, from `catalogue_rows`): the same
        # loss, but the input pipeline gathers and the step de-duplicates integers.
        rows = "item_row" in features
        if rows:
            row_ids = tf.constant(self.lookup.item_ids + [""])  # row -> id; the unknown row -> ""
            cand_key, history = features["item_row"], features["history_row"]  # (batch,), (batch, N)
            padding = len(self.lookup.item_ids)
        else:
            cand_key, history, padding = features["item_id"], features["history"], ""
        hist_valid = tf.not_equal(history, padding)
        batch = tf.shape(cand_key)[0]
        n_hist = tf.size(history)
        # The history encoder reads the history table in training (`history_refresh`), else
        # the tower's pass over the history items; history negatives and the repeat penalty
        # need the history items in that pass.
        table = self._history_table if training else None
        need_history = self.history_negatives > 0 or self._repeat_raw is not None or (
            self.query_tower.use_history and table is None)
        all_keys = [cand_key]
        if need_history:
            all_keys.append(tf.reshape(history, [-1]))
        if self.num_random_negatives:
            neg = tf.random.uniform([self.num_random_negatives], 0, tf.shape(self._negative_pool)[0],
                                    dtype=tf.int32, seed=self.seed)
            neg = tf.gather(self._negative_pool, neg)
            all_keys.append(tf.cast(self.lookup.table.lookup(neg), cand_key.dtype) if rows else neg)
        # Ids and rows correspond one to one, so both give the same distinct items in the same order.
        uniq, idx = tf.unique(tf.concat(all_keys, axis=0))  # idx: (batch [+ batch*N] [+ M],) into uniq
        uniq_rows = None
        if rows:
            uniq_rows, uniq = uniq, tf.gather(row_ids, uniq)
        content_emb = None
        if self.content_loss_weight > 0:  # (n_unique, d) each
            unique_emb, content_emb = self._tower_on_ids(uniq, training, with_content=True, rows=uniq_rows)
        else:  # (n_unique, d): one tower pass per distinct item
            unique_emb = self._tower_on_ids(uniq, training, rows=uniq_rows)
        d = self.item_tower.output_dim
        # One gather per role, not slices of one gathered tensor: a gather's gradient is
        # IndexedSlices summed into n_unique rows; a slice's is a zero-padded
        # [batch * (N + 1), d] tensor (StridedSliceGrad, ~8 ms a step at 1,024 x 20).
        cand_idx = idx[:batch]  # (batch,) same item <=> same index
        hist = None
        if self.history_negatives > 0 or (table is None and need_history and not self._pooled_history):
            hist = tf.reshape(tf.gather(unique_emb, idx[batch:batch + n_hist]),
                              tf.concat([tf.shape(history), [d]], axis=0))  # (batch, N, d)
        if table is not None:  # (n_items + 1, d), no gradient; history as catalogue rows
            hist_rows = history if rows else self.lookup.table.lookup(history)
            if self.query_tower.sequence == "mean":
                query = self._query_from_pooled_history(features, table(), tf.reshape(hist_rows, [-1]), hist_valid,
                                                        training, zero_padding=True)
            else:
                query = self.query_vector(features, training=training, history_vectors=tf.gather(table(), hist_rows),
                                          history_mask=hist_valid)
        elif need_history and self._pooled_history:
            query = self._query_from_pooled_history(features, unique_emb, idx[batch:batch + n_hist], hist_valid,
                                                    training)
        else:
            query = self.query_vector(features, training=training, history_vectors=hist,
                                      history_mask=hist_valid)  # (batch, d)
        log_prob_unique = None
        if self.logq:
            log_prob = self._logq_table.lookup(uniq) if uniq_rows is None else tf.gather(self._logq_rows, uniq_rows)
            log_prob_unique = tf.clip_by_value(log_prob, LOG_MIN_PROB, 0.0)
        seen = None  # (history indices into the distinct items, their mask): the repeat penalty's input
        if self._repeat_raw is not None:
            seen = (tf.reshape(idx[batch:batch + n_hist], tf.shape(history)), hist_valid)
        loss = self._retrieval_loss(query, unique_emb, idx, cand_idx, log_prob_unique, seen)
        if content_emb is not None:
            loss += self.content_loss_weight * self._retrieval_loss(query, content_emb, idx, cand_idx,
                                                                    log_prob_unique, seen)
        if self.history_negatives > 0:
            loss += self.history_negatives * self._history_negative_loss(
                query, tf.gather(unique_emb, cand_idx), hist, history, cand_key, padding)
        self.loss_tracker.update_state(loss)
        return loss

    def _retrieval_loss(self, query, unique_emb, idx, cand_idx, log_prob_unique, seen=None):
        """The in-batch softmax loss (+ random negatives) of the queries against the
        candidates, given the distinct items' embeddings `unique_emb` (n_unique, d)."""
        if not self.num_random_negatives:
            return self._distinct_candidate_loss(query, unique_emb, cand_idx, log_prob_unique, seen)
        cols = tf.concat([cand_idx, idx[-self.num_random_negatives:]], axis=0)  # (batch + M,) into unique_emb
        log_prob = offset = None
        if self.logq:
            uniform = -tf.math.log(tf.cast(tf.shape(self._negative_pool)[0], tf.float32))
            log_prob = tf.concat([tf.gather(log_prob_unique, cand_idx),
                                  tf.fill([self.num_random_negatives], uniform)], axis=0)
        if seen is not None:  # the repeat penalty at each column that is one of the query's history items
            cols_u, col_pos = tf.unique(cols)
            offset = self.repeat_penalty / self.temperature * tf.gather(
                seen_indicator(*seen, cols_u, tf.shape(unique_emb)[0]), col_pos, axis=1)
        return in_batch_softmax_loss(query, tf.gather(unique_emb, cols), self.temperature, log_prob,
                                     cols if self.remove_accidental_hits else None, offset)

    @property
    def _pooled_history(self):
        """The "mean" history encoder only needs each query's mean history vector."""
        qt = self.query_tower
        return qt.use_history and qt.sequence == "mean" and self.history_negatives == 0

    def _query_from_pooled_history(self, features, unique_emb, hist_idx, hist_valid, training,
                                   zero_padding=False):
        """Query embeddings with the masked mean of the history computed by one fused
        sparse op over the distinct items' embeddings (no [batch, N, d] tensor and no
        gradient of that size); handed to the mean encoder as a length-1 history,
        whose mean is itself: the same result as encoding the full history. `zero_padding`:
        the padding slots of `hist_idx` point at a row of zeros (the history table's last row)."""
        batch, n = tf.shape(hist_valid)[0], tf.shape(hist_valid)[1]  # hist_valid: (batch, N), False = padding
        rows = tf.range(batch * n) // n  # sorted segment ids
        has_any = tf.reduce_any(hist_valid, axis=1, keepdims=True)  # (batch, 1)
        if zero_padding:  # padding slots read a zero row: sum all N slots, divide by the valid count
            count = tf.reduce_sum(tf.cast(hist_valid, unique_emb.dtype), axis=1, keepdims=True)
            pooled = tf.sparse.segment_sum(unique_emb, hist_idx, rows, num_segments=batch) / tf.maximum(count, 1.0)
        else:
            valid = tf.reshape(hist_valid, [-1])  # (batch * N,)
            pooled = tf.sparse.segment_mean(unique_emb, tf.boolean_mask(hist_idx, valid),
                                            tf.boolean_mask(rows, valid), num_segments=batch)  # (batch, d)
        return self.query_tower(features, pooled[:, None, :], has_any, training=training)

    def _distinct_candidate_loss(self, query, unique_emb, cand_idx, log_prob_unique, seen=None):
        """The in-batch softmax over the batch's candidates, scored once per distinct
        candidate item. Copies of an item have the same embedding and score, so
        sum_j exp(s_ij) over the batch = sum_u n_u exp(s_iu) over distinct items u with
        multiplicities n_u: logits s_iu + log n_u. Removing accidental hits keeps one
        copy of the positive (its column's multiplicity becomes 1). Equal to
        `in_batch_softmax_loss` over the full batch (float rounding aside). `seen`: the
        repeat penalty's (history indices into `unique_emb`, mask), see `compute_loss`."""
        cand_u, pos = tf.unique(cand_idx)  # cand_u: (n_c,) into unique_emb; pos: (batch,) into cand_u
        n_c = tf.shape(cand_u)[0]
        log_n = tf.math.log(tf.math.unsorted_segment_sum(tf.ones_like(pos, tf.float32), pos, n_c))  # (n_c,)
        column = log_n  # (n_c,) what each column adds to every row: log n_u, minus log Q_u (logQ correction)
        if log_prob_unique is not None:
            column -= tf.gather(log_prob_unique, cand_u)
        # The temperature divides the [batch, d] queries, and the column terms are added in one
        # pass: the fewest [batch, n_c] operations (the same scores up to float rounding).
        logits = tf.matmul(query / self.temperature, tf.gather(unique_emb, cand_u), transpose_b=True) + column
        if seen is not None:
            logits -= self.repeat_penalty / self.temperature * seen_indicator(*seen, cand_u, tf.shape(unique_emb)[0])
        if self.remove_accidental_hits:
            rows = tf.stack([tf.range(tf.shape(pos)[0]), pos], axis=1)  # (batch, 2): each positive's cell
            logits = tf.tensor_scatter_nd_sub(logits, rows, tf.gather(log_n, pos))
        loss = softmax_cross_entropy_sum(pos, logits)
        if not self.remove_accidental_hits:  # the label's logit counts every copy; the loss wants one
            loss += tf.reduce_sum(tf.gather(log_n, pos))
        return loss

    def _history_negative_loss(self, query, positive, hist, history_keys, positive_keys, padding=""):
        """Sum over the batch of -log softmax(positive | positive + own history items);
        keys: item ids (or catalogue rows), `padding` the history's padding key."""
        pos = tf.reduce_sum(query * positive, axis=-1, keepdims=True) / self.temperature  # (batch, 1)
        neg = tf.einsum("bd,bnd->bn", query, hist) / self.temperature  # (batch, N)
        # Padding and re-consumptions of the positive itself are not negatives.
        valid = tf.not_equal(history_keys, padding) & tf.not_equal(history_keys, positive_keys[:, None])
        if self._repeat_raw is not None:  # every history item is a repeat; the positive if it is one of them
            penalty = self.repeat_penalty / self.temperature
            repeat = tf.reduce_any(tf.equal(history_keys, positive_keys[:, None]) & tf.not_equal(history_keys, padding),
                                   axis=1, keepdims=True)
            pos, neg = pos - penalty * tf.cast(repeat, pos.dtype), neg - penalty
        neg = tf.where(valid, neg, tf.fill(tf.shape(neg), -1e9))
        logits = tf.concat([pos, neg], axis=1)  # (batch, 1 + N)
        return tf.reduce_sum(tf.reduce_logsumexp(logits, axis=1) - pos[:, 0])

