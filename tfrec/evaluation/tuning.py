"""Hyperparameter search on validation queries only.

Every configuration of a baseline's grid is fitted on the fit part (train, or
train minus a held-out slice) and scored on the validation queries of the
protocol (same query unit, same exclusion rule as at test time, minus the
validation part itself); the best by the selection metric is returned, already
fitted. Test data never enters this module.
"""
import itertools
import time

import numpy as np

from tfrec.evaluation.ranking import evaluate_ranking


def baseline_scorer(model):
    """Wraps a fitted baseline as an `evaluate_ranking` score_fn over user indices."""
    return lambda user_idx: model.score(np.asarray(user_idx))


def grid_points(grid: dict):
    if not grid:
        return [{}]
    keys = sorted(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def metric_cutoff(metric: str):
    """The K of "ndcg@10" (None for "mrr", "auc")."""
    return int(metric.split("@")[1]) if "@" in metric else None


def tune(cls, train, val, *, item_text=None, seed=0, metric="ndcg@10", grid=None, log=None, fallback=None,
         times=None):
    """Returns (best fitted model, best params, trials) chosen on validation.

    Args:
        cls: a Baseline class.
        train: csr [U, I], the interactions each configuration is fitted on (and the
            history validation queries are scored from).
        val: the validation queries, a `tfrec.evaluation.protocols.QuerySet` (rows,
            relevant items, exclusions), or a csr [U, I] of validation interactions:
            one query per user who has some, train items excluded.
        metric: selection metric, a key of `RankingResult.mean()`.
        grid: overrides `cls.grid`.
        fallback: popularity scores for users with no train history (see
            `protocol.with_popularity_fallback`), or None.
        times: csr [U, I] of `train`'s timestamps, for baselines that read time.
    """
    from tfrec.evaluation.protocol import with_popularity_fallback

    if hasattr(val, "relevant"):
        row_users = val.user_idx
        relevant, exclude = val.relevant, val.exclude
    else:
        row_users = np.unique(val.nonzero()[0])
        relevant, exclude = val[row_users], train[row_users]
    ks = sorted({10, 20} | ({metric_cutoff(metric)} - {None}))
    trials = []
    best = None
    for params in grid_points(cls.grid if grid is None else grid):
        t0 = time.perf_counter()
        model = cls(**params).fit(train, item_text=item_text, seed=seed, times=times)
        scorer = baseline_scorer(model)
        if fallback is not None:
            scorer = with_popularity_fallback(scorer, train, fallback)
        # Rows are queries: the scorer is asked for their users.
        res = evaluate_ranking(lambda rows: scorer(row_users[np.asarray(rows)]), np.arange(row_users.size),
                               relevant, exclude=exclude, ks=ks, return_topk=False)
        value = res.mean()[metric]
        trials.append({"params": params, metric: value, "seconds": time.perf_counter() - t0})
        if log:
            log(f"  tune {cls.name} {params}: val {metric} {value:.4f}")
        if best is None or value > best[0]:
            best = (value, params, model)
    return best[2], best[1], trials
