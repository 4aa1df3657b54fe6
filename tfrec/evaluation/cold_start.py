"""Cold-start evaluation: can a model recommend items nobody interacted with?

Under the `cold_items` split a seeded sample of items is held out of training
entirely; their interactions are only in test. Each user who interacted with a
cold item is a query, the relevant items are their cold test items, and the
ranking is over the cold items only (every warm item is excluded), so the
metric isolates how well a model ranks new items from their content.

What each model knows about a user must be the same for the comparison to mean
anything (`cold_queries`): with "known" the baselines fold in all train +
validation interactions and a query model is asked after the user's last known
event (so its history is the end of that same set); with "before_first_cold"
both only see the user's interactions before their first cold-item event (the
hybrid's queries in `tfrec run` are asked there). On ML-100K a third of the cold
users have no interaction before that event.

Ties: items with equal scores rank by catalogue index (see
`tfrec.evaluation.ranking`). Among cold items MostPopular scores all zero, so it
ranks by item index, which on ML-100K correlates with popularity; a baseline
folded in on an empty history does the same.
"""
import numpy as np
import pandas as pd
import scipy.sparse as sp

from tfrec.evaluation.ranking import embedding_scorer, evaluate_ranking
from tfrec.evaluation.stats import bootstrap_ci, paired_test
from tfrec.evaluation.tuning import baseline_scorer

COLD_BASELINES = ("tfidf_content", "most_popular", "random")
QUERY_INFORMATION = ("known", "before_first_cold")


def cold_queries(split, information="known"):
    """What the models may know about each cold-item user, the same for all of them.

    Returns (events, history): `events` (user_id, timestamp), one per user with a
    cold test item, the time a query model is asked at (its history: the known
    interactions strictly before it); `history` the interactions the baselines fold
    in. information: "known" (all train + validation interactions; asked one second
    after the user's last known event, at the first cold event for users without
    one) or "before_first_cold" (only what precedes the user's first cold event)."""
    from tfrec.errors import ConfigError

    if information not in QUERY_INFORMATION:
        raise ConfigError(f"`information` must be one of {', '.join(QUERY_INFORMATION)}, got {information!r}.")
    known = pd.concat([split.train, split.val], ignore_index=True)
    cold = split.test[split.test["item_id"].isin(split.cold_items)]
    first = cold.groupby("user_id")["timestamp"].min()  # (n_users,)
    if information == "before_first_cold":
        t0 = known["user_id"].map(first)
        return first.reset_index(), known[known["timestamp"] < t0].reset_index(drop=True)
    last = known.groupby("user_id")["timestamp"].max().reindex(first.index)
    at = np.where(last.notna(), last.fillna(0).to_numpy() + 1, first.to_numpy()).astype(np.int64)
    return pd.DataFrame({"user_id": first.index, "timestamp": at}), known


def evaluate_cold_items(models: dict, data, split, catalogue, cfg, log=print, item_text=None, history=None) -> dict:
    """`models`: name -> (user_emb [U, d], item_emb [I, d]) or a score_fn. Returns a
    report with NDCG@10 / Recall@10 / Recall@20 (95% CIs) per model and baseline,
    and each model's paired difference against the TF-IDF content baseline.
    `history`: the interactions the baselines fold in (see `cold_queries`);
    default train + validation."""
    from tfrec.evaluation.baselines import BASELINES
    from tfrec.text.template import item_texts

    if not len(split.cold_items):
        return {}
    cold = catalogue.item_index(split.cold_items)
    warm = np.setdiff1d(np.arange(catalogue.n_items), cold)
    test = split.test[split.test["item_id"].isin(split.cold_items)]
    relevant = catalogue.matrix(test)
    users = np.unique(relevant.nonzero()[0])
    # Exclude every warm item for every user: the ranking is among cold items only.
    rows = np.repeat(np.arange(catalogue.n_users), len(warm))
    cols = np.tile(warm, catalogue.n_users)
    exclude = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(catalogue.n_users, catalogue.n_items))
    if history is None:
        history = pd.concat([split.train, split.val], ignore_index=True)
    known = catalogue.matrix(history)
    item_text = item_text if item_text is not None else item_texts(data.items)
    ks = (10, 20)
    results = {}
    for name in COLD_BASELINES:
        model = BASELINES[name]().fit(catalogue.matrix(split.train), item_text=item_text, seed=cfg.seed).fold_in(known)
        results[name] = evaluate_ranking(baseline_scorer(model), users, relevant, exclude=exclude, ks=ks)
    for name, m in models.items():
        results[name] = evaluate_ranking(embedding_scorer(*m) if isinstance(m, tuple) else m, users, relevant,
                                         exclude=exclude, ks=ks)
    report = {"n_cold_items": int(len(cold)), "n_users": int(len(users)), "n_test_interactions": int(len(test)),
              "ranking": "among cold items only", "models": {}}
    for name, res in results.items():
        entry = {"mean": {k: res.mean()[k] for k in ("ndcg@10", "recall@10", "recall@20", "hit_rate@10")},
                 "ci95": {}}
        for metric in ("ndcg@10", "recall@20"):
            ci = bootstrap_ci(res.per_user[metric], n_boot=cfg.n_bootstrap, seed=cfg.seed)
            entry["ci95"][metric] = [ci.low, ci.high]
        if name not in COLD_BASELINES:
            base = results["tfidf_content"].per_user["ndcg@10"]
            entry["vs_tfidf_content"] = paired_test(res.per_user["ndcg@10"], base, n_boot=cfg.n_bootstrap,
                                                    seed=cfg.seed).to_dict()
            entry["ratio_ndcg@10_vs_tfidf"] = float(res.mean()["ndcg@10"] / max(1e-12, results["tfidf_content"].mean()["ndcg@10"]))
        report["models"][name] = entry
        log(f"  cold items: {name:<16} ndcg@10 {entry['mean']['ndcg@10']:.4f} "
            f"[{entry['ci95']['ndcg@10'][0]:.3f}, {entry['ci95']['ndcg@10'][1]:.3f}]  recall@20 {entry['mean']['recall@20']:.4f}")
    return report
