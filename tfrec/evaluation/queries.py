"""Queries a protocol asks: who is asked, at what time, knowing what, with which
items removed from the ranking, and which held-out items are relevant.

Built for test (`queries_for_test`) and for tuning (`queries_for_validation`);
see `tfrec.evaluation.protocols` for the protocols themselves.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec.data.history import EVENT_ORDER
from tfrec.errors import ConfigError, DataError

if TYPE_CHECKING:  # annotations only; protocols.py imports this module
    from tfrec.evaluation.protocols import Protocol

MODES = ("per_user", "per_interaction")
# What a query's `history` is: "before_event", the known items strictly before the
# queried event (a time-ordered request; per-user queries see all known items);
# "profile", the user's whole known profile asked at its end (`request_time`), as
# RecBole's general models see it under a random split.
QUERY_HISTORIES = ("before_event", "profile")


@dataclasses.dataclass
class QuerySet:
    """The queries of one evaluation stage, aligned row by row.

    Attributes:
        queries: one row per query: `user_id` (str), `user_idx` (int64, catalogue
            index), `timestamp` (int64: the event's time for per-interaction queries,
            the user's first target event for per-user ones), and, when asked for,
            `history` (object array per row of the last `history_length` known item
            ids, oldest first, "" padded on the left; per-interaction queries only
            see known events strictly before their timestamp), and for "profile"
            queries `request_time` (int64: the end of the user's known profile,
            their last known timestamp + 1), the time a model is asked at.
        relevant: csr [n, I], the relevant items of each row.
        exclude: csr [n, I] of the items removed from each row's ranking, or None.
        known: csr [U, I], the history known at query time, by user (what
            baselines fold in, and what decides the popularity fallback).
        mode: "per_user" or "per_interaction".
        query_history: "before_event" or "profile" (see `QUERY_HISTORIES`).
    """

    queries: pd.DataFrame
    relevant: sp.csr_matrix
    exclude: Optional[sp.csr_matrix]
    known: sp.csr_matrix
    mode: str
    query_history: str = "before_event"

    @property
    def n(self) -> int:
        return len(self.queries)

    @property
    def user_idx(self) -> np.ndarray:
        return self.queries["user_idx"].to_numpy()


def build_queries(targets: pd.DataFrame, known: pd.DataFrame, excluded: Optional[pd.DataFrame], catalogue,
                  mode: str, history_length: int = 0, query_history: str = "before_event") -> QuerySet:
    """Queries asking for `targets` (the held-out events), given what is `known`.

    Args:
        targets: held-out interactions (user_id, item_id, timestamp).
        known: interactions known at query time (fold-in history, fallback, `history`).
        excluded: interactions whose items are removed from their user's rankings,
            or None to keep every item.
        catalogue: `tfrec.features.catalogue.Catalogue` (user and item indices).
        mode: "per_user" or "per_interaction".
        history_length: length of the `history` column; 0 leaves it out.
        query_history: "before_event" (default) or "profile": every query of a user
            sees the latest `history_length` of all their known items and carries a
            `request_time` column, the end of their known profile.
    """
    if mode not in MODES:
        raise ConfigError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}.")
    check_query_history(query_history)
    if len(targets) == 0:
        raise DataError("There are no held-out interactions to build queries from. Fix: check the split.")
    t_user = catalogue.user_index(targets["user_id"])
    t_item = catalogue.item_index(targets["item_id"])
    t_time = targets["timestamp"].to_numpy().astype(np.int64)
    n_items = catalogue.n_items
    if mode == "per_user":
        # Users in index order, as `np.unique` of the test matrix rows gives them.
        users, inverse = np.unique(t_user, return_inverse=True)
        stamp = np.full(users.size, np.iinfo(np.int64).max)
        np.minimum.at(stamp, inverse, t_time)
        rows = inverse
    else:
        # Rows grouped by user, then by time: (user, timestamp, item) order.
        order = np.lexsort((t_item, t_time, t_user))
        users, stamp = t_user[order], t_time[order]
        t_item = t_item[order]
        rows = np.arange(order.size)
    relevant = sp.csr_matrix((np.ones(rows.size, np.float32), (rows, t_item)), shape=(users.size, n_items))
    relevant.sum_duplicates()
    relevant.data[:] = 1.0
    known_m = catalogue.matrix(known) if len(known) else sp.csr_matrix((catalogue.n_users, n_items), dtype=np.float32)
    exclude = None
    if excluded is not None:
        ex = catalogue.matrix(excluded) if len(excluded) else sp.csr_matrix((catalogue.n_users, n_items), dtype=np.float32)
        exclude = ex[users].tocsr()  # (n, I), one row per query
    queries = pd.DataFrame({
        "user_id": catalogue.user_ids[users],
        "user_idx": users.astype(np.int64),
        "timestamp": stamp.astype(np.int64),
    })
    if mode != "per_user" and EVENT_ORDER in targets.columns:  # its history holds the earlier same-second events
        queries[EVENT_ORDER] = targets[EVENT_ORDER].to_numpy(np.int64)[order]
    if query_history == "profile":
        from tfrec.data.history import profile_times

        queries["request_time"] = profile_times(queries["user_id"], known)
    if history_length:
        queries["history"] = list(_histories(queries, known, mode, history_length))
    return QuerySet(queries, relevant, exclude, known_m, mode, query_history)


def check_query_history(query_history: str) -> str:
    """`query_history`, or a `ConfigError` naming the allowed values."""
    if query_history not in QUERY_HISTORIES:
        raise ConfigError(f"`query_history` must be one of {', '.join(QUERY_HISTORIES)}, got {query_history!r}. "
                          "Fix: e.g. `--eval.query_history=profile`.")
    return query_history


def _histories(queries: pd.DataFrame, known: pd.DataFrame, mode: str, history_length: int) -> np.ndarray:
    from tfrec.data.history import histories

    events = queries[["user_id", "timestamp"] + ([EVENT_ORDER] if EVENT_ORDER in queries.columns else [])]
    if "request_time" in queries.columns:  # a profile query: everything known, at its end
        events = events.assign(timestamp=queries["request_time"].to_numpy())
    elif mode == "per_user" and len(known):
        # A per-user query knows the user's whole known history, whenever it happened
        # (RecBole's general models, and the temporal split, where it all precedes test).
        events = events.assign(timestamp=int(known["timestamp"].max()) + 1)
    if not len(known):
        return np.full((len(queries), history_length), "", dtype=object)
    return histories(events, history_length, context=known.assign(user_id=known["user_id"].astype(str)))


def split_parts(split, names) -> pd.DataFrame:
    """The interactions of the named parts of `split` ("train", "val", "test") in one frame."""
    frames = [getattr(split, name) for name in names]
    frames = [f for f in frames if len(f)]
    if not frames:
        return split.train.iloc[:0]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def queries_for_test(protocol: Protocol, split, catalogue, history_length: int = 0) -> QuerySet:
    """The test queries of `split` under `protocol`."""
    known = split_parts(split, protocol.known)
    excluded = split_parts(split, protocol.exclude) if protocol.exclude else None
    return build_queries(split.test, known, excluded, catalogue, protocol.mode, history_length,
                         protocol.query_history)


@dataclasses.dataclass
class ValidationTask:
    """What tuning fits on (`fit`, a table of interactions), the validation queries,
    and where they come from ("validation split" or "train slice (10%, seed 42)")."""

    fit: pd.DataFrame
    queries: QuerySet
    source: str


def carve_slice(train: pd.DataFrame, fraction: float, seed: int):
    """(rest, slice): a seeded random `fraction` of the rows of `train`, and the others."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"`slice_fraction` must be in (0, 1), got {fraction}.")
    perm = np.random.default_rng(seed).permutation(len(train))
    n_slice = int(round(len(train) * fraction))
    df = train.reset_index(drop=True)
    return df.iloc[np.sort(perm[n_slice:])].reset_index(drop=True), df.iloc[np.sort(perm[:n_slice])].reset_index(drop=True)


def queries_for_validation(protocol: Protocol, split, catalogue, history_length: int = 0) -> Optional[ValidationTask]:
    """The tuning task of `split` under `protocol`, or None when there is nothing to tune on.

    With `tune_on="val"` baselines are fitted on train and asked for the validation
    part; with `tune_on="train_slice"` a seeded slice of train is held out instead,
    so the test part is never looked at. Validation queries know the fit part only
    and exclude `protocol.validation_exclude` of it.
    """
    if protocol.tune_on == "val":
        if not len(split.val):
            return None
        fit, targets, source = split.train, split.val, "validation split"
    else:
        fit, targets = carve_slice(split.train, protocol.slice_fraction, protocol.slice_seed)
        source = (f"a {protocol.slice_fraction:.0%} slice of train (seed {protocol.slice_seed}; "
                  "the chosen configuration is refitted on all of train)")
    excluded = fit if "train" in protocol.validation_exclude else None
    return ValidationTask(fit, build_queries(targets, fit, excluded, catalogue, protocol.mode, history_length,
                                             protocol.query_history), source)
