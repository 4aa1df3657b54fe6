"""How much each input of a query contributed to an item's score.

The score of item i for a query is dot(query embedding, item embedding), both
L2-normalised (`HybridRetrieval`), minus the model's learned repeat penalty when i is
one of the query's history items (models trained with `repeat_penalty`). Three
attributions, all for one query at a time:

* leave-one-out over the history: remove history item j (the older items move one
  position towards the newest, "" pads on the left, exactly the history the user
  would have without it) and re-score; contribution_j = score - score without j.
  For the mean and GRU encoders this equals masking position j; for SASRec it does
  not (its output is the newest position's, which a mask would zero), so removal
  is the exact deletion for every encoder. The N variants run as one batch of N + 1
  queries.
* gradient x input over the history item vectors: sum_e dscore/dh_je * h_je, one
  backward pass. A first-order estimate of the same quantity, cheaper, and not
  the deletion itself (so a deletion test of it is not tautological).
* occlusion of the user attributes and the request time: replace one feature by
  the value an unknown user has ("" for categories, -1 for numbers, the OOV token
  that user-id dropout trains for the user id) or the timestamp by the end of the
  train period, and re-score.
"""
import numpy as np
import tensorflow as tf

from tfrec.data.history import PAD

UNKNOWN_NUMBER = -1.0  # what `QueryFeatures.attributes` gives an unknown user (bucket 0)
# Any id outside the vocabulary maps to the OOV row; this is the one `QueryTower`'s
# user-id dropout uses. ("" would not do: it is the id lookup's mask token.)
UNKNOWN_USER = "\x00oov"


def history_variants(features: dict) -> dict:
    """One query (batch 1, history [1, N]) -> N + 1 queries: row 0 as given, row
    1 + j without history item j (left-padded back to N)."""
    hist = np.asarray(features["history"], dtype=object)  # (1, N)
    n = hist.shape[1]
    variants = [hist[0]] + [np.concatenate([[PAD], np.delete(hist[0], j)]) for j in range(n)]
    variants = np.array(variants, dtype=object).reshape(n + 1, n)  # (N + 1, N)
    out = {k: np.repeat(np.asarray(v), n + 1, axis=0) for k, v in features.items() if k != "history"}
    out["history"] = variants
    return out


def occlusion_variants(features: dict, names, neutral_time: int) -> dict:
    """One query -> len(names) queries, row r with feature names[r] made unknown."""
    rows = []
    for name in names:
        row = {k: np.array(v, copy=True) for k, v in features.items()}
        v = row[name]
        if name == "timestamp":
            row[name] = np.full_like(v, int(neutral_time))
        elif name == "user_id":
            row[name] = np.full_like(v, UNKNOWN_USER)
        elif v.dtype == object:
            row[name] = np.full_like(v, "")
        else:
            row[name] = np.full_like(v, UNKNOWN_NUMBER)
        rows.append(row)
    return {k: np.concatenate([r[k] for r in rows]) for k in features}


def _scores(query_fn, features, item_vectors):
    q = query_fn({k: tf.constant(v) for k, v in features.items()}).numpy()  # (rows, d)
    return q @ np.asarray(item_vectors, np.float32).T  # (rows, m)


def repeat_hits(histories, item_ids) -> np.ndarray:
    """bool [rows, m]: whether item m is one of row r's history items (padding never is)."""
    hist = np.asarray(histories, dtype=object).astype(str)  # (rows, N)
    items = np.asarray(list(item_ids), dtype=object).astype(str)
    return ((hist[:, :, None] == items[None, None, :]) & (hist[:, :, None] != PAD)).any(axis=1)


def _penalised(scores, histories, item_ids, repeat_penalty):
    """`scores` [rows, m] minus the model's repeat penalty where item m is in row r's
    history: the score `Recommender.recommend` ranks by (`HybridScorer.penalise`)."""
    if not repeat_penalty:
        return scores
    if item_ids is None:
        raise ValueError("A repeat penalty needs the explained `item_ids` (which of them are history items).")
    return scores - float(repeat_penalty) * repeat_hits(histories, item_ids)


def leave_one_out(query_fn, features: dict, item_vectors: np.ndarray, item_ids=None, repeat_penalty=0.0):
    """Returns (score [m], contributions [m, N]): score drop of each of m items when
    history position j is removed; 0 at padded positions. With a `repeat_penalty` p
    (the model's, see `tfrec.models.repeat`) the scores are the penalised ones: an item
    in the history scores p lower, so removing its own history entry adds p back
    (a negative contribution of -p plus whatever the entry did to the query)."""
    variants = history_variants(features)
    s = _penalised(_scores(query_fn, variants, item_vectors), variants["history"], item_ids,
                   repeat_penalty)  # (N + 1, m)
    drop = (s[0][None, :] - s[1:]).T  # (m, N)
    real = np.asarray(features["history"])[0] != PAD
    return s[0], np.where(real[None, :], drop, 0.0).astype(np.float32)


def occlusion(query_fn, features: dict, item_vectors: np.ndarray, names, neutral_time: int, score=None,
              item_ids=None, repeat_penalty=0.0):
    """Score change [m, len(names)] when each named feature is made unknown (positive:
    the feature raised the score). The history is the same in every row, so a repeat
    penalty (see `leave_one_out`) cancels; `score` must be penalised like the rows."""
    if not len(names):
        return np.zeros((len(item_vectors), 0), np.float32)
    if score is None:
        score = _penalised(_scores(query_fn, features, item_vectors), features["history"], item_ids,
                           repeat_penalty)[0]
    rows = occlusion_variants(features, names, neutral_time)
    s = _penalised(_scores(query_fn, rows, item_vectors), rows["history"], item_ids, repeat_penalty)  # (A, m)
    return (score[None, :] - s).T.astype(np.float32)  # (m, A)


class GradientTimesInput:
    """gradient x input of item scores over the history item vectors of one query.

    Args:
        model: a `HybridRetrieval` (needs `item_vectors` and `query_embedding(...,
            history_vectors=)`).
    """

    def __init__(self, model):
        self.model = model
        self._fn = tf.function(self._gxi, reduce_retracing=True)

    def _gxi(self, features, item_vectors):
        # features: batch m (the one query tiled once per item); item_vectors (m, d).
        # Rows are independent at inference, so the gradient of sum_r score_r with
        # respect to row r's history vectors is score_r's own gradient.
        hv = self.model.item_vectors(features["history"], training=False)  # (m, N, d): the towers' own vectors
        with tf.GradientTape() as tape:
            tape.watch(hv)
            q = self.model.query_embedding(features, training=False, history_vectors=hv)  # (m, d)
            total = tf.reduce_sum(q * item_vectors)  # sum over rows of score_r
        g = tape.gradient(total, hv, unconnected_gradients=tf.UnconnectedGradients.ZERO)  # (m, N, d)
        return tf.reduce_sum(g * hv, axis=-1)  # (m, N)

    def __call__(self, features: dict, item_vectors: np.ndarray) -> np.ndarray:
        """features: one query (batch 1); item_vectors [m, d] -> [m, N]."""
        m = len(item_vectors)
        tiled = {k: tf.constant(np.repeat(np.asarray(v), m, axis=0)) for k, v in features.items()}
        out = self._fn(tiled, tf.constant(np.asarray(item_vectors, np.float32))).numpy()
        real = np.asarray(features["history"])[0] != PAD
        return np.where(real[None, :], out, 0.0).astype(np.float32)
