"""Content and collaborative evidence for a recommended item, independent of the model.

* `CoOccurrence`: how many train users interacted with both a history item and the
  recommended item ("people who watched X also watched Y"), from one sparse
  user x item matrix built once.
* `shared_values`: values of a multi-valued ("|"-joined) item column, e.g. genres,
  that the recommended item shares with the history, counted over the history.
* `text_similarity`: cosine of the cached item-text embeddings (BERT) of the
  recommended item and each history item.
* `shared_words`: the words whose TF-IDF weights make up the text profile's lexical term
  (`tfrec.models.lexical`), each with its exact part of the score.
"""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec.errors import DataError


class CoOccurrence:
    """Args:
        interactions: train interactions with `user_id` and `item_id` columns.
        item_ids: catalogue ids; counts are indexed in this order. Interactions with
            items outside it are ignored; repeated (user, item) pairs count once.
    """

    def __init__(self, interactions: pd.DataFrame, item_ids):
        missing = [c for c in ("user_id", "item_id") if c not in interactions.columns]
        if missing:
            raise DataError(f"`train_interactions` needs columns `user_id` and `item_id`; missing {missing}.")
        self.item_ids = np.asarray(item_ids, dtype=object).astype(str)
        index = pd.Index(self.item_ids)
        cols = index.get_indexer(interactions["item_id"].astype(str))
        keep = cols >= 0
        users, rows = np.unique(interactions["user_id"].astype(str).to_numpy()[keep], return_inverse=True)
        x = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows, cols[keep])),
                          shape=(len(users), len(self.item_ids)))
        x.sum_duplicates()
        x.data[:] = 1.0  # repeated (user, item) pairs were summed: binary again
        self.matrix = x.tocsc()  # (users, items): column slices are cheap
        self.popularity = np.asarray(self.matrix.sum(axis=0)).ravel().astype(np.int64)  # (items,)
        self._index = index

    def rows(self, ids) -> np.ndarray:
        """Catalogue rows of ids (-1 for unknown ids)."""
        return self._index.get_indexer([str(i) for i in ids])

    def counts(self, item_id, others) -> np.ndarray:
        """Number of train users who interacted with both `item_id` and each of `others` (int [len(others)])."""
        r = self.rows([item_id])[0]
        rows = self.rows(others)
        if r < 0:
            return np.zeros(len(rows), np.int64)
        users = self.matrix[:, r]  # (users, 1)
        both = np.asarray((self.matrix.T @ users).todense()).ravel()  # (items,)
        return np.where(rows >= 0, both[np.maximum(rows, 0)], 0).astype(np.int64)


def split_values(value) -> list:
    """"Animation|Comedy" -> ["Animation", "Comedy"]; NaN / "" -> []."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [v for v in str(value).split("|") if v]


def shared_values(item_value, history_values) -> list:
    """[(value, number of history items having it)] for each value of the item that
    at least one history item has, most frequent first (ties: the item's order)."""
    counts = []
    for v in split_values(item_value):
        n = sum(v in split_values(h) for h in history_values)
        if n:
            counts.append((v, n))
    return sorted(counts, key=lambda c: -c[1])


def text_similarity(embeddings: np.ndarray, row: int, history_rows) -> np.ndarray:
    """Cosine similarity [len(history_rows)] of item `row`'s text embedding with each history row's."""
    e = np.asarray(embeddings, np.float32)
    a = e[row]
    b = e[np.asarray(history_rows, int)]  # (n, t)
    denom = np.maximum(np.linalg.norm(b, axis=1) * np.linalg.norm(a), 1e-12)
    return (b @ a / denom).astype(np.float32)


def shared_words(item_columns: np.ndarray, query_columns: np.ndarray, terms, k=5) -> list:
    """[[(word, part of the score)] per item]: the lexical term's score is the dot product of an item's
    columns [m, V] (v x its unit TF-IDF vector; 0 for an item with a trained id) with the query's [V] (the
    normalised TF-IDF profile of its history), so each word's product is its exact part; the k largest
    positive ones, largest first (ties: column order)."""
    parts = np.asarray(item_columns, np.float64) * np.asarray(query_columns, np.float64)[None, :]  # (m, V)
    out = []
    for row in parts:
        top = [j for j in np.argsort(-row, kind="stable")[:int(k)] if row[j] > 0]
        out.append([(str(terms[j]), float(row[j])) for j in top])
    return out
