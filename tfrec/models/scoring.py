"""Scoring queries against the whole catalogue with a trained hybrid model.

A query is an event (user, time): its history comes from `context` (the
interactions known at that time, strictly before it), so evaluation and serving
see exactly what a live system would. A whole-profile query ("profile", see
`tfrec.evaluation.queries.QUERY_HISTORIES`) is the same event moved to the end of
the user's known profile, so it sees all of it.
"""
import weakref

import numpy as np
import pandas as pd
import scipy.sparse as sp
import tensorflow as tf

from tfrec.data.history import PAD, histories
from tfrec.errors import ConfigError
from tfrec.models.repeat import history_cells
from tfrec.models.text_profile import PROFILE_FEATURE

# One pair of traced functions per model, reused by every scorer of that model
# (validation builds a scorer each epoch; re-tracing each time is slow and noisy).
_FUNCTIONS = weakref.WeakKeyDictionary()
# `HybridScorer._embed_by_length`: queries per call, and the profile window passed in multiples of this many columns
ROWS_PER_CALL, WIDTH_STEP = 256, 64


def _functions(model):
    if model not in _FUNCTIONS:
        _FUNCTIONS[model] = (
            tf.function(lambda ids: model.item_embeddings(ids, training=False), reduce_retracing=True),
            tf.function(lambda f: model.query_embedding(f, training=False), reduce_retracing=True))
    return _FUNCTIONS[model]


