"""What the text profile's lexical explanations say on real data (session 26).

    .venv/bin/python bench/explain_words.py RUN_DIR [--out FILE]

RUN_DIR: a `tfrec run` folder of the `cold_items` split with the text profile and its lexical
term, e.g. `tfrec run --split.kind=cold_items --model.text_profile=0.5
--model.text_profile_lexical=0.5 --ranking.enabled=false`. For every test (user, held-out
item) pair, the item is explained as the cold-item evaluation asks (just after the user's
last known event): how often the text profile raised the score, how often the sentence names
shared words and how many, how much of the lexical term the five listed words carry, the
words named most often, and a check of the decomposition (all the words' parts against the
lexical columns' dot product). Writes bench/results/explain_words_ml100k.json (atomic).
"""
import collections
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import load_run_folder, run_result, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow)
import tensorflow as tf  # noqa: E402


def main(argv=None):
    from tfrec.explain import Explainer
    from tfrec.explain.text import named_words

    args, run, start = load_run_folder(__doc__, "explain_words_ml100k.json", argv)
    rec, split = run.recommender, run.split
    model = rec.model
    lexical = model.lexical_columns()
    if lexical is None or not len(split.cold_items):
        raise SystemExit("RUN_DIR needs the cold_items split and --model.text_profile_lexical > 0.")
    a, z, terms = lexical
    ex = Explainer(rec, split.train)
    common = ex.common_words()
    cold = set(map(str, split.cold_items))
    test = split.test[split.test["item_id"].astype(str).isin(cold)]
    block = model.block_columns("text_profile")[0]  # the text profile's semantic columns come first
    pairs, raised, named_counts, top5_share, lexical_share = 0, 0, [], [], []
    identity, top_error = 0.0, 0.0
    named = collections.Counter()
    t0 = time.perf_counter()
    for user, group in test.groupby("user_id", sort=True):
        items = sorted(set(group["item_id"].astype(str)))
        feats = ex.features(str(user))
        q = rec.scorer._query_fn({k: tf.constant(v) for k, v in feats.items()}).numpy()[0]
        vecs = rec.item_embeddings[rec._index.get_indexer(items)]
        all_parts = vecs[:, a:z] * q[a:z]  # (m, V): every word's part of the score
        semantic = vecs[:, block:a] @ q[block:a]  # (m,)
        for e, parts, sem in zip(ex._explain(feats, items, 3), all_parts, semantic):
            pairs += 1
            term = float(parts.sum())
            # The text profile's part = its semantic part + every word's part; the listed words are the largest.
            identity = max(identity, abs(e.text_profile - (float(sem) + term)))
            largest = np.sort(parts)[::-1][:len(e.text_profile_words)]
            top_error = max([top_error] + [abs(p - w) for (_, p), w in zip(e.text_profile_words, largest)])
            positive = parts[parts > 0].sum()
            if positive > 0:
                top5_share.append(sum(p for _, p in e.text_profile_words) / positive)
            if e.text_profile > 0:
                raised += 1
                lexical_share.append(term / e.text_profile)
                said = named_words(e.text_profile_words, common)
                assert all(f'"{w}"' in e.sentence for w in said)
                named_counts.append(len(said))
                named.update(said)
    seconds = time.perf_counter() - t0
    named_counts = np.array(named_counts)
    doc = run_result(
        "explain_words.py", args, start,
        benchmark="text profile lexical explanations on the cold_items split's test pairs",
        config={k: getattr(run.config.model, k) for k in ("text_profile", "text_profile_shrinkage",
                                                           "text_profile_lexical")},
        vocabulary_terms=int(z - a), words_not_named_as_common=sorted(common),
        pairs=pairs, users=int(test["user_id"].nunique()), cold_items=len(cold),
        pairs_text_profile_raised_score=raised,
        share_raised=raised / max(pairs, 1),
        of_those_sentence_names_words=float((named_counts > 0).mean()) if raised else None,
        mean_words_named=float(named_counts.mean()) if raised else None,
        top5_words_share_of_positive_lexical_parts_mean=float(np.mean(top5_share)) if top5_share else None,
        lexical_term_share_of_text_profile_part_median=float(np.median(lexical_share)) if lexical_share else None,
        most_named_words=named.most_common(20),
        decomposition_max_abs_error=identity, listed_words_max_abs_error=top_error,
        explain_seconds=round(seconds, 1), explain_ms_per_pair=round(1000 * seconds / max(pairs, 1), 2))
    print({k: v for k, v in doc.items() if k not in ("machine", "most_named_words")})
    print("most named:", doc["most_named_words"][:12])
    write_json(args.out, doc)


if __name__ == "__main__":
    main()
