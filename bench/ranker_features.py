"""Probe (issue #6): which signals does the two-stage list lack? On one `tfrec run` folder's
trained retriever and ranker (loaded, not retrained), each validation user's query at their
first validation event is scored as during training (the retriever's prior and the ranker's
popularity features counting train only, not the refit on train + validation), then the
served order (ranker head + blend x the retriever's full score, the run's blend) is
re-sorted by `final + w * z(feature)` for one candidate feature at a time, z standardised
over every (query, candidate) pair and w in units of the final score's within-list spread:

- `item_bias`: the bias baseline's b_i fitted on train (a film's quality as its raters saw it);
- `item_age`: log(1 + years between the film's year and the request's);
- `text_affinity`: cosine of the candidate's BERT text embedding with the mean of the
  user's history items' (content match);
- `cooccurrence`: sum over the user's last 5 history items of the cosine between their
  train user columns and the candidate's (item-item co-occurrence, the last items only).

Validation users are split in halves by a hash of the user id: w is chosen on one half and
measured on the other, both ways, so a feature counts only if the gain it shows where it was
chosen survives where it was not. Session 26 adds `blend_by_group`: one blend for new users (no train
event) and one for known users against one blend for all, chosen and measured the same way.
Test is not read. Writes
bench/results/ranker_features_ml100k.json (rows merged by the run folder's name).

    .venv/bin/python bench/ranker_features.py RUN_DIR      # ~1 min
"""
import hashlib
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tfrec  # noqa: E402,F401  (before TensorFlow: selects tf.keras 2)
import numpy as np  # noqa: E402

from bench._common import machine_info, write_json  # noqa: E402

OUT = ROOT / "bench" / "results" / "ranker_features_ml100k.json"
WEIGHTS = (-1.0, -0.5, -0.25, -0.1, 0.0, 0.1, 0.25, 0.5, 1.0)
SECONDS_PER_YEAR = 365.25 * 86400


def features(run, fit_part, first, feats, cand):
    """{name: float [n, N]} for the candidates `cand` (item indices) of the queries `first`."""
    from tfrec.evaluation.rating import BiasBaseline

    cat = run.catalogue
    ids = np.asarray(cat.item_ids).astype(str)
    out = {}
    base = BiasBaseline().fit(fit_part)
    bi = np.array([base.item_bias.get(i, 0.0) for i in ids], np.float64)
    out["item_bias"] = bi[cand]
    items = run.data.items.assign(item_id=run.data.items["item_id"].astype(str)).set_index("item_id")
    year = items["year"].reindex(ids).fillna(-1).to_numpy(np.float64)
    req_year = 1970 + first["timestamp"].to_numpy(np.float64) / SECONDS_PER_YEAR
    age = req_year[:, None] - year[cand]
    out["item_age"] = np.where(year[cand] > 0, np.log1p(np.maximum(age, 0.0)), np.nan)
    emb = np.asarray(run.text_embeddings, np.float64)
    emb /= np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    index = {i: k for k, i in enumerate(ids)}
    history = np.asarray(feats["history"]).astype(str)  # (n, H), "" = padding
    hidx = np.vectorize(lambda s: index.get(s, -1))(history)
    known = hidx >= 0
    prof = np.einsum("nh,nhd->nd", known.astype(np.float64), emb[np.maximum(hidx, 0)])
    prof /= np.maximum(np.linalg.norm(prof, axis=1, keepdims=True), 1e-12)
    out["text_affinity"] = np.einsum("nd,ncd->nc", prof, emb[cand])
    m = cat.matrix(fit_part).tocsc().astype(np.float64)
    m.data[:] = 1.0
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0))).ravel()
    co = np.zeros(cand.shape)
    for r in range(len(cand)):
        last = [h for h in hidx[r] if h >= 0][-5:]  # history is oldest first, newest last
        if not last:
            continue
        g = (m[:, last].T @ m[:, cand[r]]).toarray()  # (5, N)
        co[r] = (g / np.maximum(np.outer(norms[last], norms[cand[r]]), 1e-12)).sum(axis=0)
    out["cooccurrence"] = co
    return out


def blend_by_group(ndcg, head, full, masks, train_matrix, users):
    """Session 26: one blend per user group (new users, no train event; known users) against one blend
    for all, each chosen on one half of the validation users and measured on the other."""
    from tfrec.cli.ranking_stage import BLENDS

    new = np.asarray(train_matrix[users].sum(axis=1)).ravel() == 0  # (n,)
    curve = {k: [ndcg(head + b * full, v) for b in BLENDS] for k, v in masks.items()}
    out = {"blends": list(BLENDS), "new_users": {k: int((v & new).sum()) for k, v in masks.items()},
           "one_blend": curve, "cross": {}}
    for chose, other in (("A", "B"), ("B", "A")):
        one = BLENDS[int(np.argmax(curve[chose]))]
        per = {}
        for group, g in (("new", new), ("known", ~new)):
            per[group] = BLENDS[int(np.argmax([ndcg(head + b * full, masks[chose] & g) for b in BLENDS]))]
        blend = np.where(new, per["new"], per["known"])[:, None]
        got = ndcg(head + blend * full, masks[other])
        out["cross"][f"chosen_on_{chose}"] = {"one_blend": one, "per_group": per,
                                              f"one_blend_on_{other}": ndcg(head + one * full, masks[other]),
                                              f"per_group_on_{other}": got}
    print(f"blend by group: {out['cross']}", flush=True)
    return out


