"""Cold items on other draws of the held-out items: how much of a cold-start result is
the particular 168 items of the `cold_items` split (seed 42)?

For each `split.seed` (a different seeded 10% of the items held out entirely) one model
is trained (`train.seed` 42, the default settings, 10 epochs, as `bench/cold_start.py`
trains) and its cold items are scored four ways: with the item tower's content vectors
(the default), placed through their 50 nearest trained items (`set_cold_neighbours`,
the settings chosen on validation-cold items), with the content prior (the
popularity prior their content predicts, `tfrec.models.content_prior`), and with the text
profile (session 16, `tfrec.models.text_profile`, weight 0.5; with its shrinkage 40 and
without; session 25: with its lexical term, weight 0.5; session 28: both in the catalogue texts'
64 principal directions, `model.text_profile_dim`, beside every dimension; session 29: the default
since, the profile and its lexical term in 64 directions over the words of the 1,024 most texts), against TF-IDF
content, MostPopular and Random, for both information settings of
`tfrec.evaluation.cold_start.cold_queries`. Every draw is a held-out set; none is used
to choose anything (the defaults were fixed before these runs; the text profile's
shrinkage was prompted by them, and its k chosen on validation-cold items).

    .venv/bin/python bench/cold_start_draws.py [--split-seeds 42,1,2,3,4] [--out FILE]

Writes bench/results/cold_start_draws_ml100k.json (atomic).
"""
import argparse
import datetime
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import machine_info, write_json  # noqa: E402

import tfrec  # noqa: E402,F401

PROFILE_64 = ("text profile, 64 directions", "text profile + lexical, 64 directions")  # session 28's default dim
DEFAULT = "defaults (session 29): text profile + lexical, 64 directions, 1,024 words"  # `tfrec run` since
NEIGHBOURS = {"k": 50, "temperature": 0.1, "category_weight": 0.5, "content_weight": 0.0}
TEXT_PROFILE, TEXT_PROFILE_SHRINKAGE = 0.5, 40.0  # `model.text_profile` and its shrinkage (session 16)
LEXICAL = 0.5  # `model.text_profile_lexical` (session 25, chosen on validation-cold items: bench/cold_start_blend.py)


