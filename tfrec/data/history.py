"""Behaviour sequences: for each interaction, the user's last N items strictly
before its timestamp, as a padded sequence feature.

The history of an event is built from `context` (by default every interaction
known at that time, train/val/test alike, as a live system would see them) and
only from events with a strictly smaller timestamp, so nothing at or after the
request time leaks into its features. `history_values` returns a column of the
same rows (e.g. the ratings the user gave), aligned with `histories`;
`prior_totals` counts and sums a column over all of a user's prior rows.

Events that share a timestamp are ordered by item id, and none of them is in
another's history. Where the order within a second is known (a log's sequence
number, or the row order of a file, which RecBole's sequential protocol reads),
an integer `event_order` column on both the events and the context says so:
ties are then ordered by it, and an event's history also holds the
same-timestamp rows with a smaller `event_order` (`with_event_order` adds one
from the row order).
"""
from typing import Optional

import numpy as np
import pandas as pd

PAD = ""  # padding token for item-id sequences; StringLookup maps it to the mask index
EVENT_ORDER = "event_order"  # optional int column: the order of events within one timestamp


def with_event_order(interactions: pd.DataFrame) -> pd.DataFrame:
    """`interactions` with an `event_order` column numbering its rows in their current
    order (kept if it has one): same-timestamp events then keep this order in splits
    and histories, as a stable sort of the file by time would."""
    if EVENT_ORDER in interactions.columns:
        return interactions
    return interactions.assign(**{EVENT_ORDER: np.arange(len(interactions), dtype=np.int64)})


def tie_break(frame: pd.DataFrame) -> str:
    """The column that orders `frame`'s same-timestamp events: `event_order` if it has one, else item_id."""
    return EVENT_ORDER if EVENT_ORDER in frame.columns else "item_id"


def _prior_rows(events: pd.DataFrame, context: Optional[pd.DataFrame]):
    """(sorted context, first prior row, stop) per event: the user's context rows
    before the event are `ctx.iloc[first:stop]` (first == stop: none), with `ctx`
    sorted by (user, timestamp, tie-break). Before = a strictly smaller timestamp,
    or, where events and context both have `event_order`, the same timestamp and a
    smaller `event_order`."""
    ctx = events if context is None else context
    ctx = ctx.sort_values(["user_id", "timestamp", tie_break(ctx)], kind="mergesort")
    c_user = ctx["user_id"].to_numpy()
    c_time = ctx["timestamp"].to_numpy()
    e_user = events["user_id"].to_numpy()
    e_time = events["timestamp"].to_numpy().astype(np.int64)
    users, first = np.unique(c_user, return_index=True)  # ctx is sorted by user: blocks
    if len(users) == 0:
        zero = np.zeros(len(events), np.int64)
        return ctx, zero, zero
    pos = np.minimum(np.searchsorted(users, e_user), len(users) - 1)
    known = users[pos] == e_user
    start = first[pos]
    # One sorted key per row, (user block, time), so a single searchsorted finds, for
    # every event, the first context row of its user at or after its timestamp.
    t0 = min(int(c_time.min()), int(e_time.min()))
    span = max(int(c_time.max()), int(e_time.max())) - t0 + 1
    c_block = np.repeat(np.arange(len(users), dtype=np.int64), np.diff(np.append(first, len(c_user))))
    c_key = c_block * span + (c_time.astype(np.int64) - t0)
    e_key = pos.astype(np.int64) * span + (e_time - t0)
    stop = np.searchsorted(c_key, e_key, side="left")
    if EVENT_ORDER in ctx.columns and EVENT_ORDER in events.columns:
        stop = stop + _earlier_ties(ctx[EVENT_ORDER].to_numpy(np.int64), c_key, e_key, stop,
                                    events[EVENT_ORDER].to_numpy(np.int64))
    start = np.where(known, start, stop)  # unknown user: no prior rows
    return ctx, start, stop


def _earlier_ties(c_order, c_key, e_key, first, e_order):
    """Per event: how many context rows with its (user, timestamp) key, from `first`
    on, come before it in `event_order` (they are sorted by it)."""
    end = np.searchsorted(c_key, e_key, side="right")
    count = np.zeros(len(e_key), np.int64)
    pending = np.flatnonzero(end > first)
    j = 0
    while pending.size:  # one pass per tie rank: as many passes as the largest tie group
        idx = first[pending] + j
        inside = (idx < end[pending]) & (c_order[np.minimum(idx, len(c_order) - 1)] < e_order[pending])
        count[pending[inside]] += 1
        pending = pending[inside]
        j += 1
    return count


