"""The Keras-RS deep-retrieval example, measured here beside tfrec on the `tfrs_tutorial` split.

    .venv/bin/python bench/keras_rs_example.py [--tfrec-run runs/RUN ...] [--epochs 30] [--out FILE]

The README compares tfrec's top-100 accuracy under `tfrs_tutorial` with the number the
Keras-RS `examples/deep_recommender.py` prints (about 0.30, "0.31" in issue #5). That
example counts a test rating only if it is a 5-star one (`sample_weight = rating > 0.9`
on ratings rescaled to [0, 1]), while `tfrs_tutorial` (and the TFRS tutorials) count every
test rating. This benchmark trains the example's model itself, on tfrec's `tfrs_tutorial`
split (ML-100K, 80/20 shuffled with seed 42), and scores every model both ways.

The example's model, re-written here from its description (Keras 3; keras-rs 0.4.0 for
the retrieval layer): a query tower over user id, gender, age (10 quantile bins adapted on
the training ratings), a hashed gender x age cross (20 bins) and occupation, each a
32-dim embedding, concatenated, then Dense layers; a candidate tower over movie id, the
masked mean of title-token embeddings (`TextVectorization`, 10,000 tokens, 16 per title)
and the masked mean of genre embeddings, then the same Dense layers. Loss: mean squared
error between the dot product and the rating rescaled to [0, 1]; Adagrad 0.05, batch
1,000 in one fixed shuffled order, 30 epochs; the example's three depths (32), (64, 32)
and (128, 64, 32). The final epoch is reported: the example evaluates on test every 5
epochs (the curve is kept in the JSON), nothing is chosen on it.

Each model is scored twice, and the two paths must agree (checked, the run fails if not):
- the example's own path: `keras_rs.layers.BruteForceRetrieval(k=100)` over every movie
  and `keras.metrics.SparseTopKCategoricalAccuracy(k=100, from_sorted_ids=True)`;
- tfrec's evaluator (`tfrec.evaluation.protocol.rank_queries`), which also gives the
  95% CI (bootstrap over users).
Metrics: top-100 accuracy over all test ratings (the `tfrs_tutorial` metric) and over the
5-star ones (the example's). `--tfrec-run` adds saved `tfrec run --eval.protocol=
tfrs_tutorial` folders (their hybrid as saved, re-scored; its all-ratings number must
match the folder's metrics.json), and the TFRS basic-tutorial model (tfrec's
`tfrs_tutorial` baseline, 3 epochs) is scored the same way.
Writes bench/results/keras_rs_example_ml100k.json (atomic).
"""
import argparse
import json
import os
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._common import machine_info, write_json  # noqa: E402

import numpy as np  # noqa: E402

import tfrec  # noqa: E402,F401  (before TensorFlow and Keras)

OUT = REPO / "bench" / "results" / "keras_rs_example_ml100k.json"
DIM = 32
AGE_BINS, CROSS_BINS = 10, 20
TITLE_TOKENS, TITLE_LENGTH = 10_000, 16
DEPTHS = {"1_layer": (32,), "2_layers": (64, 32), "3_layers": (128, 64, 32)}  # the example's three models


