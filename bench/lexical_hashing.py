"""Probe (sessions 26-27): can the text profile's lexical term live in fewer columns than its vocabulary?

    .venv/bin/python bench/lexical_hashing.py [--dims 128 256 512 1024] [--hash-seeds 0 1 2] [--built 256 1024]

The lexical term (`--model.text_profile_lexical`, `tfrec.models.lexical`) adds v x the cosine
of an item's unit TF-IDF vector with the user's TF-IDF profile, one retrieval-space column per
word of the catalogue's vocabulary (2,468 on ML-100K; a large catalogue with overviews would
have tens of thousands). Signed feature hashing maps each word to one of D columns with a
random sign (P: [V, D], one +-1 per row), which keeps dot products unbiased; the cosine is then
taken between P-projected vectors. This probe measures, on the validation-cold items of
`bench/cold_start_blend.py --base profile` (7 trained models: the usual draw with training
seeds 42 / 1 / 2 and draws 1-4 with seed 42; test is not read), NDCG@10 of the model with the
text profile alone, + 0.5 x the exact TF-IDF cosine (the built option; the probe and the option
give the same numbers, session 25), and + 0.5 x the hashed cosine for each D and hash seed.
Known-history information setting (as the weight was chosen). Session 27 added the other way
to a small block, a vocabulary cut to the D words found in most texts (ties: column order; as
scikit-learn's `max_features`) or to the words of at least two texts (a word of one text
matches no other text of the catalogue), three ways: `top_df` renormalises the kept words'
TF-IDF; `top_df_item_norms` keeps each item's unit vector over every word, less the other
columns, and normalises the profile over the kept ones; `top_df_all_norms` also keeps the
profile's norm over every word. The second was built (`model.text_profile_lexical_terms`);
`built` scores the built option itself for the D of `--built`, which should equal
`top_df_item_norms`. Writes bench/results/lexical_hashing_ml100k.json (atomic).
"""
import argparse
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = REPO / "bench" / "results" / "lexical_hashing_ml100k.json"
LEXICAL = 0.5  # the option's weight (chosen on these validation-cold items in session 25)


def hashing(v, d, seed):
    """P [V, D] csr: word j -> column h(j) with sign s(j), both from `seed`."""
    rng = np.random.default_rng(seed)
    cols, signs = rng.integers(0, d, v), rng.choice([-1.0, 1.0], v)
    return sp.csr_matrix((signs, (np.arange(v), cols)), shape=(v, d))