class HybridScorer:
    """Args:
        model: a trained `HybridRetrieval`.
        query_features: the fitted `QueryFeatures`.
        context: interactions known to the system (history source).
        item_ids: catalogue ids, in evaluation order.
    """

    def __init__(self, model, query_features, context: pd.DataFrame, item_ids, batch_size=2048):
        self.model = model
        self.query_features = query_features
        self.context = context
        self.batch_size = int(batch_size)
        self.item_ids = np.asarray(item_ids, dtype=object).astype(str)
        self._index = pd.Index(self.item_ids)  # id -> catalogue position (the repeat penalty's items)
        self._item_fn, query_fn = _functions(model)
        self.space_version = getattr(model, "space_version", 0)  # the model's item vectors this scorer holds
        self.item_embeddings = np.concatenate([
            self._item_fn(tf.constant(self.item_ids[i:i + self.batch_size])).numpy()
            for i in range(0, len(self.item_ids), self.batch_size)])  # (I, d)

        def checked_query_fn(features):
            q = query_fn(features)
            if q.shape[-1] != self.item_embeddings.shape[1]:
                raise ConfigError(
                    f"The model's query vectors have {q.shape[-1]} dimensions and this scorer's item vectors "
                    f"{self.item_embeddings.shape[1]}: the model's retrieval space changed after the scorer was built "
                    "(`model.set_text_profile`). Fix: build the HybridScorer after the change (a Recommender: call "
                    "`Recommender.set_text_profile`, which rebuilds its own).")
            return q

        self._query_fn = checked_query_fn

    def features(self, events: pd.DataFrame) -> dict:
        """Raw query features (name -> numpy) for events (user_id, timestamp); a
        `history` column (one sequence per row, e.g. from `tfrec.evaluation.protocols`)
        is used as given, else histories come from `context` (items strictly before
        each timestamp). A `request_time` column (profile queries) is the time the
        model is asked at, in place of `timestamp`."""
        events = events.reset_index(drop=True)
        if "request_time" in events.columns:
            events = events.assign(timestamp=events["request_time"].to_numpy(np.int64))
        profile = getattr(self.model, "profile_length", None)  # blocks reading a longer history (models/space.py)
        if "history" in events.columns:
            feats = {"user_id": events["user_id"].astype(str).to_numpy(dtype=object),
                     "timestamp": events["timestamp"].to_numpy(dtype=np.int64),
                     "history": newest(events["history"], self.query_features.history_length)}
            feats.update(self.query_features.attributes(feats["user_id"]))
            if profile is not None:
                feats[PROFILE_FEATURE] = newest(events["history"], profile)
            return feats
        feats = self.query_features.build(events, context=self.context)
        if profile is not None:
            feats[PROFILE_FEATURE] = histories(events, profile, context=self.context)
        return feats

    def query_embeddings(self, events: pd.DataFrame) -> np.ndarray:
        """Query vectors for events (user_id, timestamp); see `features`."""
        return self._embed(self.features(events))

    def _embed(self, feats) -> np.ndarray:
        n = len(feats["user_id"])
        window = feats.get(PROFILE_FEATURE)
        if window is not None and np.ndim(window) == 2 and np.shape(window)[1] > WIDTH_STEP:
            return self._embed_by_length(feats, n)
        out = []
        for i in range(0, n, self.batch_size):
            out.append(self._query_fn({k: tf.constant(v[i:i + self.batch_size]) for k, v in feats.items()}).numpy())
        return np.concatenate(out) if out else np.zeros((0, self.item_embeddings.shape[1]), np.float32)

    def _embed_by_length(self, feats, n):
        """`_embed` for queries with a `profile_history` (padded to the longest window the blocks read,
        1,000 items for the text profile): the rows in order of their history's length, `ROWS_PER_CALL`
        at a time, each call given only the columns where one of its rows has an item (rounded up to
        `WIDTH_STEP`). The blocks read the window as a bag, so columns that are padding in every row of
        the call change nothing; most histories are far shorter than the window, and the call's work
        (the text profile gathers [rows, width, 384] floats) follows the longest of its rows."""
        dim = self.item_embeddings.shape[1]
        window = np.asarray(feats[PROFILE_FEATURE], dtype=object)
        filled = window != PAD
        lengths = np.where(filled.any(axis=1), window.shape[1] - filled.argmax(axis=1), 0)  # from the first item on
        order = np.argsort(lengths, kind="stable")
        out = np.empty((n, dim), np.float32)
        for i in range(0, n, ROWS_PER_CALL):
            rows = order[i:i + ROWS_PER_CALL]
            width = min(window.shape[1], max(1, -(-int(lengths[rows].max()) // WIDTH_STEP)) * WIDTH_STEP)
            chunk = {k: tf.constant(v[rows]) for k, v in feats.items() if k != PROFILE_FEATURE}
            chunk[PROFILE_FEATURE] = tf.constant(window[rows, window.shape[1] - width:])
            out[rows] = self._query_fn(chunk).numpy()
        return out

    def score_queries(self, queries: pd.DataFrame) -> np.ndarray:
        """[n_queries, n_items] scores; `queries` has user_id and timestamp columns.
        With a repeat penalty p, the items of a query's own history score p lower."""
        return self.score_features(self.features(queries))

    def score_features(self, feats) -> np.ndarray:
        """`score_queries` for raw query features (`features`' output)."""
        self.check_current()
        return self.penalise(self._embed(feats) @ self.item_embeddings.T, feats["history"])

    @property
    def stale(self) -> bool:
        """Whether the model's item vectors changed after this scorer took them (`set_popularity_prior`,
        `set_cold_neighbours`, `set_text_profile`): `item_embeddings` is a snapshot."""
        return getattr(self.model, "space_version", 0) != self.space_version

    def check_current(self):
        """Raises a clear error if this scorer is `stale` (its scores would be the old model's)."""
        if self.stale:
            raise ConfigError(
                "The model's item vectors changed after this HybridScorer was built (`set_popularity_prior`, "
                "`set_cold_neighbours` or `set_text_profile`), so its scores would be the old model's. Fix: build "
                "a new HybridScorer after the change (a Recommender rebuilds its own when asked next).")

    def penalise(self, scores, histories):
        """`scores` [n, n_items] with the model's repeat penalty subtracted, once, at each
        row's `histories[r]` items (in place; returned). Without a penalty: unchanged."""
        if self.model.repeat_penalty is not None:
            rows, cols = history_cells(histories, self._index)
            scores[rows, cols] -= float(self.model.repeat_penalty)
        return scores

    def repeat_offsets(self, histories) -> sp.csr_matrix:
        """[n, n_items] sparse: the repeat penalty at each row's history items (empty without one)."""
        shape = (len(histories), len(self.item_ids))
        if self.model.repeat_penalty is None:
            return sp.csr_matrix(shape, dtype=np.float32)
        rows, cols = history_cells(histories, self._index)
        return sp.csr_matrix((np.full(rows.size, float(self.model.repeat_penalty), np.float32), (rows, cols)),
                             shape=shape)

    def user_matrix(self, catalogue, events: pd.DataFrame, with_offsets=False):
        """[U, d] query embeddings at each user's FIRST event in `events` (the start of
        their evaluation period); zero rows for users without events. `with_offsets`:
        also those queries' `repeat_offsets`, [U, n_items] sparse, a row per user."""
        first = first_events(catalogue, events)
        feats = self.features(first)
        emb = self._embed(feats)
        users = first["user_idx"].to_numpy()
        out = np.zeros((catalogue.n_users, emb.shape[1]), np.float32)
        out[users] = emb
        if not with_offsets:
            return out
        cells = self.repeat_offsets(feats["history"]).tocoo()
        return out, sp.csr_matrix((cells.data, (users[cells.row], cells.col)),
                                  shape=(catalogue.n_users, len(self.item_ids)))


def newest(sequences, n) -> np.ndarray:
    """[len(sequences), n] item-id strings: each sequence's newest n items, oldest first, padded on the left (PAD)."""
    rows = [[str(x) for x in list(h)[-n:]] for h in sequences]
    return np.array([[PAD] * (n - len(r)) + r for r in rows], dtype=object).reshape(len(rows), n)


def first_events(catalogue, events: pd.DataFrame) -> pd.DataFrame:
    """Each user's first event of `events` (ties: the earlier row), with its `user_idx`."""
    first = events.sort_values("timestamp", kind="mergesort").groupby("user_id", sort=False).head(1)
    return first.assign(user_idx=catalogue.user_index(first["user_id"].astype(str))).reset_index(drop=True)


class FullCatalogueValidation(tf.keras.callbacks.Callback):
    """Adds `val_recall@K` / `val_ndcg@10` (full catalogue; train items excluded
    unless the protocol keeps seen items) to the epoch logs, so `EarlyStopping`
    can monitor them. Each validation user is asked once: at their first validation
    event ("before_event"), or at the end of their train profile ("profile")."""

    def __init__(self, query_features, train, val, catalogue, k=20, log=print, exclude_seen=True,
                 query_history="before_event", select_metric="ndcg@10"):
        from tfrec.evaluation.tuning import metric_cutoff

        super().__init__()
        self.query_features, self.train, self.val, self.catalogue, self.k, self.log = (
            query_features, train, val, catalogue, int(k), log)
        # What choices made on this validation after training maximise (the popularity prior): the
        # protocol's selection metric, as for the baselines; `evaluate` computes it too.
        self.select_metric = str(select_metric)
        self.ks = tuple(sorted({10, self.k, metric_cutoff(self.select_metric)} - {None}))
        self.train_matrix = catalogue.matrix(train)
        self.val_matrix = catalogue.matrix(val)
        self.users = np.unique(self.val_matrix.nonzero()[0])
        self.exclude_seen = bool(exclude_seen)
        self.query_history = query_history
        self.events = val
        if query_history == "profile":
            from tfrec.data.history import profile_times

            users = val["user_id"].drop_duplicates()
            self.events = pd.DataFrame({"user_id": users.to_numpy(), "timestamp": profile_times(users, train)})
        self.history = []

    def evaluate(self, model, item_bias=None, vectors=None):
        """Mean validation metrics of `model`, its scores plus `item_bias` [I] if given;
        `vectors`: this model's (user matrix, item embeddings) from `vectors(model)`."""
        from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking

        users, items, repeat = vectors if vectors is not None else self.vectors(model)
        scores = embedding_scorer(users, items)
        bias = 0.0 if item_bias is None else np.asarray(item_bias, np.float32)[None, :]
        offset = (lambda u: 0.0) if repeat.nnz == 0 else (lambda u: repeat[np.asarray(u)].toarray())
        return evaluate_ranking(lambda u: scores(u) + bias - offset(u), self.users, self.val_matrix,
                                exclude=self.train_matrix if self.exclude_seen else None, ks=self.ks,
                                return_topk=False).mean()

    def vectors(self, model):
        """(user matrix [U, d], item embeddings [I, d], repeat offsets [U, I] sparse) of
        `model` for the validation queries (`HybridScorer.user_matrix`, `repeat_offsets`)."""
        scorer = HybridScorer(model, self.query_features, self.train, self.catalogue.item_ids)
        users, offsets = scorer.user_matrix(self.catalogue, self.events, with_offsets=True)
        return users, scorer.item_embeddings, offsets

    def on_epoch_end(self, epoch, logs=None):
        res = self.evaluate(self.model)
        logs = logs if logs is not None else {}
        logs[f"val_recall@{self.k}"] = res[f"recall@{self.k}"]
        logs["val_ndcg@10"] = res["ndcg@10"]
        loss = float(logs.get("mean_batch_loss", logs.get("loss", np.nan)))
        self.history.append({"epoch": epoch + 1, f"val_recall@{self.k}": res[f"recall@{self.k}"],
                             "val_ndcg@10": res["ndcg@10"], "mean_batch_loss": loss})
        self.log(f"  epoch {epoch + 1}: mean batch loss {loss:.1f}  "
                 f"val recall@{self.k} {res[f'recall@{self.k}']:.4f}  val ndcg@10 {res['ndcg@10']:.4f}")