def main(argv):
    from tfrec.cli.artifacts import load_run
    from tfrec.cli.ranking_stage import TwoStageValidation
    from tfrec.cli.retrieval_stage import early_stopping_parts, validation_excludes_seen, with_popularity_prior
    from tfrec.models.two_stage import TwoStageScorer, rank_candidates
    from tfrec.models.scoring import first_events

    if len(argv) != 1:
        raise SystemExit(__doc__)
    start = time.time()
    run = load_run(argv[0], log=lambda *a: None)
    cfg, split, cat, ranker = run.config, run.split, run.catalogue, run.ranker
    if ranker is None:
        raise SystemExit(f"{argv[0]}: the run has no ranking stage")
    r = cfg.ranking
    fit_part, val_part = early_stopping_parts(split, r.early_stopping_patience, cfg.train.seed, lambda *a: None,
                                              "rank")
    # What validation saw while the ranker trained (not the refit on train + validation).
    with_popularity_prior(run.model, fit_part)
    if ranker.popularity is not None:
        ranker.set_popularity(fit_part)
    validation = TwoStageValidation(run.model, run.query_features, fit_part, val_part, cat, n_candidates=r.candidates,
                                    log=lambda *a: None, exclude_seen=validation_excludes_seen(cfg.eval))
    blend = float(ranker.blend.numpy())
    ranker.blend.assign(0.0)
    scorer = validation._scorer(ranker)
    first = first_events(cat, val_part)
    scores, cand, feats = scorer.candidates(first)
    head, _ = rank_candidates(ranker, feats, scorer.item_ids[cand], scorer.batch_size)
    full = np.take_along_axis(scores, cand, axis=1) / scorer.retrieval.model.temperature
    final = head + blend * full
    spread = float(np.mean(np.std(final, axis=1)))
    users = first["user_idx"].to_numpy()
    rows = {u: k for k, u in enumerate(users)}
    half = np.array([int(hashlib.md5(str(u).encode()).hexdigest(), 16) % 2 for u in first["user_id"].astype(str)])

    def ndcg(order_scores, mask):
        out = TwoStageScorer.assemble(scores, cand, order_scores)
        sel = users[mask]
        from tfrec.evaluation.ranking import evaluate_ranking

        res = evaluate_ranking(lambda u: out[[rows[x] for x in np.asarray(u)]], sel, validation.val_matrix,
                               ks=(10,), return_topk=False, exclude=validation.train_matrix)
        return float(res.mean()["ndcg@10"])

    masks = {"all": np.ones(len(users), bool), "A": half == 0, "B": half == 1}
    result = {"run": pathlib.Path(argv[0]).name, "blend": blend, "final_spread": spread,
              "users": {k: int(v.sum()) for k, v in masks.items()},
              "served": {k: ndcg(final, v) for k, v in masks.items()},
              "retrieval": {k: ndcg(full, v) for k, v in masks.items()}, "features": {}}
    print(f"validation NDCG@10 served {result['served']} retrieval {result['retrieval']}", flush=True)
    for name, f in features(run, fit_part, first, feats, cand).items():
        f = np.where(np.isfinite(f), f, np.nanmean(f))
        z = (f - f.mean()) / max(f.std(), 1e-12)
        curve = {k: [ndcg(final + w * spread * z, v) for w in WEIGHTS] for k, v in masks.items()}
        cross = {}
        for chose, other in (("A", "B"), ("B", "A")):
            k = int(np.argmax(curve[chose]))  # the first (smallest) of equals
            cross[f"chosen_on_{chose}"] = {"w": WEIGHTS[k], f"gain_on_{other}": curve[other][k]
                                           - result["served"][other]}
        result["features"][name] = {"weights": list(WEIGHTS), "ndcg@10": curve, "cross": cross}
        print(f"{name}: all {[round(x, 4) for x in curve['all']]}  cross {cross}", flush=True)
    result["blend_by_group"] = blend_by_group(ndcg, head, full, masks, validation.train_matrix, users)
    result["seconds"] = round(time.time() - start, 1)
    doc = json.loads(OUT.read_text()) if OUT.exists() else {"benchmark": "ranker_features", "runs": {}}
    doc["runs"][result["run"]] = result
    doc["machine"] = machine_info()
    write_json(OUT, doc)


if __name__ == "__main__":
    main(sys.argv[1:])