def one_draw(split_seed, epochs=10):
    import pandas as pd

    from tfrec.cli.retrieval_stage import train_hybrid
    from tfrec.cli.run import encode_item_texts, prepare
    from tfrec.config import load_config
    from tfrec.evaluation.cold_start import QUERY_INFORMATION, cold_queries, evaluate_cold_items
    from tfrec.models.scoring import HybridScorer
    from tfrec.models.text_profile import catalogue_texts

    config = load_config(None, [f"--train.epochs={epochs}", "--train.verbose=0", "--split.kind=cold_items",
                                f"--split.seed={split_seed}", "--train.seed=42", "--export.enabled=false",
                                "--ranking.enabled=false", "--model.cold_neighbours=0",
                                "--model.text_profile=0"])  # the tower alone; its profiles are set below
    data, _, split, catalogue = prepare(config, log=lambda *a: None)
    text, _ = encode_item_texts(config, data.items, log=lambda *a: None)
    model, _, _, qf = train_hybrid(config, data, split, catalogue, text, log=lambda *a: None)
    known = pd.concat([split.train, split.val], ignore_index=True)
    plain = HybridScorer(model, qf, known, catalogue.item_ids)
    # Session 13: the same model with the content prior (`--model.content_prior=true`: items without
    # interactions get the prior their content predicts; the prior's weight and window as chosen).
    from tfrec.models.content_prior import ContentPrior

    model.content_prior = ContentPrior()
    model.set_popularity_prior(known)
    predicted = HybridScorer(model, qf, known, catalogue.item_ids).item_embeddings
    model.content_prior = None
    model.set_popularity_prior(known)
    model.set_cold_neighbours(**NEIGHBOURS)
    placed = HybridScorer(model, qf, known, catalogue.item_ids).item_embeddings
    queries = {information: cold_queries(split, information) for information in QUERY_INFORMATION}
    tower_users = {information: plain.user_matrix(catalogue, events) for information, (events, _) in queries.items()}
    # Session 16: the tower with the text profile (`--model.text_profile`, the weight chosen on validation-cold
    # items); it adds a block to both sides of the retrieval space, so its queries are its own (built after it
    # is set; the tower's above, before).
    model.set_cold_neighbours()
    profiled = {}  # name -> {information: (query vectors, item vectors)}, each made while its profile is set
    texts = catalogue_texts(model.lookup, data.items)
    # dim 0: every text dimension, as these rows were measured before session 28's default, 64 directions;
    # the lexical term over 4,096 words (all of ML-100K's 2,468) as before session 29's default, 1,024
    for name, shrinkage, lexical, dim, terms in (("text profile", TEXT_PROFILE_SHRINKAGE, 0.0, 0, 4096),
                                                 ("text profile, unshrunk", 0.0, 0.0, 0, 4096),
                                                 ("text profile + lexical", TEXT_PROFILE_SHRINKAGE, LEXICAL, 0, 4096),
                                                 *((f"{n}, 64 directions", TEXT_PROFILE_SHRINKAGE, v, 64, 4096)
                                                   for n, v in (("text profile", 0.0),
                                                                ("text profile + lexical", LEXICAL))),
                                                 (DEFAULT, TEXT_PROFILE_SHRINKAGE, LEXICAL, 64, 1024)):
        model.set_text_profile(TEXT_PROFILE, shrinkage=shrinkage, lexical=lexical, item_texts=texts, dim=dim,
                               lexical_terms=terms)
        scorer = HybridScorer(model, qf, known, catalogue.item_ids)
        profiled[name] = {information: (scorer.user_matrix(catalogue, events), scorer.item_embeddings)
                          for information, (events, _) in queries.items()}
    row = {"split_seed": split_seed, "n_cold_items": int(len(split.cold_items))}
    for information in QUERY_INFORMATION:
        events, seen = queries[information]
        users = tower_users[information]
        report = evaluate_cold_items({"tower (default)": (users, plain.item_embeddings), "neighbours": (users, placed),
                                      "content prior": (users, predicted),
                                      **{name: p[information] for name, p in profiled.items()}},
                                     data, split, catalogue, config.eval, log=lambda *a: None, history=seen)
        row[information] = {name: {"ndcg@10": e["mean"]["ndcg@10"], "recall@20": e["mean"]["recall@20"],
                                   **({"ratio_ndcg@10_vs_tfidf": e["ratio_ndcg@10_vs_tfidf"]}
                                      if "ratio_ndcg@10_vs_tfidf" in e else {})}
                            for name, e in report["models"].items()}
        row[information]["n_users"] = report["n_users"]
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split-seeds", default="42,1,2,3,4")
    ap.add_argument("--out", default=str(REPO / "bench" / "results" / "cold_start_draws_ml100k.json"))
    args = ap.parse_args(argv)
    start = time.perf_counter()
    rows = []
    for seed in (int(s) for s in args.split_seeds.split(",")):
        print(f"== split seed {seed}", flush=True)
        rows.append(one_draw(seed))
        k = rows[-1]["known"]
        print(f"   known: tower {k['tower (default)']['ndcg@10']:.4f}, neighbours {k['neighbours']['ndcg@10']:.4f}, "
              f"content prior {k['content prior']['ndcg@10']:.4f}, text profile {k['text profile']['ndcg@10']:.4f}, "
              f"tf-idf {k['tfidf_content']['ndcg@10']:.4f}",
              flush=True)
    summary = {}
    for information in ("known", "before_first_cold"):
        for name in ("tower (default)", "neighbours", "content prior", "text profile", "text profile, unshrunk",
                     "text profile + lexical", *PROFILE_64, DEFAULT):
            r = [row[information][name]["ratio_ndcg@10_vs_tfidf"] for row in rows]
            summary[f"{information}: {name} NDCG@10 / TF-IDF"] = {"mean": float(np.mean(r)), "by_draw": r}
        for name in ("neighbours", "content prior", "text profile", "text profile, unshrunk", "text profile + lexical",
                     *PROFILE_64, DEFAULT):
            wins = [row[information][name]["ndcg@10"] > row[information]["tower (default)"]["ndcg@10"]
                    for row in rows]
            summary[f"{information}: draws where {name} beat the tower"] = f"{sum(wins)} of {len(wins)}"
    write_json(args.out, {
        "benchmark": "cold items on several draws of the held-out items (ML-100K cold_items split, split.seed)",
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/cold_start_draws.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "settings": {"train_seed": 42, "epochs": 10, "neighbours": NEIGHBOURS,
                     "text_profile": [TEXT_PROFILE, TEXT_PROFILE_SHRINKAGE], "text_profile_lexical": LEXICAL},
        "seconds": round(time.perf_counter() - start, 1), "machine": machine_info(),
        "summary": summary, "draws": rows})
    for k, v in summary.items():
        print(k, v)


if __name__ == "__main__":
    main()
