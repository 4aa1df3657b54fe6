"""The repeat penalty: a learned score offset for items already in the query's history.

With `repeat_penalty=True` the hybrid retriever scores item i for a query whose
history input holds i as cos(q, v_i) - p (p >= 0, learned with the towers; the
history is the model's own `history` input, the last N items it reads). The
in-batch softmax then learns p from how often the next item is one the user has
just had: on data where nobody consumes an item twice (MovieLens ratings) p grows
until seen items drop out of the top of the list, on repeat-heavy data (music,
groceries) it stays near 0. It is part of the model's score everywhere: the
training losses, `HybridScorer` (evaluation, validation), and the exported
retrieval signatures (`tfrec.export.retrieval`), which retrieve k + N candidates
and re-rank them with the offset; that is exact because the offset only lowers scores.
It is a learned part of the scoring function, not the evaluation masking a protocol may
or may not apply: `recbole_sequential` masks nothing, and a history item still
wins a slot when its score beats the others' by more than p.
"""
import numpy as np
import pandas as pd
import tensorflow as tf


def penalty_from_raw(raw):
    """The penalty p = softplus(raw) >= 0 (cosine units; the loss divides by the temperature)."""
    return tf.nn.softplus(raw)


def seen_indicator(hist_idx, hist_valid, cand_u, n_unique):
    """float32 [batch, n_c]: 1 where candidate column j (`cand_u[j]`, an index into the
    batch's distinct items) is one of query b's history items (`hist_idx` [batch, N],
    indices into the same distinct items; `hist_valid` False = padding), else 0."""
    n_c = tf.shape(cand_u)[0]
    column = tf.tensor_scatter_nd_update(tf.fill([n_unique], -1), cand_u[:, None], tf.range(n_c))
    cols = tf.gather(column, hist_idx)  # (batch, N); -1: the history item is not a candidate
    ok = hist_valid & (cols >= 0)
    rows = tf.broadcast_to(tf.range(tf.shape(hist_idx)[0])[:, None], tf.shape(hist_idx))
    coords = tf.stack([tf.boolean_mask(rows, ok), tf.boolean_mask(cols, ok)], axis=1)
    counts = tf.scatter_nd(coords, tf.ones([tf.shape(coords)[0]], tf.float32), [tf.shape(hist_idx)[0], n_c])
    return tf.minimum(counts, 1.0)  # an item twice in a history is penalised once


def history_cells(histories, index: pd.Index):
    """(rows, cols) int arrays, each (row, item) pair once: the catalogue positions
    (`index`, a pd.Index of the item ids) of each `histories[r]`'s items ("" padding
    and unknown ids skipped)."""
    hist = np.asarray(histories, dtype=object).astype(str)
    cols = index.get_indexer(hist.ravel()).reshape(hist.shape)
    rows = np.broadcast_to(np.arange(hist.shape[0])[:, None], hist.shape)
    ok = cols >= 0
    cells = np.unique(np.stack([rows[ok], cols[ok]], axis=1), axis=0).reshape(-1, 2)
    return cells[:, 0], cells[:, 1]


def rerank_with_penalty(scores, rows, history_rows, penalty, k):
    """Top k of index results after the repeat penalty. `scores`, `rows` [batch, m]
    (the index's top m >= k + N, rows -1 = empty), `history_rows` [batch, N] (catalogue
    rows of the query's history, -1 = padding / unknown), `penalty` a scalar >= 0.
    Every item of the penalised top k is among the unpenalised top k + N (the
    penalty only lowers the scores of at most N items), so this is exact."""
    seen = in_history(rows, history_rows, padding=-1)  # (batch, m)
    scores = scores - tf.cast(seen, scores.dtype) * tf.cast(penalty, scores.dtype)
    top = tf.math.top_k(scores, k=k)
    return top.values, tf.gather(rows, top.indices, batch_dims=1)


def in_history(candidates, history, padding=""):
    """bool [b, c]: whether candidate c of row b (`candidates` [b, c]) is one of that row's
    `history` [b, N] keys (`padding` never is)."""
    return tf.reduce_any(tf.equal(candidates[:, :, None], history[:, None, :])
                         & tf.not_equal(history, padding)[:, None, :], axis=2)


def repeat_logits(model, features, candidate_ids):
    """float [b, c]: the model's repeat penalty in its logit units (p / temperature) where
    candidate c of row b is one of that row's `features["history"]` items, else 0; zeros
    for a model without a penalty. What a two-stage blend subtracts from the retriever's
    cosine / T so that its "full score" is the one retrieval ranked by."""
    if model.repeat_penalty is None:
        return tf.zeros(tf.shape(candidate_ids), tf.float32)
    hit = in_history(candidate_ids, features["history"])
    return model.repeat_penalty / model.temperature * tf.cast(hit, tf.float32)