def features(data, split, catalogue):
    """Integer inputs of the example's towers: per catalogue user, per catalogue item,
    and the training rows (user index, item index, rating in [0, 1]) in one seeded order."""
    import keras

    users = data.users.set_index("user_id").loc[catalogue.user_ids]
    train_users = catalogue.user_index(split.train["user_id"])
    age = users["age"].to_numpy(np.float32)
    discretize = keras.layers.Discretization(num_bins=AGE_BINS)
    discretize.adapt(age[train_users])  # the example adapts on the ratings: one age per rating
    age_bin = np.asarray(discretize(age)).astype(np.int32)
    gender = keras.layers.StringLookup(num_oov_indices=0)
    gender.adapt(users["gender"].to_numpy())
    occupation = keras.layers.StringLookup(num_oov_indices=0)
    occupation.adapt(users["occupation"].to_numpy())
    g = np.asarray(gender(users["gender"].to_numpy())).astype(np.int32)
    cross = np.asarray(keras.layers.HashedCrossing(num_bins=CROSS_BINS)((g, age_bin))).astype(np.int32)
    user_x = {"user": np.arange(catalogue.n_users, dtype=np.int32), "gender": g, "age": age_bin, "cross": cross,
              "occupation": np.asarray(occupation(users["occupation"].to_numpy())).astype(np.int32)}
    items = data.items.set_index("item_id").loc[catalogue.item_ids]
    titles = items["title"].to_numpy().astype(str)
    vectorize = keras.layers.TextVectorization(max_tokens=TITLE_TOKENS, output_sequence_length=TITLE_LENGTH)
    vectorize.adapt(titles)
    names = sorted({g for gs in items["genres"] for g in gs.split("|") if g})
    genre_ids = [[names.index(g) + 1 for g in gs.split("|") if g] for gs in items["genres"]]
    width = max(len(x) for x in genre_ids)
    item_x = {"item": np.arange(catalogue.n_items, dtype=np.int32),
              "title": np.asarray(vectorize(titles)).astype(np.int32),
              "genres": np.array([x + [0] * (width - len(x)) for x in genre_ids], np.int32)}
    sizes = {"gender": gender.vocabulary_size(), "occupation": occupation.vocabulary_size(),
             "title": vectorize.vocabulary_size(), "genres": len(names) + 1}
    order = np.random.default_rng(42).permutation(len(split.train))
    rows = split.train.iloc[order]
    train = (catalogue.user_index(rows["user_id"]), catalogue.item_index(rows["item_id"]),
             ((rows["rating"].to_numpy(np.float32) - 1.0) / 4.0))
    return user_x, item_x, sizes, train


def build(layer_sizes, catalogue, sizes):
    """The example's query and candidate towers and a training model over (user, item)."""
    import keras

    def dense(x):
        for units in layer_sizes[:-1]:
            x = keras.layers.Dense(units, activation="relu")(x)
        return keras.layers.Dense(layer_sizes[-1])(x)

    emb = lambda n, **kw: keras.layers.Embedding(n, DIM, **kw)
    u_in = {k: keras.Input((), dtype="int32", name=k) for k in ("user", "gender", "age", "cross", "occupation")}
    q = keras.layers.Concatenate()([emb(catalogue.n_users)(u_in["user"]), emb(sizes["gender"])(u_in["gender"]),
                                    emb(AGE_BINS)(u_in["age"]), emb(CROSS_BINS)(u_in["cross"]),
                                    emb(sizes["occupation"])(u_in["occupation"])])
    query = keras.Model(u_in, dense(q), name="query")
    i_in = {"item": keras.Input((), dtype="int32", name="item"),
            "title": keras.Input((TITLE_LENGTH,), dtype="int32", name="title"),
            "genres": keras.Input((None,), dtype="int32", name="genres")}
    pooled = lambda n, x: keras.layers.GlobalAveragePooling1D()(emb(n + 1, mask_zero=True)(x))  # masked mean
    c = keras.layers.Concatenate()([emb(catalogue.n_items)(i_in["item"]), pooled(sizes["title"], i_in["title"]),
                                    pooled(sizes["genres"], i_in["genres"])])
    candidate = keras.Model(i_in, dense(c), name="candidate")
    score = keras.layers.Dot(axes=1)([query(u_in), candidate(i_in)])
    return query, candidate, keras.Model({**u_in, **i_in}, score)


def test_rows(protocol, split, catalogue):
    """tfrec's test queries and the rating behind each row (one (user, item) per row)."""
    import pandas as pd

    from tfrec.evaluation.queries import queries_for_test

    queries = queries_for_test(protocol, split, catalogue)
    n = catalogue.n_items
    t = split.test
    rating = pd.Series(t["rating"].to_numpy(), index=catalogue.user_index(t["user_id"]) * n +
                       catalogue.item_index(t["item_id"]))
    if not rating.index.is_unique or not (np.diff(queries.relevant.indptr) == 1).all():
        raise SystemExit("expected one test rating per (user, item) and one relevant item per query row")
    ratings = rating.loc[queries.user_idx * n + queries.relevant.indices].to_numpy()
    return queries, ratings


def subsets(ratings):
    """The rows each metric counts: every test rating, and the 5-star ones (the example's weight)."""
    return {"all_ratings": np.ones(len(ratings), bool), "five_star": ratings >= 5}


