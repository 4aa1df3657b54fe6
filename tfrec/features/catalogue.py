"""The item catalogue and user index, with train-only statistics.

`Catalogue` fixes the item order used by evaluation (every item of the items
table, cold ones included) and holds what was fitted on the train split:
the id vocabularies and item popularity (`refitted`: on train + validation, for a
model refitted on both). Nothing here reads test.
"""
import dataclasses

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec.errors import DataError
from tfrec.features.vocabulary import Vocabulary


@dataclasses.dataclass
class Catalogue:
    """Args:
        item_ids: every item id of the items table (evaluation order).
        user_ids: every user id that appears in any split or the users table.
        item_vocab: item ids seen in train (trainable id embeddings).
        user_vocab: user ids seen in train.
        train_item_counts: train interactions per catalogue item, aligned with `item_ids`.
    """

    item_ids: np.ndarray
    user_ids: np.ndarray
    item_vocab: Vocabulary
    user_vocab: Vocabulary
    train_item_counts: np.ndarray

    @classmethod
    def fit(cls, items: pd.DataFrame, train: pd.DataFrame, all_interactions: pd.DataFrame, users=None) -> "Catalogue":
        item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
        user_pool = [all_interactions["user_id"]]
        if users is not None:
            user_pool.append(users["user_id"])
        user_ids = np.array(sorted(pd.concat(user_pool).astype(str).unique(), key=_natural), dtype=object)
        return cls(item_ids, user_ids, None, None, None).refitted(train)

    def refitted(self, train: pd.DataFrame) -> "Catalogue":
        """The same items and users (the same evaluation order) with the id vocabularies and
        item counts fitted on `train` instead: what a model trained on other interactions
        than the split's train part has (`train.refit`: train + validation)."""
        counts = train["item_id"].value_counts().reindex(self.item_ids, fill_value=0).to_numpy(dtype=np.int64)
        return dataclasses.replace(self, item_vocab=Vocabulary.fit(train["item_id"]),
                                   user_vocab=Vocabulary.fit(train["user_id"]), train_item_counts=counts)

    @property
    def n_items(self):
        return len(self.item_ids)

    @property
    def n_users(self):
        return len(self.user_ids)

    def item_index(self, ids) -> np.ndarray:
        return _index(self.item_ids, ids, "item")

    def user_index(self, ids) -> np.ndarray:
        return _index(self.user_ids, ids, "user")

    def matrix(self, interactions: pd.DataFrame, weights=None) -> sp.csr_matrix:
        """Binary (or weighted) user x item CSR over this catalogue's indices."""
        rows = self.user_index(interactions["user_id"])
        cols = self.item_index(interactions["item_id"])
        data = np.ones(len(rows), np.float32) if weights is None else np.asarray(weights, np.float32)
        m = sp.csr_matrix((data, (rows, cols)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if weights is None:
            m.data[:] = 1.0
        return m

    def time_matrix(self, interactions: pd.DataFrame) -> sp.csr_matrix:
        """User x item CSR (float64) of each pair's latest `timestamp`, with the same
        nonzeros as `matrix(interactions)`: what time-aware baselines read
        (`tfrec.evaluation.baselines.RecentPopular`)."""
        if "timestamp" not in interactions.columns:
            raise DataError("`time_matrix` needs a `timestamp` column in the interactions.")
        rows = self.user_index(interactions["user_id"])
        cols = self.item_index(interactions["item_id"])
        t = interactions["timestamp"].to_numpy(np.float64)
        order = np.lexsort((-t, cols, rows))  # per (user, item): the latest first
        keep = np.ones(order.size, bool)
        keep[1:] = (np.diff(rows[order]) != 0) | (np.diff(cols[order]) != 0)
        sel = order[keep]
        return sp.csr_matrix((t[sel], (rows[sel], cols[sel])), shape=(self.n_users, self.n_items), dtype=np.float64)

    def item_sampling_probability(self, ids) -> np.ndarray:
        """Train frequency of each id as the in-batch sampling probability (logQ)."""
        total = max(1, int(self.train_item_counts.sum()))
        idx = self.item_index(ids)
        return np.maximum(self.train_item_counts[idx], 1) / total


def _natural(s):
    return (0, int(s), "") if s.isdigit() else (1, 0, s)


def _index(universe: np.ndarray, ids, what: str) -> np.ndarray:
    lookup = pd.Index(universe)
    idx = lookup.get_indexer(pd.Index(np.asarray(ids, dtype=object).astype(str)))
    if (idx < 0).any():
        bad = np.asarray(ids, dtype=object)[idx < 0][:5]
        raise DataError(f"Unknown {what} id(s) {list(bad)}: not in the catalogue.")
    return idx
