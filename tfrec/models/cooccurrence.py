"""An item-item co-occurrence block in the retrieval space: EASE's scores, factorised.

The towers score a user against an item through one vector each; what they learn of
"people who consumed j also consumed i" is only what fits that vector. Where test items
sit among the train items in time (a random split, a basket to complete), that
item-item signal is most of what there is to know, and a closed-form item-item model,
EASE (Steck, 2019; `tfrec.evaluation.baselines.EASE`), ranks better than the towers
alone. This block adds its scores to the model's, with a weight w:

    score(u, i) = the model's score + w * sum over the user's known items j of B[j, i]
    B = argmin ||X - X B||^2 + l2 ||B||^2 subject to diag(B) = 0     (X: users x items, 0/1)

B is factorised by a truncated SVD, B ~ P Q^T with rank r, so the term is a dot product
of two more blocks of the retrieval space: the query's sum of P over its known items
(the `profile_history` feature, as the text profile reads it) against each item's
w * Q_i. Brute-force and ANN indexes, the SavedModel signatures and `index_items` score
it with no other change; items B does not know (new, out of the catalogue) get a zero
block, and catalogue items without interactions (cold items) one that is zero up to
rounding (~1e-16: B's column for them is 0, its factorisation nearly). Nothing is
trained with the towers: B is fitted in closed form after training
(`HybridRetrieval.set_cooccurrence`), and `tfrec run` chooses w on validation jointly
with the popularity prior (`tfrec.cli.retrieval_stage.tune_cooccurrence`), with B fitted
on the fit part, then refits B on train + validation for test and serving (as the
popularity prior counts everything known).

Cost: fitting inverts an I x I matrix and takes its SVD, O(I^3) time and O(I^2) memory,
so catalogues above `MAX_ITEMS` are refused; the retrieval space grows by r dimensions.
B is a snapshot: `Recommender.observe` extends the histories the query block reads but
does not refit B (`set_cooccurrence` again does, or a new run).
"""
import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from tfrec.errors import ConfigError
from tfrec.evaluation.baselines.ease import ease_weights  # the EASE baseline's closed form
from tfrec.models.bags import sum_rows

MAX_ITEMS = 20_000  # EASE's dense I x I inverse: ~3 GB of float64 at this size


def factorise(weights, rank):
    """(P [I, r], Q [I, r]) with P Q^T the best rank-r approximation of `weights` (its
    truncated SVD; r = min(rank, I))."""
    u, s, vt = np.linalg.svd(weights, full_matrices=False)
    r = min(int(rank), len(s))
    return u[:, :r] * s[:r], vt[:r].T


class Cooccurrence(tf.Module):
    """The co-occurrence block of a hybrid model (module docstring).

    Args:
        item_ids: the catalogue's item ids (the items B covers; others get zeros).
        interactions: DataFrame with user_id and item_id: the known interactions B is fitted on.
        weight: w > 0, in the model's score units (cosines).
        l2: EASE's L2 penalty (> 0).
        rank: r >= 1, the factorisation's rank (at most the number of items).
        length: how many of the user's newest known items the query block reads.
    """

    def __init__(self, item_ids, interactions, weight, l2=250.0, rank=256, length=1000):
        super().__init__(name="cooccurrence")
        if not weight > 0 or not l2 > 0 or int(rank) < 1 or int(length) < 1:
            raise ConfigError(f"The co-occurrence block needs a weight > 0, an l2 > 0, a rank >= 1 and a length >= 1, "
                              f"got {weight}, {l2}, {rank} and {length}. Fix: `model.cooccurrence_l2` / "
                              "`model.cooccurrence_rank`, or `--model.cooccurrence=0` for none.")
        ids = [str(i) for i in item_ids]
        if len(ids) > MAX_ITEMS:
            raise ConfigError(f"The co-occurrence block fits a dense {len(ids):,} x {len(ids):,} item-item model, "
                              f"which is too large (at most {MAX_ITEMS:,} items). Fix: `--model.cooccurrence=0`.")
        self.weight, self.l2, self.length = float(weight), float(l2), int(length)
        cols = pd.Index(ids).get_indexer(interactions["item_id"].astype(str))
        known = cols >= 0
        users = pd.factorize(interactions["user_id"].astype(str)[known])[0]
        x = sp.csr_matrix((np.ones(len(users)), (users, cols[known])), shape=(users.max(initial=-1) + 1, len(ids)))
        x.data[:] = 1.0  # 0/1: an item consumed twice counts once
        p, q = factorise(ease_weights(x, self.l2), rank)
        self.rank = int(p.shape[1])
        zero = np.zeros((1, self.rank))
        self.item_ids = ids
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
            default_value=len(ids))  # the extra zero row: "" and unknown ids
        self.query_rows = tf.constant(np.concatenate([p, zero]).astype(np.float32))  # (I + 1, r)
        self._q = np.concatenate([q, zero])  # (I + 1, r) float64: `reweight` scales it as the fit did
        self.reweight(self.weight)

    def reweight(self, weight):
        """The same fitted B with weight w > 0 (no refit): item rows w * Q, as a fit with w gives them."""
        if not weight > 0:
            raise ConfigError(f"The co-occurrence block's weight must be > 0, got {weight}.")
        self.weight = float(weight)
        self.item_rows = tf.constant((self.weight * self._q).astype(np.float32))  # (I + 1, r)

    def item_columns(self, item_ids):
        """[..., r]: w * Q_i for item ids [...] (zeros for items B does not know)."""
        return tf.gather(self.item_rows, self.table.lookup(item_ids))

    def query_columns(self, history):
        """[b, r]: the sum of P_j over the distinct items of each query's history ids [b, L]
        (as EASE's 0/1 user vector: an item consumed twice counts once; "" pads and unknown ids add 0)."""
        rows = tf.sort(self.table.lookup(history), axis=1)  # (b, L), equal items side by side
        first = tf.concat([tf.ones_like(rows[:, :1], tf.bool), rows[:, 1:] != rows[:, :-1]], axis=1)
        return sum_rows(self.query_rows, rows, first)
