"""One protocol for every model: the same split, catalogue, queries and exclusions.

`evaluate_models` is what `tfrec run` and `tfrec evaluate` call. Evaluation is
query-based: a `tfrec.evaluation.protocols.Protocol` turns the split into test
queries (one per test user, or one per test interaction), each with its relevant
items, its excluded items and the history known when it is asked. Then:
1. baselines are tuned on the protocol's validation queries (fitted on train, or
   on train minus a seeded slice when the protocol has no validation split) and
   the chosen configuration is fitted on train; at test time they score each
   query's user from the known history (folded in without refitting when it is
   more than train), and history-based baselines fall back to popularity for
   users with no known history;
2. every model and baseline ranks the full catalogue for the same queries, with
   the protocol's exclusions;
3. metrics get bootstrap CIs (users resampled, with all their queries, for
   per-interaction protocols), and every model is compared with the best baseline
   (chosen on validation, never on test) in a paired test;
4. beyond-accuracy metrics and their breakdown by user activity are added.

A model is any of:
- a `Baseline` already fitted (scored by user index, as given);
- a pair `(user_emb [U, d], item_emb [I, d])`, scored by dot product;
- an object with `score_queries(queries: pd.DataFrame) -> [n, I]` scores, given
  the rows of the `queries` table (`user_id`, `user_idx`, `timestamp`, `history`;
  see `QuerySet`). It must score from what a query may know: per-interaction
  queries only events strictly before their `timestamp` (their `history` column
  holds exactly those);
- a callable `score_fn(user_idx) -> [b, I]`.
"""
import dataclasses
import time

import numpy as np

from tfrec.evaluation import beyond
from tfrec.evaluation.protocols import protocol_from_config, queries_for_test, queries_for_validation
from tfrec.evaluation.queries import split_parts
from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking
from tfrec.evaluation.stats import bootstrap_ci, cluster_bootstrap, cluster_paired_test, paired_test  # noqa: F401
from tfrec.evaluation.tuning import baseline_scorer, tune

HEADLINE = ("ndcg@10", "recall@10", "recall@20", "hit_rate@10", "precision@10", "map@10", "mrr", "auc")


def _scorer(model):
    """score_fn over user indices, for the user-level model kinds."""
    if isinstance(model, tuple):
        return embedding_scorer(*model)
    if hasattr(model, "score"):
        return baseline_scorer(model)
    return model  # a score_fn


def query_scorer(model, queries):
    """score_fn over ROW indices of `queries` (a `QuerySet`), for any model kind."""
    if hasattr(model, "score_queries"):
        table = queries.queries
        n_items = queries.relevant.shape[1]

        def fn(rows):
            rows = np.asarray(rows)
            scores = np.asarray(model.score_queries(table.iloc[rows].reset_index(drop=True)), np.float32)
            if scores.shape != (rows.size, n_items):
                from tfrec.errors import DataError

                raise DataError(
                    f"`score_queries` must return float scores [n_rows, n_items] = [{rows.size}, {n_items}], "
                    f"got shape {scores.shape}. Fix: score every catalogue item, in index order, for each row."
                )
            return scores

        return fn
    user_fn = _scorer(model)
    users = queries.user_idx
    return lambda rows: user_fn(users[np.asarray(rows)])


# Baselines that score a user from their history rows: a user with no known history
# gets all-zero scores, which would rank items by index. They fall back to train
# popularity instead, so they are compared at their best (MostPopular is the
# natural answer for a user nobody knows).
HISTORY_BASED = ("item_knn", "ease", "implicit_als", "tfidf_content")


def _times(catalogue, interactions, cls):
    """`interactions`' time matrix for a baseline that reads time, else None."""
    return catalogue.time_matrix(interactions) if cls.needs_times and "timestamp" in interactions.columns else None


def with_popularity_fallback(score_fn, history, popularity, row_users=None):
    """Rows whose user's `history` row is empty get `popularity` as their scores.

    `score_fn` is called with user indices, or with row indices when `row_users`
    (int [n], the user of each row) is given.
    """
    empty = np.asarray(history.getnnz(axis=1) == 0)
    pop = np.asarray(popularity, np.float32)

    def fn(idx):
        idx = np.asarray(idx)
        scores = np.array(score_fn(idx), dtype=np.float32, copy=True)
        users = idx if row_users is None else row_users[idx]
        scores[empty[users]] = pop
        return scores

    return fn