def _last_n(events, max_len, context, column, fill, dtype):
    if max_len < 1:
        raise ValueError(f"`history_length` must be at least 1, got {max_len}.")
    ctx, start, stop = _prior_rows(events, context)
    values = ctx[column].to_numpy().astype(dtype)
    out = np.full((len(events), max_len), fill, dtype=dtype)
    for j in range(1, max_len + 1):
        idx = stop - j
        valid = idx >= start
        out[valid, max_len - j] = values[idx[valid]]
    return out


def histories(events: pd.DataFrame, max_len: int, context: Optional[pd.DataFrame] = None) -> np.ndarray:
    """Returns a [len(events), max_len] array of item-id strings.

    Row r holds, oldest to newest, the last `max_len` items of `events.user_id[r]`
    in `context` with timestamp < `events.timestamp[r]` (or an equal timestamp and a
    smaller `event_order`, where both have one), left-padded with "" so the most
    recent item is always in the last column.
    """
    return _last_n(events, max_len, context, "item_id", PAD, object)


def history_values(events: pd.DataFrame, max_len: int, context: Optional[pd.DataFrame] = None,
                   column: str = "rating", fill: float = 0.0) -> np.ndarray:
    """float32 [len(events), max_len]: `context[column]` of the rows `histories` picks,
    in the same slots (e.g. the rating the user gave each history item); `fill` in
    the padding slots. Example:

        hist = histories(events, 20, context=known)
        ratings = history_values(events, 20, context=known)  # ratings[r, j] belongs to hist[r, j]
    """
    ctx = events if context is None else context
    if column not in ctx.columns:
        raise ValueError(f"`history_values` needs a `{column}` column in the context; it has {list(ctx.columns)}.")
    return _last_n(events, max_len, context, column, fill, np.float32)


def prior_totals(events: pd.DataFrame, values: np.ndarray, context: Optional[pd.DataFrame] = None):
    """(count [n], sum [n]) of `values` (one per `context` row, in its row order) over
    each event's user's context rows before the event (as `histories` counts them)."""
    ctx = events if context is None else context
    values = np.asarray(values, np.float64)
    if values.shape != (len(ctx),):
        raise ValueError(f"`values` must have one entry per context row ({len(ctx)}), got shape {values.shape}.")
    sorted_ctx, start, stop = _prior_rows(events, ctx.assign(_v=values))
    cum = np.concatenate([[0.0], np.cumsum(sorted_ctx["_v"].to_numpy(np.float64))])
    return (stop - start).astype(np.int64), cum[stop] - cum[start]


def history_lengths(hist: np.ndarray) -> np.ndarray:
    return (hist != PAD).sum(axis=1)


def profile_times(user_ids, context: pd.DataFrame) -> np.ndarray:
    """int64 [n]: the end of each user's known profile, their last `context` timestamp
    + 1 (so `histories` at that time sees all of it); users without context rows get
    the end of the whole context. The request time of a whole-profile query."""
    ids = pd.Series(np.asarray(user_ids, dtype=object)).astype(str)
    if not len(context):
        return np.zeros(len(ids), np.int64)
    ends = context.assign(user_id=context["user_id"].astype(str)).groupby("user_id")["timestamp"].max() + 1
    return ids.map(ends).fillna(int(context["timestamp"].max()) + 1).to_numpy(np.int64)


def profile_histories(events: pd.DataFrame, max_len: int, context: pd.DataFrame) -> np.ndarray:
    """[len(events), max_len] item-id strings: each event's user's latest `max_len`
    items of `context` (oldest to newest, "" left-padded), whatever their time,
    leaving out every row of the event's own item.

    The training examples of whole-profile queries: under a random split a held-out
    item may lie anywhere in the user's timeline, so the query sees the user's whole
    known profile; a training event sees the same profile without its target, or the
    model would learn to copy the history.
    """
    if max_len < 1:
        raise ValueError(f"`history_length` must be at least 1, got {max_len}.")
    ends = events.assign(timestamp=profile_times(events["user_id"], context))
    ctx = context.assign(user_id=context["user_id"].astype(str), item_id=context["item_id"].astype(str))
    ends = ends.assign(user_id=ends["user_id"].astype(str))
    # The latest max_len + 1 items hold the latest max_len that are not the target,
    # unless the target occurs more than once among them (then fewer: padded).
    wide = _last_n(ends, max_len + 1, ctx, "item_id", PAD, object)  # (n, max_len + 1)
    keep = (wide != events["item_id"].astype(str).to_numpy(dtype=object)[:, None]) & (wide != PAD)
    order = np.argsort(keep, axis=1, kind="stable")  # dropped slots first, kept ones in time order
    packed = np.take_along_axis(np.where(keep, wide, PAD), order, axis=1)
    return packed[:, 1:]