def unit_rows(m):
    m = np.asarray(m, np.float64)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def one_model(seed, draw, dims, hash_seeds, built=()):
    from cold_start import VARIANTS, train_cold_model
    from cold_start_blend import TEXT_PROFILE, TEXT_PROFILE_SHRINKAGE
    from tfrec.evaluation.baselines import BASELINES
    from tfrec.evaluation.cold_start import cold_queries
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.models.scoring import HybridScorer
    from tfrec.models.text_profile import catalogue_texts
    from tfrec.text.template import item_texts

    flags = [*VARIANTS["default"], f"--train.seed={seed}"]
    _, data, split, catalogue, base, _, _ = train_cold_model(flags, 10, True, validation_seed=draw)
    base.model.set_text_profile(TEXT_PROFILE, shrinkage=TEXT_PROFILE_SHRINKAGE, dim=0)
    scorer = HybridScorer(base.model, base.query_features, base.context, catalogue.item_ids)
    cold = np.sort(catalogue.item_index(split.cold_items))
    relevant = catalogue.matrix(split.test[split.test["item_id"].isin(split.cold_items)])[:, cold]
    users = np.unique(relevant.nonzero()[0])
    events, seen = cold_queries(split, "known")
    model = scorer.user_matrix(catalogue, events)[users] @ scorer.item_embeddings[cold].T  # (n_users, n_cold)
    tfidf = BASELINES["tfidf_content"]().fit(catalogue.matrix(split.train), item_text=item_texts(data.items),
                                             seed=0).fold_in(catalogue.matrix(seen))
    exact = tfidf.score(users)[:, cold]

    def ndcg(s):
        return float(evaluate_ranking(lambda idx: s[np.searchsorted(users, np.asarray(idx))].astype(np.float32),
                                      users, relevant, ks=(10,)).mean()["ndcg@10"])

    vectors = tfidf.item_vectors_  # (I, V) unit rows
    history = tfidf.history_[users]  # (n_users, I)
    row = {"profile": ndcg(model), "profile_plus_exact": ndcg(model + LEXICAL * exact), "vocabulary": vectors.shape[1],
           "hashed": {}}
    for d in dims:
        got = []
        for h in hash_seeds:
            items = unit_rows((vectors @ hashing(vectors.shape[1], d, h)).toarray())  # (I, D)
            profile = unit_rows(np.asarray(history @ items))  # (n_users, D)
            got.append(ndcg(model + LEXICAL * (profile @ items[cold].T)))
        row["hashed"][str(d)] = got
    df = np.asarray((vectors != 0).sum(axis=0)).ravel()  # each word's number of texts
    order = np.lexsort((np.arange(len(df)), -df))  # most texts first; ties in column order
    row["min_df2_terms"] = int((df >= 2).sum())
    for name, keep in [*((str(d), order[:d]) for d in dims), ("min_df2", np.flatnonzero(df >= 2))]:
        cut = vectors[:, np.sort(keep)].toarray()  # the kept words' columns of the unit TF-IDF vectors
        for way, items, profile in [
                ("top_df", unit_rows(cut), unit_rows(np.asarray(history @ unit_rows(cut)))),  # both renormalised
                ("top_df_item_norms", cut, unit_rows(np.asarray(history @ cut))),  # items keep every word's norm
                ("top_df_all_norms", cut, unit_rows(np.asarray((history @ vectors).todense()))[:, np.sort(keep)])]:
            row.setdefault(way, {})[name] = ndcg(model + LEXICAL * (profile @ items[cold].T))
    for d in built:  # the built option (`model.text_profile_lexical_terms`): the same as top_df_item_norms?
        base.model.set_text_profile(TEXT_PROFILE, shrinkage=TEXT_PROFILE_SHRINKAGE, lexical=LEXICAL,
                                    item_texts=catalogue_texts(base.model.lookup, data.items), lexical_terms=d, dim=0)
        s = HybridScorer(base.model, base.query_features, base.context, catalogue.item_ids)
        got = s.user_matrix(catalogue, events)[users] @ s.item_embeddings[cold].T
        row.setdefault("built", {})[str(d)] = ndcg(got)
    cuts = {way: row[way] for way in ("top_df", "top_df_item_norms", "top_df_all_norms", "built") if way in row}
    print(f"seed {seed} draw {draw}: profile {row['profile']:.4f}, + exact {row['profile_plus_exact']:.4f}, hashed "
          + ", ".join(f"{d}: {np.mean(v):.4f}" for d, v in row["hashed"].items())
          + "".join(f"; {way} " + ", ".join(f"{d}: {v:.4f}" for d, v in r.items())
            for way, r in cuts.items()), flush=True)
    return row


def main(argv=None):
    from cold_start_blend import VALIDATION

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[128, 256, 512, 1024])
    ap.add_argument("--hash-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--built", type=int, nargs="*", default=[256, 1024], help="`model.text_profile_lexical_terms`")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    start = time.time()
    rows = {f"seed{s}_draw{d}": one_model(s, d, args.dims, args.hash_seeds, args.built) for s, d in VALIDATION}
    mean = {"profile": float(np.mean([r["profile"] for r in rows.values()])),
            "profile_plus_exact": float(np.mean([r["profile_plus_exact"] for r in rows.values()])),
            "hashed": {str(d): float(np.mean([np.mean(r["hashed"][str(d)]) for r in rows.values()]))
                       for d in args.dims},
            **{way: {k: float(np.mean([r[way][k] for r in rows.values()])) for k in [*map(str, args.dims), "min_df2"]}
               for way in ("top_df", "top_df_item_norms", "top_df_all_norms")},
            "built": {str(d): float(np.mean([r["built"][str(d)] for r in rows.values()])) for d in args.built}}
    gain = mean["profile_plus_exact"] - mean["profile"]
    mean["share_of_exact_gain_kept"] = {d: (v - mean["profile"]) / gain if gain else None
                                        for d, v in mean["hashed"].items()}
    for way in ("top_df", "top_df_item_norms", "top_df_all_norms"):
        mean[f"{way}_share_of_exact_gain_kept"] = {d: (v - mean["profile"]) / gain if gain else None
                                                   for d, v in mean[way].items()}
    write_json(args.out, {"benchmark": "lexical term: exact vocabulary columns vs signed hashing (validation-cold)",
                          "lexical_weight": LEXICAL, "dims": args.dims, "hash_seeds": args.hash_seeds,
                          "built": args.built, "information": "known", "models": rows, "mean": mean,
                          "seconds": round(time.time() - start, 1), "machine": machine_info()})
    print(mean, flush=True)


if __name__ == "__main__":
    main()
