"""The ranker's inputs built from interactions: its training features, the ratings of each
history item, and the rating head's inputs and predictions for given events (used by
`tfrec.cli.ranking_stage`, which re-exports them, and the benchmarks)."""
import numpy as np


def ranking_features(query_features, events, context, ratings=True):
    """Training features of the ranker: query features + item_id (+ rating, and the
    ratings of the history items, `history_ratings`, when `context` has ratings)."""
    feats = with_history_ratings(query_features.build(events, context=context), query_features, events, context)
    feats["item_id"] = events["item_id"].astype(str).to_numpy(dtype=object)
    if ratings and "rating" in events.columns:
        feats["rating"] = events["rating"].to_numpy(np.float32)
    return feats


def with_history_ratings(feats, query_features, events, context):
    """`feats` + `history_ratings` float32 [n, N] (the rating given to each `history`
    item, 0 in padding), when `context` has a rating column."""
    from tfrec.data.history import history_values

    if context is not None and "rating" in context.columns:
        feats["history_ratings"] = history_values(events, query_features.history_length, context=context)
    return feats


def rating_inputs(query_features, events, context):
    """(features, item ids [n, 1]) for the rating head on each event's own item, histories
    (and their ratings) from `context` strictly before the event."""
    events = events.reset_index(drop=True)
    feats = with_history_ratings(query_features.build(events, context=context), query_features, events, context)
    return feats, events["item_id"].astype(str).to_numpy(dtype=object)[:, None]


def ranker_ratings(ranker, query_features=None, events=None, context=None, inputs=None) -> np.ndarray:
    """The rating head's prediction [n] for each event's own item: on `inputs` from
    `rating_inputs`, or built here from (`query_features`, `events`, `context`)."""
    from tfrec.models.two_stage import rank_candidates

    feats, items = inputs if inputs is not None else rating_inputs(query_features, events, context)
    _, rating = rank_candidates(ranker, feats, items)
    return rating[:, 0]