def genre_matrix(items, column="genres"):
    """Multi-hot [I, G] from a "|"-joined categorical column, or None."""
    if column not in items.columns:
        return None
    lists = items[column].fillna("").astype(str).str.split("|")
    vocab = sorted({g for gs in lists for g in gs if g})
    index = {g: j for j, g in enumerate(vocab)}
    m = np.zeros((len(items), len(vocab)), np.float32)
    for i, gs in enumerate(lists):
        for g in gs:
            if g:
                m[i, index[g]] = 1.0
    return m


def beyond_accuracy(result, catalogue, train, k=10, genres=None, item_emb=None, cold_items=None, n_users=None):
    """`train`: the binary user x item CSR of the train split (`Catalogue.matrix`)."""
    pop = catalogue.train_item_counts  # interactions per item (repeats count)
    # Novelty's self-information needs distinct users per item (a user who rated an item
    # twice counts once), which the binary matrix gives.
    distinct_users = np.asarray(train.getnnz(axis=0)).ravel()
    topk = result.topk
    out = {
        f"coverage@{k}": beyond.catalogue_coverage(topk, catalogue.n_items, k),
        f"gini@{k}": beyond.gini_index(topk, catalogue.n_items, k),
        f"avg_popularity@{k}": float(np.mean(beyond.recommended_popularity(topk, pop, k))),
        f"popularity_lift@{k}": beyond.popularity_lift(topk, pop, k=k),
        f"novelty@{k}": float(np.mean(beyond.novelty(topk, distinct_users, n_users or train.shape[0], k))),
        f"personalisation@{k}": beyond.personalisation(topk, k),
    }
    if genres is not None:
        out[f"ild_genres@{k}"] = float(np.nanmean(beyond.intra_list_diversity(topk, genres, k=k)))
    if item_emb is not None:
        out[f"ild_embedding@{k}"] = float(np.nanmean(beyond.intra_list_diversity(topk, item_emb, k=k)))
    if cold_items is not None and len(cold_items):
        mask = np.zeros(catalogue.n_items, bool)
        mask[cold_items] = True
        out[f"cold_share@{k}"] = float(np.mean(beyond.cold_share(topk, mask, k)))
    return out


def seen_share(topk, users, known, k=10) -> float:
    """Share of the top-k slots filled with items the user already has in `known` (csr [U, I]).

    Where seen items are kept in the ranking (tfrs_tutorial, recbole_sequential) and
    never re-consumed (MovieLens: one rating per movie), such slots are wasted.
    """
    top = np.asarray(topk)[:, :k]  # (n, k)
    n_items = known.shape[1]
    rows, cols = known.nonzero()
    if rows.size == 0:
        return 0.0
    keys = np.sort(rows.astype(np.int64) * n_items + cols)
    want = np.asarray(users, np.int64)[:, None] * n_items + top  # (n, k)
    found = np.minimum(np.searchsorted(keys, want), keys.size - 1)
    hit = (top >= 0) & (keys[found] == want)
    return float(hit.sum() / max(1, (top >= 0).sum()))


def rank_queries(model, queries, ks, return_topk=True):
    """`evaluate_ranking` of `model` on a `QuerySet`; `.users` of the result are user indices."""
    res = evaluate_ranking(query_scorer(model, queries), np.arange(queries.n), queries.relevant,
                           exclude=queries.exclude, ks=ks, return_topk=return_topk)
    users = queries.user_idx
    return dataclasses.replace(res, users=users[res.rows], skipped_users=users[res.skipped_users])


def _ci(values, users, per_interaction, cfg):
    keep = ~np.isnan(values)
    if per_interaction:
        _, low, high = cluster_bootstrap(values[keep], users[keep], n_boot=cfg.n_bootstrap, seed=cfg.seed)
        return [low, high]
    ci = bootstrap_ci(values[keep], n_boot=cfg.n_bootstrap, seed=cfg.seed)
    return [ci.low, ci.high]