def score(model, queries, ratings, n_boot, seed):
    """Top-100 accuracy with its 95% CI over all rows and over the 5-star rows (tfrec's evaluator)."""
    from tfrec.evaluation.protocol import rank_queries
    from tfrec.evaluation.stats import cluster_bootstrap

    res = rank_queries(model, queries, ks=(100,), return_topk=False)
    hit = np.full(queries.n, np.nan)
    hit[res.rows] = res.per_user["hit_rate@100"]
    out = {}
    for name, keep in subsets(ratings).items():
        mean, low, high = cluster_bootstrap(hit[keep], queries.user_idx[keep], n_boot=n_boot, seed=seed)
        out[name] = {"top100_accuracy": float(mean), "ci95": [float(low), float(high)], "rows": int(keep.sum())}
    return out


def example_metric(query_emb, item_emb, queries, ratings):
    """The example's own path: BruteForceRetrieval top 100 and SparseTopKCategoricalAccuracy."""
    import keras
    import keras_rs

    retrieval = keras_rs.layers.BruteForceRetrieval(k=100, return_scores=False)
    retrieval.update_candidates(item_emb)
    top = np.asarray(retrieval(query_emb[queries.user_idx]))
    out = {}
    for name, keep in subsets(ratings).items():
        metric = keras.metrics.SparseTopKCategoricalAccuracy(k=100, from_sorted_ids=True)
        metric.update_state(queries.relevant.indices, top, sample_weight=keep.astype(np.float32))
        out[name] = float(metric.result())
    return out


def train_example(name, layer_sizes, catalogue, inputs, queries, ratings, epochs, seed):
    import keras

    user_x, item_x, sizes, (u, i, y) = inputs
    keras.utils.set_random_seed(seed)
    query, candidate, model = build(layer_sizes, catalogue, sizes)
    model.compile(optimizer=keras.optimizers.Adagrad(0.05), loss="mse")
    x = {**{k: v[u] for k, v in user_x.items()}, **{k: v[i] for k, v in item_x.items()}}
    embed = lambda: (np.asarray(query.predict(user_x, batch_size=4096, verbose=0)),
                     np.asarray(candidate.predict(item_x, batch_size=4096, verbose=0)))
    curve, t0 = [], time.perf_counter()
    for epoch in range(5, epochs + 1, 5):  # the example's validation_freq=5, on test: a curve, no choice
        hist = model.fit(x, y, batch_size=1000, epochs=epoch, initial_epoch=epoch - 5, shuffle=False, verbose=0)
        q, c = embed()
        acc = example_metric(q, c, queries, ratings)
        curve.append({"epoch": epoch, "loss": float(hist.history["loss"][-1]), **acc})
        print(f"  {name} epoch {epoch}: loss {curve[-1]['loss']:.4f}  top-100 all {acc['all_ratings']:.4f}  "
              f"5-star {acc['five_star']:.4f}", flush=True)
    return q, c, curve, time.perf_counter() - t0


