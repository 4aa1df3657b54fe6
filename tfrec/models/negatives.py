"""Hard negatives for the ranking stage: the retriever's own top items for a query."""
import numpy as np

from tfrec.errors import ConfigError


def hard_negatives(scorer, events, catalogue, known, n, pool, seed=0, batch=2048):
    """For each event, `n` item ids drawn uniformly from the retriever's top `pool`
    items for that query, skipping the items the user has in `known` (interactions
    table) and the event's own item. Returns string [len(events), n]: the candidates
    the ranker has to separate at serving time (it also gets uniform ones, in-graph).
    """
    rng = np.random.default_rng(seed)
    events = events.reset_index(drop=True)
    item_ids = np.asarray(catalogue.item_ids, dtype=object).astype(str)
    if list(item_ids) != list(scorer.item_ids):
        raise ConfigError("`hard_negatives`: the scorer's items must be the catalogue's, in the same order.")
    pool = int(min(pool, len(item_ids) - 1))
    seen = catalogue.matrix(known).tocsr()  # (U, I)
    users = catalogue.user_index(events["user_id"].astype(str))
    own = catalogue.item_index(events["item_id"].astype(str))
    out = np.empty((len(events), n), dtype=object)
    for start in range(0, len(events), batch):
        stop = min(start + batch, len(events))
        scores = scorer.score_queries(events.iloc[start:stop])  # (m, I)
        rows, cols = seen[users[start:stop]].nonzero()
        scores[rows, cols] = -np.inf
        scores[np.arange(stop - start), own[start:stop]] = -np.inf
        top = np.argpartition(-scores, pool - 1, axis=1)[:, :pool]  # (m, pool), unordered
        pick = np.take_along_axis(top, rng.integers(0, pool, size=(stop - start, n)), axis=1)
        out[start:stop] = item_ids[pick]
    return out