def evaluate_models(models: dict, data, split, catalogue, cfg, *, protocol=None, out_dir=None, log=print,
                    item_text=None, item_embeddings: dict = None, grids: dict = None, history_length: int = 20,
                    compare=()) -> dict:
    """Evaluates `models` and the baselines `cfg.baselines` under one protocol.

    Args:
        models: name -> model (see the module docstring for the accepted kinds).
        data: the `RecData` (items table for text and genres).
        split: the `Split` the protocol was applied to.
        catalogue: `Catalogue` fitted on `split.train`.
        cfg: the `eval` config (baselines, n_bootstrap, seed; ks and exclude_seen
            when `protocol` is None).
        protocol: a `Protocol`; None is `tfrec run`'s per-user protocol for any split.
        out_dir: folder for metrics.md and the plots, or None.
        grids: baseline name -> grid overriding the class grid (to bound the cost).
        history_length: length of the `history` column given to `score_queries` models.
        compare: pairs (a, b) of model names; each gets a paired test of a - b on the
            protocol's selection metric (and NDCG@10, Recall@20) in `report["comparisons"]`.

    Returns:
        The report dict (protocol, models with means, CIs, tuning, beyond-accuracy).
    """
    from tfrec.evaluation.baselines import BASELINES
    from tfrec.evaluation.report import markdown_table, write_report
    from tfrec.text.template import item_texts

    protocol = protocol or protocol_from_config(split, cfg)
    per_interaction = protocol.mode == "per_interaction"
    needs_history = any(hasattr(m, "score_queries") for m in models.values())
    h = history_length if needs_history else 0
    ks = tuple(sorted(set(protocol.ks)))
    train = catalogue.matrix(split.train)
    test_q = queries_for_test(protocol, split, catalogue, history_length=h)
    val_task = queries_for_validation(protocol, split, catalogue) if cfg.baselines else None
    item_text = item_text if item_text is not None else item_texts(data.items)
    genres = genre_matrix(data.items)
    cold_idx = catalogue.item_index(split.cold_items) if len(split.cold_items) else None
    n_test_users = int(np.unique(test_q.user_idx).size)
    excl = "+".join(protocol.exclude) or "none"
    log(f"evaluate [{protocol.name}]: {test_q.n} {protocol.mode.replace('_', '-')} queries from {n_test_users} "
        f"test users x {catalogue.n_items} items (full catalogue); excluded: {excl}; "
        f"known history: {'+'.join(protocol.known)}")

    known_changed = protocol.known != ("train",)
    results, meta, val_scores = {}, {}, {}
    for name in cfg.baselines:
        if name not in BASELINES:
            from tfrec.errors import ConfigError

            raise ConfigError(f"Unknown baseline {name!r} in `eval.baselines`; known: {', '.join(sorted(BASELINES))}.")
        cls = BASELINES[name]
        grid = (grids or {}).get(name, cls.grid)
        t0 = time.perf_counter()
        if val_task is not None:
            fit = catalogue.matrix(val_task.fit)
            fit_pop = np.bincount(catalogue.item_index(val_task.fit["item_id"]), minlength=catalogue.n_items)
            model, params, trials = tune(cls, fit, val_task.queries, item_text=item_text, seed=cfg.seed,
                                         metric=protocol.select_metric, grid=grid,
                                         fallback=fit_pop if name in HISTORY_BASED else None,
                                         times=_times(catalogue, val_task.fit, cls))
            val_scores[name] = max(t[protocol.select_metric] for t in trials)
            if len(val_task.fit) != len(split.train):  # tuned on a slice: refit on all of train
                model = cls(**params).fit(train, item_text=item_text, seed=cfg.seed,
                                          times=_times(catalogue, split.train, cls))
        else:
            model, params, trials = cls().fit(train, item_text=item_text, seed=cfg.seed,
                                              times=_times(catalogue, split.train, cls)), {}, []
        if known_changed:
            # At test time users are scored from everything the protocol lets a query know.
            model.fold_in(test_q.known, times=_times(catalogue, split_parts(split, protocol.known), cls))
        scorer = query_scorer(model, test_q)
        if name in HISTORY_BASED:
            scorer = with_popularity_fallback(scorer, test_q.known, catalogue.train_item_counts, test_q.user_idx)
        res = evaluate_ranking(scorer, np.arange(test_q.n), test_q.relevant, exclude=test_q.exclude, ks=ks)
        results[name] = dataclasses.replace(res, users=test_q.user_idx[res.rows],
                                            skipped_users=test_q.user_idx[res.skipped_users])
        meta[name] = {"kind": "baseline", "params": params, "grid": grid, "tuning": trials,
                      "seconds": time.perf_counter() - t0}
        log(f"  {name:<16} test {protocol.metrics[0]} {results[name].mean()[protocol.metrics[0]]:.4f}  "
            f"params {params}  ({meta[name]['seconds']:.1f} s)")
    for name, model in models.items():
        t0 = time.perf_counter()
        results[name] = rank_queries(model, test_q, ks)
        meta[name] = {"kind": "model", "seconds": time.perf_counter() - t0}
        log(f"  {name:<16} test {protocol.metrics[0]} {results[name].mean()[protocol.metrics[0]]:.4f}")

    select = protocol.select_metric
    best_baseline = max(val_scores, key=val_scores.get) if val_scores else None
    report = {"protocol": {"name": protocol.name, "title": protocol.title, "anchor": protocol.anchor,
                           "split": split.kind, "split_params": dict(split.params), "mode": protocol.mode,
                           "known": list(protocol.known), "exclude": list(protocol.exclude),
                           "exclude_seen": bool(protocol.exclude), "metrics": list(protocol.metrics),
                           "select_metric": select, "ks": list(ks),
                           "n_queries": int(test_q.n), "n_test_users": n_test_users, "n_items": int(catalogue.n_items),
                           "n_bootstrap": cfg.n_bootstrap, "seed": cfg.seed,
                           "ci": "users resampled with all their queries" if per_interaction else "users resampled",
                           "baselines_tuned_on": val_task.source if val_task is not None and val_scores
                           else "not tuned (no validation split)",
                           "best_baseline_by_validation": best_baseline},
              "models": {}}
    ci_metrics = list(dict.fromkeys(list(protocol.metrics) + list(HEADLINE)))
    ci_metrics = [m for m in ci_metrics if m.split("@")[-1] == m or int(m.split("@")[1]) in ks]
    for name, res in results.items():
        entry = {**meta[name], "n_users": int(np.unique(res.users).size), "n_queries": int(res.users.size),
                 "n_skipped_users": int(res.n_skipped_users), "mean": res.mean(), "ci95": {}}
        for metric in ci_metrics:
            entry["ci95"][metric] = _ci(res.per_user[metric], res.users, per_interaction, cfg)
        emb = (item_embeddings or {}).get(name)
        if emb is None and isinstance(models.get(name), tuple):
            emb = models[name][1]
        entry["beyond"] = beyond_accuracy(res, catalogue, train, 10, genres, emb, cold_idx, n_users=catalogue.n_users)
        entry["beyond"]["seen_share@10"] = seen_share(res.topk, res.users, test_q.known, 10)
        if best_baseline and name != best_baseline:
            a, b = res.per_user[select], results[best_baseline].per_user[select]
            if per_interaction:
                pt = cluster_paired_test(a, b, res.users, n_boot=cfg.n_bootstrap, seed=cfg.seed)
            else:
                pt = paired_test(a, b, n_boot=cfg.n_bootstrap, seed=cfg.seed).to_dict()
            entry[f"vs_{best_baseline}"] = {"metric": select, **pt}
        activity = np.asarray(train.sum(axis=1)).ravel()[res.users]
        table = beyond.breakdown({m: res.per_user[m] for m in _breakdown_metrics(protocol, ks)}, activity,
                                 n_bins=10, cold_mask=activity == 0)
        entry["by_activity"] = table.reset_index().rename(columns={"index": "group"}).to_dict(orient="records")
        report["models"][name] = entry
    report["comparisons"] = []
    for a, b in compare:
        for metric in dict.fromkeys([select, "ndcg@10", "recall@20"]):
            if metric not in results[a].per_user:
                continue
            va, vb = results[a].per_user[metric], results[b].per_user[metric]
            if per_interaction:
                pt = cluster_paired_test(va, vb, results[a].users, n_boot=cfg.n_bootstrap, seed=cfg.seed)
            else:
                pt = paired_test(va, vb, n_boot=cfg.n_bootstrap, seed=cfg.seed).to_dict()
            report["comparisons"].append({"a": a, "b": b, "metric": metric, **pt})
            log(f"  paired {a} - {b} on {metric}: {pt['mean_diff']:+.4f} [{pt['low']:+.4f}, {pt['high']:+.4f}] "
                f"p={pt['p_value']:.4f}")
    report["table"] = markdown_table(report)
    log("\n" + report["table"])
    if out_dir is not None:
        write_report(report, results, catalogue, out_dir)
    return report


def _breakdown_metrics(protocol, ks):
    metrics = ["ndcg@10", "recall@20" if 20 in ks else "recall@10"]
    first = protocol.metrics[0]
    return list(dict.fromkeys(metrics + [first]))