def check_agree(name, ours, theirs, tol=2e-3):
    """Both paths count the same hits up to ties at the 100th place."""
    for part in ("all_ratings", "five_star"):
        if abs(ours[part]["top100_accuracy"] - theirs[part]) > tol:
            raise SystemExit(f"{name}: tfrec's evaluator {ours[part]['top100_accuracy']:.4f} and the example's "
                             f"metric {theirs[part]:.4f} disagree on {part}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tfrec-run", action="append", default=[], help="a `tfrec run --eval.protocol=tfrs_tutorial` "
                    "folder to score both ways (repeatable)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--depths", default=",".join(DEPTHS), help="comma-separated names of DEPTHS")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    from tfrec.evaluation.baselines import BASELINES

    start = time.time()
    config, protocol, data, split, catalogue = protocol_split("tfrs_tutorial")
    queries, ratings = test_rows(protocol, split, catalogue)
    n_boot, seed = config.eval.n_bootstrap, config.eval.seed
    print(f"tfrs_tutorial split: {len(split.train)} train, {queries.n} test ratings ({int((ratings >= 5).sum())} "
          "5-star)", flush=True)
    inputs = features(data, split, catalogue)
    models = {}
    for name in args.depths.split(","):
        q, c, curve, secs = train_example(name, DEPTHS[name], catalogue, inputs, queries, ratings, args.epochs,
                                          args.seed)
        ours = score((q, c), queries, ratings, n_boot, seed)
        check_agree(name, ours, curve[-1])
        last = {k: curve[-1][k] for k in ("all_ratings", "five_star")}
        models[f"Keras-RS deep_recommender, {name} {DEPTHS[name]}"] = {
            **ours, "example_metric": last, "curve_on_test": curve, "train_seconds": round(secs, 1)}
    tutorial = BASELINES["tfrs_tutorial"]().fit(catalogue.matrix(split.train), seed=args.seed)
    models["TFRS basic-retrieval tutorial model (tfrec baseline, 3 epochs)"] = score(tutorial, queries, ratings,
                                                                                     n_boot, seed)
    for run_dir in args.tfrec_run:
        models[f"tfrec hybrid ({pathlib.Path(run_dir).name})"] = score_run(run_dir, protocol, queries, ratings, n_boot,
                                                                            seed)
    doc = {"benchmark": "Keras-RS deep_recommender example vs tfrec, ML-100K tfrs_tutorial split",
           "command": "python bench/keras_rs_example.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "metric": "top-100 accuracy (is the rated movie in the user's top 100 of all 1,682; seen movies kept): "
                     "over all test ratings (tfrs_tutorial, TFRS tutorials) and over 5-star test ratings (the "
                     "Keras-RS example's sample_weight = rating > 0.9 on [0, 1] ratings)",
           "config": {"epochs": args.epochs, "seed": args.seed, "embedding_dim": DIM, "batch_size": 1000,
                      "optimizer": "Adagrad 0.05", "loss": "MSE on (rating - 1) / 4"},
           "models": models, "seconds": round(time.time() - start, 1),
           "machine": machine_info(packages=("tensorflow", "keras", "keras-rs", "numpy"))}
    write_json(args.out, doc)
    for name, m in models.items():
        print(f"{name}: all ratings {m['all_ratings']['top100_accuracy']:.4f} {m['all_ratings']['ci95']}, "
              f"5-star {m['five_star']['top100_accuracy']:.4f} {m['five_star']['ci95']}")


def protocol_split(name):
    """ML-100K (TFREC_DATA, default ../shared) split as `tfrec run --eval.protocol=NAME` splits it:
    (config, protocol, data, split, catalogue)."""
    from tfrec.cli.run import prepare
    from tfrec.config import load_config
    from tfrec.evaluation.protocols import get_protocol

    os.environ.setdefault("TFREC_DATA", str(REPO.parent / "shared" / "datasets" / "ml-100k"))
    config = load_config(None, [f"--eval.protocol={name}"])
    data, _, split, catalogue = prepare(config, log=lambda *a: None)
    return config, get_protocol(name), data, split, catalogue


def saved_run_scorer(run_dir, protocol, test_queries):
    """A saved `tfrec run` folder's hybrid under `protocol`, as `tfrec run` scored it: (its
    score_queries scorer, its test queries (with history), the metrics.json means, a
    description). Fails unless the run used `protocol` and has `test_queries`' targets."""
    from tfrec.cli.artifacts import load_run
    from tfrec.evaluation.queries import queries_for_test
    from tfrec.models.scoring import HybridScorer

    run = load_run(run_dir)
    if run.config.eval.protocol != protocol.name:
        raise SystemExit(f"{run_dir}: protocol {run.config.eval.protocol!r}, not {protocol.name}")
    queries = queries_for_test(protocol, run.split, run.catalogue, history_length=run.config.data.history_length)
    if not np.array_equal(queries.relevant.indices, test_queries.relevant.indices):
        raise SystemExit(f"{run_dir}: its test interactions are not this split's")
    saved = json.loads((pathlib.Path(run_dir) / "metrics.json").read_text())["models"]["tfrec hybrid"]["mean"]
    model = run.config.to_dict()["model"]
    info = {"run": pathlib.Path(run_dir).name, "repeat_penalty": model.get("repeat_penalty"),
            "sequence": model.get("sequence"), "history_length": run.config.data.history_length}
    return HybridScorer(run.model, run.query_features, run.known, run.catalogue.item_ids), queries, saved, info


def score_run(run_dir, protocol, test_queries, ratings, n_boot, seed):
    """A saved tfrec hybrid under tfrs_tutorial, both ways; its all-ratings number must be the run's."""
    scorer, queries, saved, info = saved_run_scorer(run_dir, protocol, test_queries)
    out = score(scorer, queries, ratings, n_boot, seed)
    if abs(saved["hit_rate@100"] - out["all_ratings"]["top100_accuracy"]) > 1e-6:
        raise SystemExit(f"{run_dir}: re-scored {out['all_ratings']['top100_accuracy']:.5f}, metrics.json says "
                         f"{saved['hit_rate@100']:.5f}")
    return {**out, **info}


if __name__ == "__main__":
    main()
