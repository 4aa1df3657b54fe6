"""Two-stage scoring: retrieve the top-N of the full catalogue, re-rank them.

`TwoStageScorer.score_queries` returns full-catalogue scores (what
`tfrec.evaluation` ranks) in which the N retrieved candidates are ordered by the
ranker and sit above every other item, and the rest keep the retrieval order
below them. Metrics @K <= N are then exactly those of the two-stage list.
"""
import weakref

import numpy as np
import pandas as pd
import tensorflow as tf

from tfrec.models.scoring import HybridScorer, first_events

BELOW = 1e3  # a candidate's relevance is clipped at -BELOW / 2 (-inf and the like stay finite)
_FUNCTIONS = weakref.WeakKeyDictionary()


def ranker_function(ranker):
    """tf.function(features, candidate_ids) -> (relevance, rating), one per ranker."""
    if ranker not in _FUNCTIONS:
        def fn(features, candidate_ids):
            out = ranker.score(features, candidate_ids, training=False)
            return out["relevance"], out["rating"]

        _FUNCTIONS[ranker] = tf.function(fn, reduce_retracing=True)
    return _FUNCTIONS[ranker]


def rank_candidates(ranker, features: dict, candidate_ids: np.ndarray, batch_size=256):
    """Ranker scores of candidate ids string [n, c] for raw query features (n rows)
    -> (relevance [n, c], rating [n, c]) numpy."""
    fn = ranker_function(ranker)
    rel, rat = [], []
    n = len(candidate_ids)
    for i in range(0, n, batch_size):
        r, t = fn({k: tf.constant(v[i:i + batch_size]) for k, v in features.items()},
                  tf.constant(np.asarray(candidate_ids[i:i + batch_size], dtype=object)))
        rel.append(r.numpy())
        rat.append(t.numpy())
    if not rel:
        c = candidate_ids.shape[1] if candidate_ids.ndim == 2 else 0
        return np.zeros((0, c), np.float32), np.zeros((0, c), np.float32)
    return np.concatenate(rel), np.concatenate(rat)


class TwoStageScorer:
    """Args:
        retrieval: a trained `HybridRetrieval`.
        ranker: a trained `HybridRanker`.
        query_features: the fitted `QueryFeatures`.
        context: interactions known to the system (histories).
        catalogue: the `Catalogue` (item order, user index).
        exclude: interactions whose items may not be candidates for their user (the
            seen items), or None.
        n_candidates: N, items retrieved per query before ranking.
    """

    def __init__(self, retrieval, ranker, query_features, context, catalogue, exclude: pd.DataFrame = None,
                 n_candidates=200, batch_size=256):
        self.retrieval = HybridScorer(retrieval, query_features, context, catalogue.item_ids)
        self.ranker = ranker
        self.catalogue = catalogue
        self.item_ids = self.retrieval.item_ids
        self.n_candidates = int(min(n_candidates, len(self.item_ids)))
        self.batch_size = int(batch_size)
        self.exclude = catalogue.matrix(exclude).tocsr() if exclude is not None and len(exclude) else None

    def candidates(self, queries: pd.DataFrame):
        """(retrieval scores [n, I], candidate item indices [n, N] best first, features)."""
        feats = self.retrieval.features(queries)
        scores = self.retrieval.score_features(feats)  # (n, I)
        masked = scores.copy()
        if self.exclude is not None:
            users = queries["user_idx"].to_numpy() if "user_idx" in queries.columns else \
                self.catalogue.user_index(queries["user_id"].astype(str))
            rows, cols = self.exclude[users].nonzero()
            masked[rows, cols] = -np.inf
        n = self.n_candidates
        top = np.argpartition(-masked, n - 1, axis=1)[:, :n]
        order = np.argsort(-np.take_along_axis(masked, top, axis=1), axis=1, kind="stable")
        return scores, np.take_along_axis(top, order, axis=1), feats

    def ranked_candidates(self, queries: pd.DataFrame):
        """(retrieval scores [n, I], candidate indices [n, N], ranker relevance [n, N])."""
        scores, cand, feats = self.candidates(queries.reset_index(drop=True))
        rel, _ = rank_candidates(self.ranker, feats, self.item_ids[cand], self.batch_size)
        return scores, cand, rel

    @staticmethod
    def assemble(scores, cand, rel) -> np.ndarray:
        """Full-catalogue scores: the candidates by `rel`, above the rest in retrieval order.

        The rest are the retrieval scores shifted to end 1 below the lowest candidate,
        computed in float64 and cast once: in float32 near the scores' own magnitude,
        so the retrieval order survives the cast as well as it survives in the scores
        (a shift to -1,000, as before session 14, merged neighbours closer than 6e-5:
        up to 7% of a row's items tied)."""
        rel = np.clip(np.asarray(rel, np.float64), -BELOW / 2, None)
        floor = np.min(rel, axis=1, keepdims=True) - 1.0 if rel.shape[1] else 0.0  # (n, 1)
        out = np.asarray(scores, np.float64) - np.max(scores, axis=1, keepdims=True) + floor
        np.put_along_axis(out, cand, rel, axis=1)
        return out.astype(np.float32)

    def score_queries(self, queries: pd.DataFrame) -> np.ndarray:
        return self.assemble(*self.ranked_candidates(queries))

    def user_matrix_scorer(self, catalogue, events: pd.DataFrame):
        """A `score_fn(user_idx) -> [b, I]` with each user's query at their first event of
        `events` (the per-user protocol of `tfrec run`)."""
        first = first_events(catalogue, events)
        rows = pd.Series(np.arange(len(first)), index=first["user_idx"].to_numpy())
        full = self.score_queries(first)

        def fn(user_idx):
            idx = np.asarray(user_idx)
            return full[rows.loc[idx].to_numpy()]

        return fn
