"""Probe (session 28): can the text profile's block live in fewer columns than the text embedding?

    .venv/bin/python bench/profile_pca.py [--dims 16 32 64 128]

The text profile (`--model.text_profile`, `tfrec.models.text_profile`) adds w x cos(profile_u, t_i)
for items without a trained id, t_i = normalise(normalise(e_i) - m) the item's centred text
embedding: a block as wide as the embedding (384 columns with MiniLM) on every query and every
item of the index, though only untrained items use it. Projecting the centred embeddings onto
their top D principal directions (fitted on the catalogue's texts, no interactions read) before
the last normalisation would make the block D wide. This probe measures, on the validation-cold
items of `bench/cold_start_blend.py --base profile` (7 trained models: the usual draw with
training seeds 42 / 1 / 2 and draws 1-4 with seed 42; test is not read), NDCG@10 of the tower
alone, of the tower + the built text profile (w 0.5, shrinkage 40), of the same computed here in
numpy over every direction (`numpy_full`, which must equal the built one: the reference check),
and with the profile and the items projected onto D directions, for each D. Known-history
information setting (as the weight was chosen). Writes bench/results/profile_pca_ml100k.json
(atomic).
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

import tfrec  # noqa: E402,F401  (before TensorFlow)

OUT = REPO / "bench" / "results" / "profile_pca_ml100k.json"


def unit_rows(m):
    m = np.asarray(m, np.float64)
    return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)


def one_model(seed, draw, dims):
    import tensorflow as tf

    from cold_start import VARIANTS, train_cold_model
    from cold_start_blend import TEXT_PROFILE, TEXT_PROFILE_SHRINKAGE
    from tfrec.evaluation.cold_start import cold_queries
    from tfrec.evaluation.ranking import evaluate_ranking
    from tfrec.models.scoring import HybridScorer

    flags = [*VARIANTS["default"], f"--train.seed={seed}"]
    _, data, split, catalogue, base, _, _ = train_cold_model(flags, 10, True, validation_seed=draw)
    model = base.model
    cold = np.sort(catalogue.item_index(split.cold_items))
    relevant = catalogue.matrix(split.test[split.test["item_id"].isin(split.cold_items)])[:, cold]
    users = np.unique(relevant.nonzero()[0])
    events, seen = cold_queries(split, "known")

    def scores(scorer):
        return scorer.user_matrix(catalogue, events)[users] @ scorer.item_embeddings[cold].T  # (n_users, n_cold)

    def ndcg(s):
        return float(evaluate_ranking(lambda idx: s[np.searchsorted(users, np.asarray(idx))].astype(np.float32),
                                      users, relevant, ks=(10,)).mean()["ndcg@10"])

    model.set_text_profile(0.0)
    tower = scores(HybridScorer(model, base.query_features, base.context, catalogue.item_ids))
    model.set_text_profile(TEXT_PROFILE, shrinkage=TEXT_PROFILE_SHRINKAGE, dim=0)
    built = scores(HybridScorer(model, base.query_features, base.context, catalogue.item_ids))
    model.set_text_profile(0.0)
    # The catalogue's text rows in the order of `catalogue.item_ids`, as the profile centres them.
    lookup = model.lookup
    emb = unit_rows(lookup.columns["text_embedding"].numpy()[:-1])  # (I_lookup, t)
    rows = lookup.table.lookup(tf.constant([str(i) for i in catalogue.item_ids])).numpy()
    centred = emb - emb.mean(axis=0)
    history = catalogue.matrix(seen)[users].astype(np.float64)  # (n_users, I) the known items
    history.data[:] = 1.0
    n = np.asarray(history.sum(axis=1)).ravel()
    shrink = n / np.maximum(n + TEXT_PROFILE_SHRINKAGE, 1.0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # principal directions of the centred texts

    def profile_term(items):  # items (I, D) unit rows in catalogue order
        profile = unit_rows(np.asarray(history @ items)) * shrink[:, None]
        return TEXT_PROFILE * (profile @ items[cold].T)

    row = {"tower": ndcg(tower), "built": ndcg(built)}
    full = unit_rows(centred)[rows]
    row["numpy_full_max_abs_difference_to_built"] = float(np.abs(tower + profile_term(full) - built).max())
    row["numpy_full"] = ndcg(tower + profile_term(full))
    row["pca"] = {str(d): ndcg(tower + profile_term(unit_rows(centred @ vt[:d].T)[rows])) for d in dims}
    row["pca_variance_kept"] = {str(d): float((np.linalg.norm(centred @ vt[:d].T) / np.linalg.norm(centred)) ** 2)
                                for d in dims}
    print(f"seed {seed} draw {draw}: tower {row['tower']:.4f}, built {row['built']:.4f}, numpy "
          f"{row['numpy_full']:.4f} (max diff {row['numpy_full_max_abs_difference_to_built']:.1e}), pca "
          + ", ".join(f"{d}: {v:.4f}" for d, v in row["pca"].items()), flush=True)
    return row


def main(argv=None):
    from cold_start_blend import VALIDATION

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    start = time.time()
    rows = {f"seed{s}_draw{d}": one_model(s, d, args.dims) for s, d in VALIDATION}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("tower", "built", "numpy_full")}
    mean["pca"] = {str(d): float(np.mean([r["pca"][str(d)] for r in rows.values()])) for d in args.dims}
    gain = mean["built"] - mean["tower"]
    mean["pca_share_of_profile_gain_kept"] = {d: (v - mean["tower"]) / gain if gain else None
                                              for d, v in mean["pca"].items()}
    write_json(args.out, {"benchmark": "text profile block projected onto D principal directions (validation-cold)",
                          "dims": args.dims, "information": "known", "models": rows, "mean": mean,
                          "seconds": round(time.time() - start, 1), "machine": machine_info()})
    print(mean, flush=True)


if __name__ == "__main__":
    main()
